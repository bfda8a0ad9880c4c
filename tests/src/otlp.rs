//! A real OTLP gRPC trace receiver (`opentelemetry.proto.collector.trace.v1.TraceService`) on a
//! loopback port, as shared/telemetry/tests/otlp_export.rs runs one.

use std::net::SocketAddr;
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
use tokio::sync::mpsc;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;
use tonic::{Request, Response, Status};

struct Sink(mpsc::UnboundedSender<ExportTraceServiceRequest>);

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        // Batches arriving after the test stopped reading are of no interest.
        let _ = self.0.send(request.into_inner());
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// One exported span and the `service.name` of its resource.
#[derive(Debug, Clone)]
pub struct Exported {
    pub service_name: String,
    pub span: Span,
}

/// The receiver: every span exported to it so far.
pub struct Receiver {
    pub addr: SocketAddr,
    batches: mpsc::UnboundedReceiver<ExportTraceServiceRequest>,
    pub spans: Vec<Exported>,
    server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Starts serving on a fresh loopback port.
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the OTLP receiver");
        let addr = listener.local_addr().expect("receiver address");
        let (tx, batches) = mpsc::unbounded_channel();
        let server = tokio::spawn(async move {
            let _ = Server::builder()
                .add_service(TraceServiceServer::new(Sink(tx)))
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        });
        Receiver {
            addr,
            batches,
            spans: Vec::new(),
            server,
        }
    }

    /// The `--otlp-endpoint` value.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Takes in batches until `done(spans so far)` holds; fails after `timeout` with what came.
    pub async fn collect_until(&mut self, timeout: Duration, done: impl Fn(&[Exported]) -> bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        while !done(&self.spans) {
            let batch = tokio::time::timeout_at(deadline, self.batches.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "the expected spans did not arrive within {timeout:?}; got:\n{}",
                        describe(&self.spans)
                    )
                })
                .expect("receiver running");
            self.spans.extend(exported(batch));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
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

/// A string attribute's value.
pub fn string_attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|value| match value.value.as_ref() {
            Some(Value::StringValue(s)) => Some(s.as_str()),
            _ => None,
        })
}

/// Lowercase hex, as trace and span ids are written in `traceparent`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One line per span: service, kind, name, trace id, span id, parent id.
pub fn describe(spans: &[Exported]) -> String {
    spans
        .iter()
        .map(|s| {
            format!(
                "{:<22} kind={} {:<36} trace={} span={} parent={}\n",
                s.service_name,
                s.span.kind,
                s.span.name,
                hex(&s.span.trace_id),
                hex(&s.span.span_id),
                hex(&s.span.parent_span_id)
            )
        })
        .collect()
}
