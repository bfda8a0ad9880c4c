//! The Wan2.1 / Wan2.2 DiT (`WanModel` of Wan-Video/Wan2.1 `wan/modules/model.py`, diffusers'
//! `WanTransformer3DModel`), following shared/reference/wan.md §1 part by part, with
//! TurboDiffusion's SLA self-attention (turbodiffusion.md §4).
//!
//! Numerics: time embedding and modulation in f32 from an f64 sinusoid, norms with f32
//! statistics, residual adds computed in f32. The residual stream keeps the patch embedding's
//! type: f32 on the CPU backend (which runs everything in f32), bf16 in the CUDA backend's bf16
//! precision, as diffusers keeps it (`.type_as(hidden_states)` after each add; the original Wan
//! promotes it to f32, shared/reference/wan.md §1.6).

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
