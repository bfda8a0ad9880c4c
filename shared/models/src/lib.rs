//! Turbine's networks, written once against the [`turbine_tensor::Backend`] trait.
//!
//! - [`wan`]: the Wan2.1 / Wan2.2 diffusion transformer (the denoiser), with TurboDiffusion's
//!   sparse-linear self-attention and W8A8 checkpoints.
//! - [`vae`]: the Wan2.1 causal video VAE (encode, and frame-streaming decode).

pub mod error;
pub mod seeded;
pub mod vae;
pub mod wan;

pub use error::{Error, Result};
