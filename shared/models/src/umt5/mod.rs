//! umT5-XXL's encoder, Wan's text encoder (`T5Encoder` of Wan-Video/Wan2.1
//! `wan/modules/t5.py`, transformers' `UMT5EncoderModel`), and its tokenizer, following
//! shared/reference/wan.md §4.
//!
//! Numerics: the CPU backend runs everything in f32; the original runs in bf16 with f32 norm
//! statistics and softmax.

mod attention;
mod clean;
mod config;
mod encoder;
mod ffn;
mod tokenizer;
pub mod weights;

pub use attention::relative_position_bucket;
pub use clean::clean_prompt;
pub use config::UmT5Config;
pub use encoder::UmT5Encoder;
pub use tokenizer::{Tokens, UmT5Tokenizer};
pub use weights::{Layout, UmT5Weights};
