//! One telemetry setup for every Turbine service, so a video job is one trace from the orchestrator
//! through the text encoder, denoiser and VAE.
//!
//! - [`init`] with a [`TelemetryConfig`] flattened into the service's clap arguments: logs, OTLP span
//!   export, W3C propagator, `/metrics`; keep the [`TelemetryGuard`] until exit.
//! - Servers: `Server::builder().layer(GrpcServerLayer::new(guard.metrics().clone()))`.
//! - Clients: `XxxClient::with_interceptor(channel, inject)`, or [`GrpcClientLayer`] on the channel for a
//!   client span per call as well.
//! - Job queues: store [`current_context_carrier`] with the job; [`set_parent_from`] on the worker span.
//! - [`Metrics`]: queue and job gauges, stage and step histograms.
//!
//! ```no_run
//! use tonic::transport::{Channel, Server};
//! use tower::ServiceBuilder;
//! use turbine_telemetry::{GrpcClientLayer, GrpcServerLayer, Stage, TelemetryConfig};
//!
//! # async fn serve(config: TelemetryConfig) -> anyhow::Result<()> {
//! let telemetry = turbine_telemetry::init(&config)?;
//! let metrics = telemetry.metrics().clone();
//!
//! let downstream = Channel::from_static("http://denoiser:50051").connect_lazy();
//! let _client = tonic_health::pb::health_client::HealthClient::new(
//!     ServiceBuilder::new().layer(GrpcClientLayer).service(downstream),
//! );
//! metrics.observe_stage(Stage::Denoise, std::time::Duration::from_secs(42));
//!
//! let (_reporter, health) = tonic_health::server::health_reporter();
//! Server::builder()
//!     .layer(GrpcServerLayer::new(metrics))
//!     .add_service(health)
//!     .serve("0.0.0.0:50051".parse()?)
//!     .await?;
//! telemetry.shutdown()
//! # }
//! ```

mod call;
mod config;
mod init;
mod layer;
mod metrics;
mod propagation;

pub use call::{ObservedBody, ResponseFuture};
pub use config::{LogFormat, TelemetryConfig};
pub use init::{TelemetryGuard, init};
pub use layer::{GrpcClientLayer, GrpcClientService, GrpcServerLayer, GrpcServerService};
pub use metrics::{Metrics, Stage};
pub use propagation::{current_context_carrier, inject, set_parent_from};
