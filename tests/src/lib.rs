//! Harness of Turbine's cluster tests (`tests/cluster/`): the real service binaries started as
//! separate processes on loopback sockets, the way a deployment runs them.
//!
//! - [`binaries`]: builds the service binaries once per test process (`cargo build --bins
//!   --tests` with the test's own profile) and finds them from cargo's own report, or takes them
//!   from `TURBINE_BIN_DIR`.
//! - [`process`]: one child process, its log captured, SIGKILLed when dropped.
//! - [`cluster`]: text encoder, denoiser replicas, VAE and orchestrator, each on a port the kernel
//!   picked (`--listen 127.0.0.1:0`, read back from the log), ready once grpc.health.v1 says
//!   SERVING.
//! - [`client`]: job helpers (watch to the end, download), Prometheus scraping, the embedded
//!   reference (`turbine generate` with the same parameters).
//! - [`otlp`]: an OTLP gRPC trace receiver.

pub mod binaries;
pub mod client;
pub mod cluster;
pub mod otlp;
pub mod process;

pub use binaries::{Binaries, binaries};
pub use cluster::{Cluster, ClusterConfig};
pub use process::Process;
