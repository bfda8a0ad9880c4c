//! Text-to-video generation in one process, on any [`turbine_tensor::Backend`]: the embedded path of
//! `turbine generate`, and the reference the stage services are checked against.
//!
//! A [`GenerateRequest`] is validated into typed values first; [`Pipeline::generate`] then runs
//! the umT5 text encoder, the DiT under the chosen sampler, and the VAE decoder, which streams
//! frames into a [`FrameSink`] as each latent frame is decoded, reporting [`Event`]s and
//! [`Timings`] per stage.

mod assets;
mod denoise;
mod error;
mod pipeline;
mod request;

pub use assets::{ModelFiles, ModelSource};
pub use denoise::DitVelocity;
pub use error::{Error, Result};
pub use pipeline::{Event, FrameSink, Pipeline, Report, Stage, Timings};
pub use request::{FRAME_STRIDE, GenerateRequest, MAX_FRAMES, MAX_SIDE, SIZE_MULTIPLE, VideoShape};
