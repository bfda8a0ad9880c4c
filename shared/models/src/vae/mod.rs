//! The Wan2.1 causal video VAE (`WanVAE_` of Wan-Video/Wan2.1 `wan/modules/vae.py`, diffusers'
//! `AutoencoderKLWan`), following shared/reference/wan.md §5.1: 8× spatial and 4× temporal
//! compression to 16 channels, run chunk by chunk in time with causal caches, so decoding streams
//! video frames as latent frames are decoded.
//!
//! The API takes and returns upstream's channel-first `[C, F, H, W]`; inside, activations are
//! channels-last `[F, H, W, C]` (see [`turbine_tensor::Backend::conv3d`]), converted once at
//! each end.
//!
//! The API speaks the DiT's normalized latents: `decode` applies `z·std + mean` itself (diffusers'
//! `AutoencoderKLWan.decode` expects the caller to), `encode` returns `(mu − mean)/std`. The
//! original runs the VAE in f32; the CPU backend computes everything in f32.

mod attention;
mod causal_conv;
mod config;
mod decoder;
mod encoder;
mod model;
mod resample;
mod residual;
pub mod weights;

pub use config::{LATENTS_MEAN, LATENTS_STD, WanVaeConfig};
pub use model::{DecodeSession, WanVae};
pub use weights::{Layout, VaeWeights};
