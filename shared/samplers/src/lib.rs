//! Sampling schedules and solvers for Wan2.1/2.2 video diffusion.
//!
//! - [`RcmConfig`]: TurboDiffusion's rCM sampler for the distilled checkpoints, 1–4 steps, no
//!   guidance.
//! - [`FlowConfig`]: Wan's own flow-matching sampler, UniPC (or Euler) over shifted sigmas, with
//!   classifier-free guidance.
//!
//! Both drive a [`VelocityModel`] written against [`turbine_tensor::Backend`], report each step to
//! a [`StepObserver`] (progress, previews, cancellation), and draw noise from a [`NoiseSource`].
//!
//! # Precision
//!
//! The sampler state is a host-side f64 [`Latent`]. TurboDiffusion keeps its rCM state in float64
//! and UniPC combines up to three past estimates with coefficients that cancel, while backends may
//! compute in f32 only; so each step uploads an f32 copy of the state (the DiT narrows it to bf16
//! anyway), downloads the velocity and does the update on the host in f64. That is one latent-sized
//! round trip per forward (≈8 MB at 480p, 81 frames), small next to a DiT forward, and it makes
//! the CPU backend an exact oracle for the sampler arithmetic.
//!
//! # Timesteps
//!
//! Models receive the timestep exactly as upstream feeds its time embedding: rCM's `1000·s`
//! narrowed to bf16 (988, 932, 852, 608 for the 4-step T2V default), Wan's `σ·1000` truncated to
//! an integer.
//!
//! # Noise
//!
//! [`SeededNoise`] makes runs reproducible from a `u64` seed on any backend ([`DrawnAhead`]
//! draws its first tensor on a thread while the caller does other work). Bitwise parity with
//! PyTorch's RNG (CUDA Philox streams) is not a goal, so outputs match upstream statistically, not
//! bit for bit; parity tests inject upstream's noise through [`RecordedNoise`]. Draw order: the
//! initial noise, then one tensor per step (rCM SDE only, including the last step, as upstream).

mod error;
mod flow;
mod latent;
mod model;
mod noise;
mod normals;
mod observer;
mod rcm;
mod schedule;

use turbine_tensor::Backend;

pub use error::{Error, Result};
pub use flow::{FlowConfig, FlowSolver};
pub use latent::Latent;
pub use model::{Conditioning, VelocityModel};
pub use noise::{DrawnAhead, NoiseSource, RecordedNoise, SeededNoise};
pub use observer::{StepEvent, StepObserver};
pub use rcm::{RcmConfig, RcmMode};
pub use schedule::Schedule;

/// Either sampler, for callers that choose at run time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplerConfig {
    Rcm(RcmConfig),
    Flow(FlowConfig),
}

impl SamplerConfig {
    pub fn schedule(&self) -> Schedule {
        match self {
            SamplerConfig::Rcm(c) => c.schedule(),
            SamplerConfig::Flow(c) => c.schedule(),
        }
    }

    pub fn sample<B: Backend, M: VelocityModel<B> + ?Sized>(
        &self,
        backend: &B,
        model: &mut M,
        shape: &[usize],
        noise: &mut dyn NoiseSource,
        observer: &mut dyn StepObserver,
    ) -> Result<Latent> {
        match self {
            SamplerConfig::Rcm(c) => c.sample(backend, model, shape, noise, observer),
            SamplerConfig::Flow(c) => c.sample(backend, model, shape, noise, observer),
        }
    }
}

impl From<RcmConfig> for SamplerConfig {
    fn from(c: RcmConfig) -> Self {
        SamplerConfig::Rcm(c)
    }
}

impl From<FlowConfig> for SamplerConfig {
    fn from(c: FlowConfig) -> Self {
        SamplerConfig::Flow(c)
    }
}
