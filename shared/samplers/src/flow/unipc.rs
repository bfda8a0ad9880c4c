//! UniPC as Wan runs it: `FlowUniPCMultistepScheduler` (a flow-matching copy of diffusers'
//! `UniPCMultistepScheduler`) with `solver_order=2`, `solver_type="bh2"`, `predict_x0=True`,
//! `lower_order_final=True`, no disabled correctors.
//!
//! Per step `k` the model's estimate `m_k = x_k − σ_k·v_k` (from the *uncorrected* `x_k`, which is
//! what the model saw) first corrects `x_k` (UniC, from the state the previous predictor started
//! at), then the predictor (UniP) steps from the corrected `x_k` to `x_{k+1}`. In log-SNR
//! `λ = ln(1 − σ) − ln σ`, with `h = λ_t − λ_s` and `B(h) = φ₁ = expm1(−h)` (bh2):
//!
//! - UniP: `x_t = (σ_t/σ_s)·x_s − α_t·φ₁·m_s − α_t·B·ρ·D`, order 2 adding `D = (m_{s−1} − m_s)/r`,
//!   `r = (λ_{s−1} − λ_s)/h`, `ρ = 1/2`.
//! - UniC: the same base from `x_{k−1}` with `m_{k−1}`, plus `ρ_c·(m_k − m_{k−1})` and at order 2
//!   the `D` of `m_{k−2}`, `ρ` solving diffusers' 2×2 system (order 1: `ρ_c = 1/2`).
//!
//! The predictor's order is `min(2, N − k, k + 1)` and the corrector reuses the order of the
//! predictor it corrects. diffusers computes these scalar coefficients in f32 (its sigmas are f32);
//! here they are f64, which moves trajectories by ~1e-7 relative (measured by the golden script).

pub(crate) struct UniPc<'a> {
    sigmas: &'a [f64],
    /// `λ_k`; `+∞` at the final `σ = 0`.
    lambdas: Vec<f64>,
    /// `m` of the previous step and of the one before it.
    prev: Option<Vec<f64>>,
    prev2: Option<Vec<f64>>,
    /// The corrected state the previous predictor started from, and that predictor's order.
    last: Option<(Vec<f64>, usize)>,
}

impl<'a> UniPc<'a> {
    pub fn new(sigmas: &'a [f64]) -> Self {
        Self {
            sigmas,
            lambdas: sigmas.iter().map(|&s| (1.0 - s).ln() - s.ln()).collect(),
            prev: None,
            prev2: None,
            last: None,
        }
    }

    /// Advances from the step-`k` state `x` (as the model saw it) with the model's estimate `m`.
    pub fn step(&mut self, k: usize, x: &[f64], m: &[f64]) -> Vec<f64> {
        let last = self.last.take();
        let x = match (last, self.prev.as_deref()) {
            (Some((x_prev, order)), Some(m_prev)) => {
                let diff = match (order, self.prev2.as_deref()) {
                    (2, Some(m2)) => Some(self.difference(k - 1, k - 2, k, m_prev, m2)),
                    _ => None,
                };
                self.corrector(k, &x_prev, m_prev, m, diff)
            }
            _ => x.to_vec(),
        };
        self.prev2 = self.prev.replace(m.to_vec());

        let remaining = self.sigmas.len() - 1 - k;
        let order = 2.min(remaining).min(k + 1);
        let diff = match (order, self.prev2.as_deref()) {
            (2, Some(m_prev)) => Some(self.difference(k, k - 1, k + 1, m, m_prev)),
            _ => None,
        };
        let next = self.predictor(k, &x, m, diff);
        self.last = Some((x, order));
        next
    }

    /// `(r, D)` for the step `s → t`: `D = (m_i − m_s)/r`, `r = (λ_i − λ_s)/(λ_t − λ_s)`.
    fn difference(
        &self,
        s: usize,
        i: usize,
        t: usize,
        m_s: &[f64],
        m_i: &[f64],
    ) -> (f64, Vec<f64>) {
        let r = (self.lambdas[i] - self.lambdas[s]) / (self.lambdas[t] - self.lambdas[s]);
        let d = m_i
            .iter()
            .zip(m_s)
            .map(|(&mi, &ms)| (mi - ms) / r)
            .collect();
        (r, d)
    }

    /// UniP from step `k` to `k + 1`.
    fn predictor(&self, k: usize, x: &[f64], m: &[f64], diff: Option<(f64, Vec<f64>)>) -> Vec<f64> {
        let (sigma_s, sigma_t) = (self.sigmas[k], self.sigmas[k + 1]);
        if sigma_t == 0.0 {
            // λ_t = +∞, so φ₁ = −1 and σ_t/σ_s = 0: the step lands exactly on x̂₀. Only order 1
            // gets here (lower_order_final); order 2's D would be 0·∞.
            debug_assert!(diff.is_none());
            return m.to_vec();
        }
        let alpha_t = 1.0 - sigma_t;
        let phi1 = (-(self.lambdas[k + 1] - self.lambdas[k])).exp_m1();
        let b_h = phi1;
        let ratio = sigma_t / sigma_s;
        let base = |i: usize| ratio * x[i] - alpha_t * phi1 * m[i];
        match diff {
            None => (0..x.len()).map(base).collect(),
            // bh2 order 2 uses the fixed ρ = 1/2 (diffusers' "simplified version").
            Some((_, d)) => (0..x.len())
                .map(|i| base(i) - alpha_t * b_h * (0.5 * d[i]))
                .collect(),
        }
    }

    /// UniC at step `k`: from the state `x_prev` at `k − 1` and its estimate `m_prev`, using the new
    /// estimate `m`.
    fn corrector(
        &self,
        k: usize,
        x_prev: &[f64],
        m_prev: &[f64],
        m: &[f64],
        diff: Option<(f64, Vec<f64>)>,
    ) -> Vec<f64> {
        let (sigma_s, sigma_t) = (self.sigmas[k - 1], self.sigmas[k]);
        let alpha_t = 1.0 - sigma_t;
        let hh = -(self.lambdas[k] - self.lambdas[k - 1]);
        let phi1 = hh.exp_m1();
        let b_h = phi1;
        let ratio = sigma_t / sigma_s;
        let base = |i: usize| ratio * x_prev[i] - alpha_t * phi1 * m_prev[i];
        match diff {
            None => (0..m.len())
                .map(|i| base(i) - alpha_t * b_h * (0.5 * (m[i] - m_prev[i])))
                .collect(),
            Some((r, d)) => {
                let (rho_d, rho_t) = corrector_rhos(hh, b_h, r);
                (0..m.len())
                    .map(|i| base(i) - alpha_t * b_h * (rho_d * d[i] + rho_t * (m[i] - m_prev[i])))
                    .collect()
            }
        }
    }
}

/// Order-2 UniC weights `(ρ_D, ρ_t)`: diffusers solves `R·ρ = b` with `R = [[1, 1], [r, 1]]` and
/// `b` from its `h_phi_k` recursion (`b_i = h_phi_i·i!/B(h)`); solved here in closed form.
fn corrector_rhos(hh: f64, b_h: f64, r: f64) -> (f64, f64) {
    let h_phi_1 = hh.exp_m1() / hh - 1.0;
    let h_phi_2 = h_phi_1 / hh - 0.5;
    let b1 = h_phi_1 / b_h;
    let b2 = h_phi_2 * 2.0 / b_h;
    let rho_d = (b1 - b2) / (1.0 - r);
    (rho_d, b1 - rho_d)
}
