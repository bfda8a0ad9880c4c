//! Spans of a gRPC hop reach a real OTLP gRPC receiver as one trace, server span under client span.

mod common;

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use tokio::sync::mpsc;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;
use tonic::{Code, Request, Response, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tower::ServiceBuilder;
use tracing::Instrument as _;
use turbine_telemetry::{GrpcClientLayer, GrpcServerLayer, TelemetryConfig};

struct Receiver(mpsc::UnboundedSender<ExportTraceServiceRequest>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        // The test may have finished reading; late batches are of no interest.
        let _ = self.0.send(request.into_inner());
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[derive(Debug)]
struct Exported {
    service_name: String,
    span: Span,
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|value| value.value.as_ref())
}

fn string_attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attribute(attributes, key) {
        Some(Value::StringValue(value)) => Some(value),
        _ => None,
    }
}

fn int_attribute(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match attribute(attributes, key) {
        Some(Value::IntValue(value)) => Some(*value),
        _ => None,
    }
}

fn exported(batch: ExportTraceServiceRequest) -> impl Iterator<Item = Exported> {
    batch.resource_spans.into_iter().flat_map(|resource_spans| {
        let service_name = resource_spans
            .resource
            .as_ref()
            .and_then(|resource| string_attribute(&resource.attributes, "service.name"))
            .unwrap_or_default()
            .to_owned();
        resource_spans
            .scope_spans
            .into_iter()
            .flat_map(|scope_spans| scope_spans.spans)
            .map(move |span| Exported {
                service_name: service_name.clone(),
                span,
            })
    })
}

/// Reads batches until a span of every name and kind in `wanted` was exported, or fails after 5 s.
async fn collect(
    batches: &mut mpsc::UnboundedReceiver<ExportTraceServiceRequest>,
    wanted: &[(&str, SpanKind)],
) -> Vec<Exported> {
    let mut spans = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !wanted.iter().all(|(name, kind)| {
        spans
            .iter()
            .any(|s: &Exported| s.span.name == *name && s.span.kind == *kind as i32)
    }) {
        let batch = tokio::time::timeout_at(deadline, batches.recv())
            .await
            .unwrap_or_else(|_| panic!("spans missing after 5 s; got {spans:#?}"))
            .expect("receiver stopped");
        spans.extend(exported(batch));
    }
    spans
}

fn find<'a>(
    spans: &'a [Exported],
    name: &str,
    kind: SpanKind,
    trace_id: Option<&[u8]>,
) -> &'a Span {
    &spans
        .iter()
        .find(|s| {
            s.span.name == name
                && s.span.kind == kind as i32
                && trace_id.is_none_or(|id| s.span.trace_id == id)
        })
        .unwrap_or_else(|| panic!("no {kind:?} span {name} in {spans:#?}"))
        .span
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_hop_exports_one_trace() {
    let (batches_tx, mut batches) = mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver_addr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::builder()
            .add_service(TraceServiceServer::new(Receiver(batches_tx)))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );

    let telemetry = turbine_telemetry::init(&TelemetryConfig {
        otlp_endpoint: Some(format!("http://{receiver_addr}")),
        otlp_schedule_delay_ms: Some(50),
        service_name: Some("telemetry-test".to_owned()),
        ..TelemetryConfig::default()
    })
    .unwrap();
    assert!(telemetry.exports_spans());

    let channel = common::serve_health(GrpcServerLayer::new(telemetry.metrics().clone())).await;
    let mut layered = HealthClient::new(
        ServiceBuilder::new()
            .layer(GrpcClientLayer)
            .service(channel.clone()),
    );
    let mut intercepted = HealthClient::with_interceptor(channel, turbine_telemetry::inject);
    let check = |service: &str| HealthCheckRequest {
        service: service.to_owned(),
    };

    layered
        .check(check(""))
        .instrument(tracing::info_span!("via_layer"))
        .await
        .unwrap();
    intercepted
        .check(check(""))
        .instrument(tracing::info_span!("via_interceptor"))
        .await
        .unwrap();
    let not_found = intercepted
        .check(check("missing"))
        .instrument(tracing::info_span!("via_interceptor_not_found"))
        .await
        .unwrap_err();
    assert_eq!(not_found.code(), Code::NotFound);

    // A server stream the client abandons after one message: the spans last until it goes away.
    async {
        let mut updates = layered.watch(check("")).await.unwrap().into_inner();
        updates.message().await.unwrap().expect("a first status");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    .instrument(tracing::info_span!("via_layer_watch"))
    .await;

    let method = "grpc.health.v1.Health/Check";
    let watch = "grpc.health.v1.Health/Watch";
    let spans = collect(
        &mut batches,
        &[
            ("via_layer", SpanKind::Internal),
            ("via_interceptor", SpanKind::Internal),
            ("via_interceptor_not_found", SpanKind::Internal),
            // Ends only once the server notices the client has gone, possibly after everything else.
            (watch, SpanKind::Server),
        ],
    )
    .await;
    // Unary server spans end before their callers, so once the callers are in, they are too.
    assert!(
        spans.iter().all(|s| s.service_name == "telemetry-test"),
        "{spans:#?}"
    );

    // Client layer: caller → client span → server span, one trace id.
    let caller = find(&spans, "via_layer", SpanKind::Internal, None);
    let client = find(&spans, method, SpanKind::Client, Some(&caller.trace_id));
    let server = find(&spans, method, SpanKind::Server, Some(&caller.trace_id));
    assert_eq!(client.parent_span_id, caller.span_id);
    assert_eq!(server.parent_span_id, client.span_id);
    assert_eq!(
        string_attribute(&server.attributes, "rpc.system"),
        Some("grpc")
    );
    assert_eq!(
        string_attribute(&server.attributes, "rpc.service"),
        Some("grpc.health.v1.Health")
    );
    assert_eq!(
        string_attribute(&server.attributes, "rpc.method"),
        Some("Check")
    );
    assert_eq!(
        int_attribute(&server.attributes, "rpc.grpc.status_code"),
        Some(0)
    );
    assert_eq!(
        int_attribute(&client.attributes, "rpc.grpc.status_code"),
        Some(0)
    );

    // Interceptor: the caller's own span is the server span's parent.
    let caller = find(&spans, "via_interceptor", SpanKind::Internal, None);
    let server = find(&spans, method, SpanKind::Server, Some(&caller.trace_id));
    assert_eq!(server.parent_span_id, caller.span_id);

    // A trailers-only error: status code recorded, yet NOT_FOUND is the caller's fault, not the server's.
    let caller = find(
        &spans,
        "via_interceptor_not_found",
        SpanKind::Internal,
        None,
    );
    let server = find(&spans, method, SpanKind::Server, Some(&caller.trace_id));
    assert_eq!(server.parent_span_id, caller.span_id);
    assert_eq!(
        int_attribute(&server.attributes, "rpc.grpc.status_code"),
        Some(Code::NotFound as i64)
    );
    assert_ne!(
        server.status.as_ref().map(|status| status.code),
        Some(StatusCode::Error as i32)
    );

    let caller = find(&spans, "via_layer_watch", SpanKind::Internal, None);
    let client = find(&spans, watch, SpanKind::Client, Some(&caller.trace_id));
    let server = find(&spans, watch, SpanKind::Server, Some(&caller.trace_id));
    assert_eq!(server.parent_span_id, client.span_id);
    let duration_ms =
        |span: &Span| (span.end_time_unix_nano - span.start_time_unix_nano) / 1_000_000;
    assert!(
        duration_ms(server) >= 100,
        "server span ended after {} ms",
        duration_ms(server)
    );
    for span in [client, server] {
        assert_eq!(
            int_attribute(&span.attributes, "rpc.grpc.status_code"),
            Some(Code::Cancelled as i64)
        );
    }
    // A caller that stops reading is an error to the client, but not a server fault.
    assert_eq!(
        client.status.as_ref().map(|status| status.code),
        Some(StatusCode::Error as i32)
    );
    assert_ne!(
        server.status.as_ref().map(|status| status.code),
        Some(StatusCode::Error as i32)
    );

    // Dropping the guard, as a service's `main` does after draining on SIGTERM, exports what is
    // still buffered before it returns.
    tracing::info_span!("last_words").in_scope(|| {});
    drop(telemetry);
    let flushed = std::iter::from_fn(|| batches.try_recv().ok())
        .flat_map(exported)
        .any(|s| s.span.name == "last_words");
    assert!(
        flushed,
        "the span ended just before the guard was dropped was not exported"
    );
}
