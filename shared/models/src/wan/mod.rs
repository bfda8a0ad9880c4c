//! The Wan2.1 / Wan2.2 DiT (`WanModel` of Wan-Video/Wan2.1 `wan/modules/model.py`, diffusers'
//! `WanTransformer3DModel`), following shared/reference/wan.md §1 part by part, with
//! TurboDiffusion's SLA self-attention (turbodiffusion.md §4).
//!
//! Numerics follow the original: time embedding and modulation in f32 from an f64 sinusoid,
//! f32 residual stream, norms with f32 statistics. The CPU backend runs everything in f32.

mod attention;
mod block;
mod config;
mod embeddings;
mod model;
pub mod weights;

pub use attention::{AttentionMode, Qkv};
pub use config::WanConfig;
pub use embeddings::sinusoid;
pub use model::{TextContext, WanModel};
pub use weights::{Layout, WanWeights};
