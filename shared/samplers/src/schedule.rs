use half::bf16;

/// Noise levels and model timesteps of one sampling run.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    sigmas: Vec<f64>,
    timesteps: Vec<f64>,
}

impl Schedule {
    /// Number of model evaluations per conditioning.
    pub fn steps(&self) -> usize {
        self.timesteps.len()
    }

    /// Rectified-flow noise levels `σ_0 > … > σ_{N−1} > σ_N = 0` (N + 1 values): the state at step
    /// `k` is `(1 − σ_k)·x₀ + σ_k·ε`.
    pub fn sigmas(&self) -> &[f64] {
        &self.sigmas
    }

    /// The value fed to the DiT's time embedding at each of the N steps.
    pub fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }
}

/// Intermediate TrigFlow times after `atan(σ_max)`; upstream's older `[1.3, 1.0, 0.6]` was dropped
/// "for better visual quality" and the distilled checkpoints were trained against this list.
const RCM_MID_T: [f64; 3] = [1.5, 1.4, 1.0];

/// rCM (TurboDiffusion): TrigFlow times `[atan(σ_max), RCM_MID_T[..steps−1], 0]` mapped to RF
/// `s = sin t/(cos t + sin t)`, all in f64 as upstream. Callers validate `steps` in `1..=4`.
pub(crate) fn rcm(steps: usize, sigma_max: f64) -> Schedule {
    let trig = std::iter::once(sigma_max.atan())
        .chain(RCM_MID_T[..steps - 1].iter().copied())
        .chain(std::iter::once(0.0));
    let sigmas: Vec<f64> = trig.map(|t| t.sin() / (t.cos() + t.sin())).collect();
    let timesteps = sigmas[..steps].iter().map(|&s| rcm_timestep(s)).collect();
    Schedule { sigmas, timesteps }
}

/// Upstream feeds `(s.float() * ones_f64 * 1000).to(bfloat16)`: `s` narrowed to f32, scaled in
/// f64, then narrowed f64 → f32 → bf16 (PyTorch's bf16 is built from a float, round to nearest
/// even at each step). The checkpoints were distilled with these rounded values (988, not 987.65).
fn rcm_timestep(s: f64) -> f64 {
    let scaled = f64::from(s as f32) * 1000.0;
    bf16::from_f32(scaled as f32).to_f64()
}

/// Wan's training sigmas are `1 − linspace(1, 1/1000, 1000)` stored as f32, and
/// `FlowUniPCMultistepScheduler` starts inference from their maximum read back as a Python float.
const WAN_SIGMA_MAX: f64 = 0.999_f32 as f64;
const WAN_TRAIN_TIMESTEPS: f64 = 1000.0;

/// Wan's flow-matching schedule (`FlowUniPCMultistepScheduler.set_timesteps`): `u_k` =
/// `linspace(WAN_SIGMA_MAX, 0, N+1)[:N]` in f64, shifted `σ = shift·u/(1 + (shift−1)·u)`,
/// timesteps `int64(σ·1000)` from the f64 sigmas, then sigmas stored as f32 with a final 0.
/// Replicating the f32 narrowing keeps the solver's coefficients on upstream's exact grid.
pub(crate) fn flow(steps: usize, shift: f64) -> Schedule {
    // numpy's linspace: `k·step + start` with `step = (stop − start)/(num − 1)`.
    let step = -WAN_SIGMA_MAX / steps as f64;
    let shifted: Vec<f64> = (0..steps)
        .map(|k| {
            let u = k as f64 * step + WAN_SIGMA_MAX;
            shift * u / (1.0 + (shift - 1.0) * u)
        })
        .collect();
    let timesteps = shifted
        .iter()
        .map(|&s| (s * WAN_TRAIN_TIMESTEPS).trunc())
        .collect();
    let sigmas = shifted
        .iter()
        .map(|&s| f64::from(s as f32))
        .chain(std::iter::once(0.0))
        .collect();
    Schedule { sigmas, timesteps }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wan_reference_timesteps_50_steps_shift_5() {
        let expected = [
            999, 995, 991, 987, 982, 978, 973, 968, 963, 957, 952, 946, 940, 934, 927, 920, 913,
            906, 898, 890, 882, 873, 863, 854, 843, 833, 821, 809, 796, 783, 768, 753, 737, 720,
            701, 681, 660, 636, 611, 584, 555, 522, 487, 448, 405, 356, 302, 241, 172, 92,
        ];
        let got: Vec<i64> = flow(50, 5.0)
            .timesteps()
            .iter()
            .map(|&t| t as i64)
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn rcm_old_list_values_round_like_bf16() {
        // The reference table's bf16 column for t = 1.3 and 0.6 (the retired list) exercises the
        // rounding away from the nearest integer.
        for (t, fed) in [(1.3_f64, 784.0), (0.6, 406.0)] {
            let s = t.sin() / (t.cos() + t.sin());
            assert_eq!(rcm_timestep(s), fed);
        }
    }
}
