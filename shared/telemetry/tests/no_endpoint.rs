//! Without an OTLP endpoint there is no exporter and no error, and trace context still propagates.

use std::time::{Duration, Instant};

use opentelemetry::trace::TraceContextExt as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use turbine_telemetry::TelemetryConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_endpoint_no_exporter() {
    let telemetry = turbine_telemetry::init(&TelemetryConfig::default()).unwrap();
    assert!(!telemetry.exports_spans());
    assert_eq!(telemetry.metrics_addr(), None);

    // A job queued under a request span: the worker span joins the request's trace.
    let submit = tracing::info_span!("submit_job");
    let carrier = submit.in_scope(turbine_telemetry::current_context_carrier);
    assert!(carrier.contains_key("traceparent"), "{carrier:?}");
    let job = tracing::info_span!("job");
    turbine_telemetry::set_parent_from(&job, &carrier);
    let trace_id = |span: &tracing::Span| span.context().span().span_context().trace_id();
    assert_eq!(trace_id(&job), trace_id(&submit));

    // Outside any span there is nothing to carry.
    assert!(turbine_telemetry::current_context_carrier().is_empty());

    // The subscriber is process-global: a second init is an error, not a silent no-op.
    assert!(turbine_telemetry::init(&TelemetryConfig::default()).is_err());

    let started = Instant::now();
    telemetry.shutdown().unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
}
