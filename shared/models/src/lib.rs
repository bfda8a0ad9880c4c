//! Turbine's networks, written once against the [`turbine_tensor::Backend`] trait.
//!
//! - [`wan`]: the Wan2.1 / Wan2.2 diffusion transformer (the denoiser), with TurboDiffusion's
//!   sparse-linear self-attention and W8A8 checkpoints.
//! - [`umt5`]: the umT5-XXL text encoder and its tokenizer, with Wan's prompt cleaning.
//! - [`vae`]: the Wan2.1 causal video VAE (encode, and frame-streaming decode).
//! - [`weights`]: the checkpoint reading they share (layout detection, shape-checked tensors).

pub mod error;
pub mod seeded;
pub mod umt5;
pub mod vae;
pub mod wan;
pub mod weights;

pub use error::{Error, Result};
