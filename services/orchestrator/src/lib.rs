//! Turbine's public gRPC service, `turbine.v1.Orchestrator`: text-to-video jobs queued, run
//! through the text encoder, denoiser and VAE stage services, and stored as MP4 artifacts.
//!
//! - [`queue`]: the job engine's state as one actor (queue, job table, idempotency keys,
//!   artifact store), [`job`]: one job through the stages, [`video`]: H.264 encoding.
//! - [`stages`]: what a job needs from the stage services; [`clients`] implements it over gRPC
//!   with [`balance`] (least in-flight replica, back-off, DNS re-resolution) and retries.
//! - [`cache`]: prompt embeddings; [`artifacts`]: finished videos on disk under a size cap.
//! - [`service`]: the gRPC handlers; [`server`]: health, reflection, SIGTERM drain.

pub mod artifacts;
pub mod balance;
pub mod cache;
pub mod clients;
pub mod config;
pub mod error;
pub mod job;
pub mod params;
pub mod queue;
pub mod server;
pub mod service;
pub mod stages;
pub mod video;

#[cfg(test)]
mod api_tests;
#[cfg(test)]
mod testing;

pub use config::Config;
pub use server::{run, serve};
