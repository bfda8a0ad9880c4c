//! Tower layers for tonic: a server span per incoming call (continuing the caller's trace) with
//! per-method metrics, and a client span per outgoing call that carries the trace to the server.

use std::task::{Context, Poll};

use http_body::Body;
use opentelemetry::global;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use tower::{Layer, Service};
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::call::{Call, ObservedBody, ResponseFuture, Side};
use crate::metrics::Metrics;

/// Server layer: `Server::builder().layer(GrpcServerLayer::new(metrics.clone()))`.
///
/// Each call runs in an `otel.kind = "server"` span named `package.Service/Method`, child of the
/// `traceparent` the client sent. The span covers the handler and, for streaming responses, every
/// message up to the final status, which it records as `rpc.grpc.status_code`. Handlers' own spans
/// nest under it; work moved to `tokio::spawn` needs `.in_current_span()` to stay in the trace.
/// Records `rpc_requests_total`, `rpc_errors_total` and `rpc_seconds`.
#[derive(Clone, Debug)]
pub struct GrpcServerLayer {
    metrics: Metrics,
}

impl GrpcServerLayer {
    /// Records into `metrics` (usually [`crate::TelemetryGuard::metrics`]).
    pub fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for GrpcServerLayer {
    type Service = GrpcServerService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcServerService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service [`GrpcServerLayer`] wraps around a tonic router.
#[derive(Clone, Debug)]
pub struct GrpcServerService<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for GrpcServerService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    ResBody: Body,
{
    type Response = http::Response<ObservedBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let path = request.uri().path();
        let (service, method) = split_path(path);
        let span = tracing::info_span!(
            "grpc.server",
            otel.name = rpc_name(path),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = method,
            rpc.grpc.status_code = Empty,
            otel.status_code = Empty,
        );
        let parent = global::get_text_map_propagator(|propagator| {
            propagator.extract(&HeaderExtractor(request.headers()))
        });
        // Without a valid remote parent the span stays a root (or a child of a local span) rather than
        // being attached to an empty context.
        if parent.span().span_context().is_valid() {
            // Fails only when telemetry is not initialised; the span then has nothing to join anyway.
            let _ = span.set_parent(parent);
        }
        let call = Call::new(
            span,
            Side::Server {
                metrics: self.metrics.clone(),
                method: rpc_name(path).to_owned(),
            },
        );
        let future = call.span().in_scope(|| self.inner.call(request));
        ResponseFuture::new(future, call)
    }
}

/// Client layer for a channel: `XxxClient::new(ServiceBuilder::new().layer(GrpcClientLayer).service(channel))`.
///
/// Each call runs in an `otel.kind = "client"` span, child of the caller's current span, whose context
/// is sent as `traceparent`/`tracestate`; the span records `rpc.grpc.status_code` when the call ends.
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcClientLayer;

impl<S> Layer<S> for GrpcClientLayer {
    type Service = GrpcClientService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcClientService { inner }
    }
}

/// The service [`GrpcClientLayer`] wraps around a channel.
#[derive(Clone, Debug)]
pub struct GrpcClientService<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for GrpcClientService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    ResBody: Body,
{
    type Response = http::Response<ObservedBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        let path = request.uri().path();
        let (service, method) = split_path(path);
        let span = tracing::info_span!(
            "grpc.client",
            otel.name = rpc_name(path),
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = method,
            rpc.grpc.status_code = Empty,
            otel.status_code = Empty,
        );
        let cx = span.context();
        global::get_text_map_propagator(|propagator| {
            propagator.inject_context(&cx, &mut HeaderInjector(request.headers_mut()));
        });
        let call = Call::new(span, Side::Client);
        let future = call.span().in_scope(|| self.inner.call(request));
        ResponseFuture::new(future, call)
    }
}

/// `/turbine.v1.Denoiser/Denoise` → `turbine.v1.Denoiser/Denoise`, the span name OpenTelemetry's RPC
/// conventions ask for.
fn rpc_name(path: &str) -> &str {
    path.strip_prefix('/').unwrap_or(path)
}

/// `/turbine.v1.Denoiser/Denoise` → (`turbine.v1.Denoiser`, `Denoise`); a path that is not
/// `/service/method` is all method.
fn split_path(path: &str) -> (&str, &str) {
    rpc_name(path)
        .split_once('/')
        .unwrap_or(("", rpc_name(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_grpc_paths() {
        assert_eq!(
            split_path("/turbine.v1.Denoiser/Denoise"),
            ("turbine.v1.Denoiser", "Denoise")
        );
        assert_eq!(
            rpc_name("/grpc.health.v1.Health/Check"),
            "grpc.health.v1.Health/Check"
        );
        assert_eq!(split_path("/"), ("", ""));
    }
}
