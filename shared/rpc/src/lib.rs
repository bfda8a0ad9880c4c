//! Shared plumbing of Turbine's gRPC stage services.
//!
//! - [`tensor`]: tensors as streams of ≤ 1 MiB [`TensorChunk`](turbine_proto::v1::TensorChunk)s,
//!   and their validated reassembly (a malformed stream is `INVALID_ARGUMENT`, never a panic).
//! - [`params`]: `GenerationParams` validated into a [`turbine_pipeline::GenerateRequest`].
//! - [`error`]: the one error type of the services and its one mapping to `tonic::Status`.
//! - [`worker`]: the dedicated model thread with bounded admission; [`stream`]: bounded response
//!   streams fed from it.
//! - [`device`]: `--device`, `--quant` and `--text-device`: which backend a process runs its
//!   models on, and where umT5 goes when GPU memory is short.
//! - [`server`]: the skeleton every stage service runs: health (SERVING only after warm-up),
//!   reflection v1 and v1alpha, message limits, SIGTERM drain, clap configuration.
//! - `testing` (feature `testing`): loopback servers, health / reflection probes and service
//!   binaries run as child processes, for the services' tests.

pub mod device;
pub mod error;
pub mod params;
pub mod server;
pub mod stream;
pub mod tensor;
#[cfg(feature = "testing")]
pub mod testing;
pub mod worker;

pub use error::{Error, Result};
