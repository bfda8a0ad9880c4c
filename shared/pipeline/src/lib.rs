//! Text-to-video generation in one process, on any [`turbine_tensor::Backend`]: the embedded path of
//! `turbine generate`, and the reference the stage services are checked against.
//!
//! A [`GenerateRequest`] is validated into typed values first. Each stage stands alone, so a stage
//! service loads only its own model:
//!
//! - [`TextStage`]: tokenizer + umT5, prompt → context `[tokens, d_model]`;
//! - [`DenoiseStage`]: the DiT under the chosen sampler, contexts + seed → latents, with a step
//!   observer that can cancel and render [`Preview`]s;
//! - [`DecodeStage`]: the VAE, latent frames → video frames one at a time ([`FrameDecoder`]), and
//!   video → latents.
//!
//! [`Pipeline::generate`] composes the three, streaming frames into a [`FrameSink`] as each latent
//! frame is decoded and reporting [`Event`]s and [`Timings`] per stage. [`rgb`] holds the one
//! 8-bit quantization of frames.

mod assets;
mod decode;
mod denoise;
mod error;
mod load;
mod pipeline;
mod preview;
mod request;
pub mod rgb;
mod text;

pub use assets::{ModelFiles, ModelSource};
pub use decode::{DecodeStage, FrameDecoder, PendingFrames, latent_frames};
pub use denoise::{DenoiseStage, DenoiseStep, DitVelocity, MAX_CONTEXT_ROWS};
pub use error::{Error, Result};
pub use load::{LoadReport, ModelLoad};
pub use pipeline::{ChunkTimes, Event, FrameSink, Pipeline, Report, Stage, Timings};
pub use preview::Preview;
pub use request::{FRAME_STRIDE, GenerateRequest, MAX_FRAMES, MAX_SIDE, SIZE_MULTIPLE, VideoShape};
pub use text::{EncodedPrompt, TextStage};
