//! Prometheus metrics: typed handles and the `/metrics` endpoint.
//!
//! `prometheus-client` rather than `metrics` + `metrics-exporter-prometheus`: its handles are plain values
//! owned by a registry that is passed around, so there is no process-global recorder to install exactly
//! once (several servers or tests in one process each get their own), and label sets are typed structs
//! instead of string pairs assembled at every call site.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;
use tonic::Code;

/// A phase of a video job, the `stage` label of `stage_seconds`.
///
/// A closed set keeps the label's cardinality bounded and the names identical across services.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Stage {
    /// Waiting in the orchestrator's queue.
    Queue,
    /// umT5 prompt encoding.
    TextEncode,
    /// The whole denoising loop.
    Denoise,
    /// VAE decoding of the final latent.
    VaeDecode,
    /// Muxing frames into the output container.
    VideoEncode,
}

impl Stage {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queue => "queue",
            Self::TextEncode => "text_encode",
            Self::Denoise => "denoise",
            Self::VaeDecode => "vae_decode",
            Self::VideoEncode => "video_encode",
        }
    }
}

impl EncodeLabelValue for Stage {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: Stage,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    method: String,
    code: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The process's metrics; cheap to clone, every clone records into the same registry.
///
/// Exposed names: `queue_depth`, `jobs_running`, `stage_seconds{stage}`, `step_seconds`,
/// `first_frame_seconds`, `rpc_requests_total{method}`, `rpc_errors_total{method,code}`,
/// `rpc_seconds{method}`. The `rpc_*` series are recorded by [`crate::GrpcServerLayer`].
#[derive(Clone, Debug)]
pub struct Metrics {
    inner: Arc<Inner>,
    /// Whether this handle records stage and step times ([`Metrics::rpc_only`]).
    timings: bool,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    queue_depth: Gauge,
    jobs_running: Gauge,
    stage_seconds: HistogramFamily<StageLabels>,
    step_seconds: Histogram,
    first_frame_seconds: Histogram,
    rpc_requests: Family<MethodLabels, Counter>,
    rpc_errors: Family<ErrorLabels, Counter>,
    rpc_seconds: HistogramFamily<MethodLabels>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every Turbine metric registered.
    pub fn new() -> Self {
        // Stages run from ~10 ms (text encoding) to tens of minutes (denoising long videos on one GPU).
        let stage_seconds: HistogramFamily<StageLabels> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.01, 2.0, 18)));
        // One DiT forward pass: ~10 ms (small, distilled) to ~40 s (14B, 720p, CFG).
        let step_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 13));
        // A job's first frames: under a second (1.3B, 4 steps, a GPU) to as long as its stages.
        let first_frame_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 18));
        // Unary calls take milliseconds; streaming calls last as long as their job.
        let rpc_seconds: HistogramFamily<MethodLabels> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 22)));
        let queue_depth = Gauge::default();
        let jobs_running = Gauge::default();
        let rpc_requests = Family::<MethodLabels, Counter>::default();
        let rpc_errors = Family::<ErrorLabels, Counter>::default();

        // One namespace for every series, so dashboards can select Turbine's metrics wholesale.
        let mut registry = Registry::with_prefix("turbine");
        registry.register(
            "queue_depth",
            "Jobs waiting in the queue",
            queue_depth.clone(),
        );
        registry.register("jobs_running", "Jobs being executed", jobs_running.clone());
        registry.register(
            "stage_seconds",
            "Duration of one job stage in seconds",
            stage_seconds.clone(),
        );
        registry.register(
            "step_seconds",
            "Duration of one denoising step in seconds",
            step_seconds.clone(),
        );
        registry.register(
            "first_frame_seconds",
            "Time from a job's start to its first decoded frames reaching the video writer",
            first_frame_seconds.clone(),
        );
        // Counters get their `_total` suffix from the encoder.
        registry.register("rpc_requests", "gRPC requests served", rpc_requests.clone());
        registry.register(
            "rpc_errors",
            "gRPC requests that ended with a non-OK status",
            rpc_errors.clone(),
        );
        registry.register(
            "rpc_seconds",
            "gRPC request duration in seconds, until the last response message",
            rpc_seconds.clone(),
        );

        Self {
            inner: Arc::new(Inner {
                registry,
                queue_depth,
                jobs_running,
                stage_seconds,
                step_seconds,
                first_frame_seconds,
                rpc_requests,
                rpc_errors,
                rpc_seconds,
            }),
            timings: true,
        }
    }

    /// Jobs waiting in the queue (`set` it from the queue's length, or `inc`/`dec`).
    pub fn queue_depth(&self) -> &Gauge {
        &self.inner.queue_depth
    }

    /// Jobs being executed.
    pub fn jobs_running(&self) -> &Gauge {
        &self.inner.jobs_running
    }

    /// The same registry, recording only the gRPC series: for stage services running in the
    /// orchestrator's process (`turbine serve`), whose stage and step times the orchestrator
    /// records once, as the job saw them. Recorded by both, every step would count twice.
    pub fn rpc_only(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            timings: false,
        }
    }

    /// Records how long one stage of a job took.
    pub fn observe_stage(&self, stage: Stage, elapsed: Duration) {
        if !self.timings {
            return;
        }
        self.inner
            .stage_seconds
            .get_or_create(&StageLabels { stage })
            .observe(elapsed.as_secs_f64());
    }

    /// Records how long one denoising step took.
    pub fn observe_step(&self, elapsed: Duration) {
        self.observe_timing(&self.inner.step_seconds, elapsed);
    }

    /// Records how long a job took, from its start, to hand its first frames to the video writer:
    /// the latency of a streamed video's beginning.
    pub fn observe_first_frame(&self, elapsed: Duration) {
        self.observe_timing(&self.inner.first_frame_seconds, elapsed);
    }

    /// A job timing, which a [`Self::rpc_only`] handle leaves to the orchestrator's.
    fn observe_timing(&self, histogram: &Histogram, elapsed: Duration) {
        if self.timings {
            histogram.observe(elapsed.as_secs_f64());
        }
    }

    pub(crate) fn observe_rpc(&self, method: &str, code: Code, elapsed: Duration) {
        // Paths of unknown methods come from clients; folding them keeps a scanner from minting series.
        let method = if code == Code::Unimplemented {
            "unknown"
        } else {
            method
        };
        let labels = MethodLabels {
            method: method.to_owned(),
        };
        self.inner.rpc_requests.get_or_create(&labels).inc();
        self.inner
            .rpc_seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if code != Code::Ok {
            let labels = ErrorLabels {
                method: labels.method,
                code: code_name(code),
            };
            self.inner.rpc_errors.get_or_create(&labels).inc();
        }
    }

    fn render(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.inner.registry)?;
        Ok(text)
    }
}

/// The canonical name from the gRPC spec, as other stacks label it.
pub(crate) fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Binds `addr` now, so a taken port fails start-up instead of a background task, and serves
/// `/metrics` on the current Tokio runtime. Returns the bound address (port 0 picks one).
pub(crate) fn serve(
    metrics: Metrics,
    addr: SocketAddr,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("binding the metrics endpoint on {addr}"))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let listener = tokio::net::TcpListener::from_std(listener)
        .context("the metrics endpoint needs a Tokio runtime")?;
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .with_state(metrics);
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "metrics endpoint stopped");
        }
    });
    Ok((bound, task))
}

async fn scrape(State(metrics): State<Metrics>) -> axum::response::Response {
    match metrics.render() {
        Ok(text) => (
            [(
                CONTENT_TYPE,
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            )],
            text,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "encoding metrics");
            axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
