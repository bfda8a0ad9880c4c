//! W3C trace context (`traceparent`/`tracestate`) in and out of gRPC metadata and job records.

use std::collections::HashMap;

use opentelemetry::global;
use opentelemetry::propagation::Injector;
use opentelemetry::trace::TraceContextExt as _;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::{Request, Status};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// A tonic interceptor that sends the current span's context along with the request:
/// `XxxClient::with_interceptor(channel, turbine_telemetry::inject)`.
///
/// The caller's span becomes the server span's parent. [`crate::GrpcClientLayer`] does the same and
/// also opens a client span that records the call's duration and status.
pub fn inject(mut request: Request<()>) -> Result<Request<()>, Status> {
    let cx = Span::current().context();
    global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&cx, &mut MetadataInjector(request.metadata_mut()));
    });
    Ok(request)
}

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // The W3C propagator only writes lowercase ASCII keys and values; a pair that is not valid
        // metadata cannot come from it, so dropping it loses nothing.
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// The current span's context as `traceparent`/`tracestate` entries, to store with a queued job.
///
/// Empty when there is no current span (or telemetry is not initialised).
pub fn current_context_carrier() -> HashMap<String, String> {
    let cx = Span::current().context();
    let mut carrier = HashMap::new();
    global::get_text_map_propagator(|propagator| propagator.inject_context(&cx, &mut carrier));
    carrier
}

/// Makes `span` a child of the context stored in `carrier` by [`current_context_carrier`], so a job's
/// worker span joins the trace of the request that submitted it.
///
/// Call it before `span` is first entered: a started span cannot change its parent. A carrier
/// without a valid context leaves `span` where it is.
pub fn set_parent_from(span: &Span, carrier: &HashMap<String, String>) {
    let cx = global::get_text_map_propagator(|propagator| propagator.extract(carrier));
    if !cx.span().span_context().is_valid() {
        return;
    }
    // A lost trace link must never fail the job it describes, so this is reported, not returned.
    if let Err(error) = span.set_parent(cx) {
        tracing::warn!(%error, "cannot attach a job span to its submitter's trace");
    }
}
