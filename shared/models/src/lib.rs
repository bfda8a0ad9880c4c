//! Turbine's networks, written once against the [`turbine_tensor::Backend`] trait.
//!
//! - [`wan`]: the Wan2.1 / Wan2.2 diffusion transformer (the denoiser), with TurboDiffusion's
//!   sparse-linear self-attention and W8A8 checkpoints.

pub mod error;
pub mod seeded;
pub mod wan;

pub use error::{Error, Result};
