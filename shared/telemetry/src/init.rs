//! The one telemetry init of a service process and the guard that flushes it.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::global;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::task::JoinHandle;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{LogFormat, TelemetryConfig};
use crate::metrics::{self, Metrics};

/// Installs the process-wide telemetry: the `tracing` subscriber (`RUST_LOG` filter, default `info`;
/// text or JSON lines on stderr), the W3C trace-context propagator, OTLP span export when an endpoint
/// is configured, and the `/metrics` endpoint when an address is.
///
/// Call once, early in `main`, inside a multi-threaded Tokio runtime (the exporter's channel and the
/// metrics server are spawned on it), and keep the guard alive until the process exits.
///
/// # Errors
/// An invalid `RUST_LOG` or endpoint, a metrics address that cannot be bound, or a second call in
/// the same process (the subscriber is global).
pub fn init(config: &TelemetryConfig) -> anyhow::Result<TelemetryGuard> {
    let service_name = config
        .service_name()
        .map_or_else(executable_name, str::to_string);

    // Checked here because the exporter's channel and the metrics server would panic on spawn.
    if (config.otlp_endpoint().is_some() || config.metrics_addr.is_some())
        && Handle::try_current().is_err()
    {
        anyhow::bail!(
            "OTLP export and the metrics endpoint need a Tokio runtime: call init from async main"
        );
    }
    global::set_text_map_propagator(TraceContextPropagator::new());

    let mut provider = SdkTracerProvider::builder().with_resource(
        Resource::builder()
            .with_service_name(service_name.clone())
            .build(),
    );
    if let Some(endpoint) = config.otlp_endpoint() {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .with_context(|| format!("building the OTLP exporter for {endpoint}"))?;
        // Programmatic settings override the SDK's own reading of the OTEL_BSP_* variables.
        let mut batch = BatchConfigBuilder::default();
        if let Some(delay_ms) = config.otlp_schedule_delay_ms {
            batch = batch.with_scheduled_delay(Duration::from_millis(delay_ms));
        }
        provider = provider.with_span_processor(
            BatchSpanProcessor::builder(exporter)
                .with_batch_config(batch.build())
                .build(),
        );
    }
    let provider = provider.build();
    global::set_tracer_provider(provider.clone());

    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env()
        .context("parsing RUST_LOG")?;
    // Colour codes only for a terminal: docker logs and log collectors read them as text.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let fmt = match config.log_format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    };
    // Installed even without an exporter: spans then still get trace ids, so a service that does not
    // export keeps passing its callers' `traceparent` on to the services it calls.
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer(service_name.clone()));
    tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .with(filter)
        .try_init()
        .context("a global tracing subscriber is already installed")?;

    let metrics = Metrics::new();
    let (metrics_addr, metrics_server) = match config.metrics_addr {
        Some(addr) => {
            let (bound, task) = metrics::serve(metrics.clone(), addr)?;
            (Some(bound), Some(task))
        }
        None => (None, None),
    };

    tracing::info!(
        service = %service_name,
        otlp_endpoint = config.otlp_endpoint().unwrap_or("off"),
        metrics_addr = ?metrics_addr,
        "telemetry initialised",
    );
    Ok(TelemetryGuard {
        provider: Some(provider),
        exports_spans: config.otlp_endpoint().is_some(),
        metrics,
        metrics_addr,
        metrics_server,
    })
}

/// `turbine-denoiser` for `/usr/local/bin/turbine-denoiser`: distinct per service without configuration.
fn executable_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|path| {
            path.file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "turbine".to_owned())
}

/// Keeps telemetry running; dropping it (or [`TelemetryGuard::shutdown`]) exports the spans still
/// buffered, so keep it in `main` until after the server has drained on SIGTERM.
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    exports_spans: bool,
    metrics: Metrics,
    metrics_addr: Option<SocketAddr>,
    metrics_server: Option<JoinHandle<()>>,
}

impl TelemetryGuard {
    /// The process's metrics, for [`crate::GrpcServerLayer::new`] and the services' own gauges and
    /// histograms.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Where `/metrics` is served, with the real port when the configured one was 0.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Whether spans are exported over OTLP.
    pub fn exports_spans(&self) -> bool {
        self.exports_spans
    }

    /// Exports buffered spans and stops exporting; reports what dropping the guard would only log.
    ///
    /// # Errors
    /// The collector did not accept the last spans in time (the SDK waits 5 s).
    pub fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(server) = self.metrics_server.take() {
            server.abort();
        }
        let Some(provider) = self.provider.take() else {
            return Ok(());
        };
        // The export runs on the SDK's own thread but sends through a tonic channel whose worker is a
        // task on this runtime: block this worker in a way that lets the runtime keep running it.
        let in_multi_thread_runtime = Handle::try_current()
            .is_ok_and(|handle| handle.runtime_flavor() == RuntimeFlavor::MultiThread);
        let result = if in_multi_thread_runtime {
            tokio::task::block_in_place(|| provider.shutdown())
        } else {
            provider.shutdown()
        };
        result.context("flushing spans to the OTLP collector")
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            tracing::warn!("telemetry shutdown: {error:#}");
        }
    }
}
