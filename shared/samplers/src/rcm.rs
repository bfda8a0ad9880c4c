//! TurboDiffusion's rCM sampler (`inference/wan2.1_t2v_infer.py`, `wan2.2_i2v_infer.py`): 1–4
//! steps of the distilled consistency model, no guidance.

use turbine_tensor::Backend;

use crate::model::Runner;
use crate::observer::notify;
use crate::{
    Conditioning, Error, Latent, NoiseSource, Result, Schedule, StepObserver, VelocityModel,
    schedule,
};

/// How rCM moves between noise levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RcmMode {
    /// Upstream's default: jump to `x̂₀`, re-noise to the next level with fresh noise.
    #[default]
    Sde,
    /// `--ode`: a rectified-flow Euler step, no noise after the initial draw.
    Ode,
}

/// Validated rCM parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RcmConfig {
    steps: usize,
    sigma_max: f64,
    mode: RcmMode,
}

impl RcmConfig {
    /// The distilled checkpoints support 1 to 4 steps (upstream's `--num_steps` choices).
    pub const MAX_STEPS: usize = 4;
    /// Upstream's default initial EDM sigma for Wan2.1 T2V.
    pub const SIGMA_MAX_T2V: f64 = 80.0;
    /// Upstream's default initial EDM sigma for Wan2.2 I2V.
    pub const SIGMA_MAX_I2V: f64 = 200.0;

    pub fn new(steps: usize, sigma_max: f64, mode: RcmMode) -> Result<Self> {
        if !(1..=Self::MAX_STEPS).contains(&steps) {
            return Err(Error::invalid("rCM steps", steps, "1 to 4"));
        }
        if !(sigma_max.is_finite() && sigma_max > 0.0) {
            return Err(Error::invalid(
                "rCM sigma_max",
                sigma_max,
                "a finite value > 0",
            ));
        }
        Ok(Self {
            steps,
            sigma_max,
            mode,
        })
    }

    pub fn steps(&self) -> usize {
        self.steps
    }

    pub fn sigma_max(&self) -> f64 {
        self.sigma_max
    }

    pub fn mode(&self) -> RcmMode {
        self.mode
    }

    pub fn schedule(&self) -> Schedule {
        schedule::rcm(self.steps, self.sigma_max)
    }

    /// Samples a latent of `shape`: `x = s₀·ε₀`, then per step `x̂₀ = x − s·v` and
    /// SDE `x ← (1 − s')·x̂₀ + s'·ε` (a fresh `ε` every step, the last included, as upstream) or
    /// ODE `x ← x − (s − s')·v`.
    pub fn sample<B: Backend, M: VelocityModel<B> + ?Sized>(
        &self,
        backend: &B,
        model: &mut M,
        shape: &[usize],
        noise: &mut dyn NoiseSource,
        observer: &mut dyn StepObserver,
    ) -> Result<Latent> {
        let schedule = self.schedule();
        let s = schedule.sigmas();
        let mut runner = Runner { backend, model };
        let eps = noise.draw(shape)?;
        let mut x = Latent::from_fn(shape, |i| f64::from(eps[i]) * s[0]);
        for (k, &timestep) in schedule.timesteps().iter().enumerate() {
            let (s_cur, s_next) = (s[k], s[k + 1]);
            let input = runner.upload(&x)?;
            // The step's noise (millions of draws) comes on another thread while the model runs;
            // the draw order is unchanged.
            let (v, eps) = std::thread::scope(|scope| {
                let eps = (self.mode == RcmMode::Sde).then(|| scope.spawn(|| noise.draw(shape)));
                let v = runner.velocity(&input, shape, timestep, Conditioning::Positive);
                let eps = eps.map(|draw| {
                    draw.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                });
                (v, eps)
            });
            let v = v?;
            let denoised = Latent::from_fn(shape, |i| x.data()[i] - s_cur * v[i]);
            x = match eps {
                // SDE: a fresh sample at the next noise level.
                Some(eps) => {
                    let eps = eps?;
                    // Upstream multiplies the f32 noise by the f64 scalar in f32 (PyTorch lets a
                    // dimensioned f32 tensor win over a 0-dim f64) before adding to the f64 state.
                    let s_next_f32 = s_next as f32;
                    Latent::from_fn(shape, |i| {
                        (1.0 - s_next) * denoised.data()[i] + f64::from(s_next_f32 * eps[i])
                    })
                }
                None => Latent::from_fn(shape, |i| x.data()[i] - (s_cur - s_next) * v[i]),
            };
            notify(observer, &schedule, k, &denoised, &x)?;
        }
        Ok(x)
    }
}
