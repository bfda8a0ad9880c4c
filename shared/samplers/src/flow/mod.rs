//! Wan's flow-matching sampling (`wan/text2video.py`, `wan/utils/fm_solvers_unipc.py`): shifted
//! linear sigmas, UniPC (or Euler) updates, classifier-free guidance with a negative prompt.

mod euler;
mod unipc;

use turbine_tensor::Backend;

use crate::model::Runner;
use crate::observer::notify;
use crate::{
    Conditioning, Error, Latent, NoiseSource, Result, Schedule, StepObserver, VelocityModel,
    schedule,
};
use unipc::UniPc;

/// The update rule between noise levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlowSolver {
    /// Wan's default: UniPC order 2 (bh2, predict-x0) with its corrector.
    #[default]
    UniPc,
    /// First-order rectified-flow Euler, `x ← x + (σ_{k+1} − σ_k)·v`.
    Euler,
}

/// Validated flow-matching parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlowConfig {
    steps: usize,
    shift: f64,
    guidance: f64,
    solver: FlowSolver,
}

impl FlowConfig {
    /// Wan2.1 T2V's `sample_shift` (`generate.py`).
    pub const DEFAULT_SHIFT: f64 = 5.0;
    /// Wan2.1 T2V's `sample_guide_scale`.
    pub const DEFAULT_GUIDANCE: f64 = 5.0;

    /// `guidance` is the CFG scale `g` of `v = v_u + g·(v_c − v_u)`; at exactly 1 the negative
    /// branch is never evaluated (one forward per step).
    pub fn new(steps: usize, shift: f64, guidance: f64, solver: FlowSolver) -> Result<Self> {
        if steps == 0 {
            return Err(Error::invalid("flow steps", steps, "at least 1"));
        }
        if !(shift.is_finite() && shift > 0.0) {
            return Err(Error::invalid("flow shift", shift, "a finite value > 0"));
        }
        if !(guidance.is_finite() && guidance >= 1.0) {
            return Err(Error::invalid(
                "guidance scale",
                guidance,
                "a finite value >= 1",
            ));
        }
        Ok(Self {
            steps,
            shift,
            guidance,
            solver,
        })
    }

    pub fn steps(&self) -> usize {
        self.steps
    }

    pub fn shift(&self) -> f64 {
        self.shift
    }

    pub fn guidance(&self) -> f64 {
        self.guidance
    }

    pub fn solver(&self) -> FlowSolver {
        self.solver
    }

    pub fn schedule(&self) -> Schedule {
        schedule::flow(self.steps, self.shift)
    }

    /// Samples a latent of `shape` from pure noise (`x = ε`, as Wan: not scaled by `σ_0`).
    pub fn sample<B: Backend, M: VelocityModel<B> + ?Sized>(
        &self,
        backend: &B,
        model: &mut M,
        shape: &[usize],
        noise: &mut dyn NoiseSource,
        observer: &mut dyn StepObserver,
    ) -> Result<Latent> {
        let schedule = self.schedule();
        let sigmas = schedule.sigmas();
        let mut runner = Runner { backend, model };
        let eps = noise.draw(shape)?;
        let mut x = Latent::from_fn(shape, |i| f64::from(eps[i]));
        let mut unipc = UniPc::new(sigmas);
        for (k, &timestep) in schedule.timesteps().iter().enumerate() {
            let v = self.guided_velocity(&mut runner, &x, timestep)?;
            let sigma = sigmas[k];
            let denoised = Latent::from_fn(shape, |i| x.data()[i] - sigma * v[i]);
            let next = match self.solver {
                FlowSolver::UniPc => unipc.step(k, x.data(), denoised.data()),
                FlowSolver::Euler => euler::step(x.data(), &v, sigma, sigmas[k + 1]),
            };
            x = Latent::new(shape, next)?;
            notify(observer, &schedule, k, &denoised, &x)?;
        }
        Ok(x)
    }

    /// The conditional forward, then (when guided) the negative one on the same input.
    fn guided_velocity<B: Backend, M: VelocityModel<B> + ?Sized>(
        &self,
        runner: &mut Runner<'_, B, M>,
        x: &Latent,
        timestep: f64,
    ) -> Result<Vec<f64>> {
        let input = runner.upload(x)?;
        let cond = runner.velocity(&input, x.shape(), timestep, Conditioning::Positive)?;
        if self.guidance == 1.0 {
            return Ok(cond);
        }
        let uncond = runner.velocity(&input, x.shape(), timestep, Conditioning::Negative)?;
        let g = self.guidance;
        Ok(uncond
            .iter()
            .zip(&cond)
            .map(|(&u, &c)| u + g * (c - u))
            .collect())
    }
}
