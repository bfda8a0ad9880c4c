//! One observed gRPC call: the span it runs in, and what is recorded when its status is known.
//!
//! A call ends when its status is known: from `grpc-status` in the response headers (trailers-only
//! responses, e.g. an immediate error), else from the trailers after the last message. So a streaming
//! response is covered to its end, which a tonic interceptor, returning before the body is sent, cannot do.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use tonic::Code;
use tracing::Span;

use crate::metrics::{Metrics, code_name};

pub(crate) enum Side {
    Client,
    Server { metrics: Metrics, method: String },
}

pub(crate) struct Call {
    span: Span,
    started: Instant,
    side: Side,
    code: Option<Code>,
}

impl Call {
    pub(crate) fn new(span: Span, side: Side) -> Self {
        Self {
            span,
            started: Instant::now(),
            side,
            code: None,
        }
    }

    pub(crate) fn span(&self) -> &Span {
        &self.span
    }

    fn finish(mut self, code: Code) {
        self.code = Some(code);
    }

    /// The inner service failed without a response: a client could not reach the peer, a server's
    /// stack broke under the handler.
    fn fail(self) {
        let code = match self.side {
            Side::Client => Code::Unavailable,
            Side::Server { .. } => Code::Internal,
        };
        self.finish(code);
    }

    fn is_error(&self, code: Code) -> bool {
        match self.side {
            Side::Client => code != Code::Ok,
            Side::Server { .. } => is_server_fault(code),
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // Dropped before a status arrived: the response future or body was abandoned, i.e. the
        // client went away (server side) or the caller stopped reading (client side).
        let code = self.code.unwrap_or(Code::Cancelled);
        let error = self.is_error(code);
        self.span.record("rpc.grpc.status_code", i32::from(code));
        if error {
            self.span.record("otel.status_code", "error");
        }
        // Entering also matters for the span's end time: tracing-opentelemetry ends a span at its
        // last exit, not when it closes, so a stream abandoned while idle would end at its last poll.
        let _entered = self.span.enter();
        if let Side::Server { metrics, method } = &self.side {
            let elapsed = self.started.elapsed();
            metrics.observe_rpc(method, code, elapsed);
            // Callers see their own errors; the server log keeps its faults visible and the rest quiet.
            let code = code_name(code);
            let elapsed_ms = elapsed.as_millis();
            if error {
                tracing::warn!(code, elapsed_ms, "gRPC call failed");
            } else {
                tracing::debug!(code, elapsed_ms, "gRPC call finished");
            }
        }
    }
}

/// OpenTelemetry's RPC conventions: on the server, only codes that mean the server failed mark the
/// span as an error; a caller's bad argument or a missing job is the caller's problem.
fn is_server_fault(code: Code) -> bool {
    match code {
        Code::Unknown
        | Code::DeadlineExceeded
        | Code::Unimplemented
        | Code::Internal
        | Code::Unavailable
        | Code::DataLoss => true,
        Code::Ok
        | Code::Cancelled
        | Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::ResourceExhausted
        | Code::FailedPrecondition
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unauthenticated => false,
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .map(|value| Code::from_bytes(value.as_bytes()))
}

pin_project_lite::pin_project! {
    /// Response future of the client and server services: runs the inner future inside the call's span.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        call: Option<Call>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, call: Call) -> Self {
        Self {
            inner,
            call: Some(call),
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
    B: Body,
{
    type Output = Result<http::Response<ObservedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.call.as_ref().map(|call| call.span.enter());
            ready!(this.inner.poll(cx))
        };
        let call = this.call.take();
        Poll::Ready(match result {
            Ok(response) => {
                let (parts, body) = response.into_parts();
                let call = call.and_then(|call| match grpc_status(&parts.headers) {
                    Some(code) => {
                        call.finish(code);
                        None
                    }
                    // No status and nothing to read: not a gRPC response, and its body is never polled.
                    None if body.is_end_stream() => {
                        call.finish(Code::Unknown);
                        None
                    }
                    None => Some(call),
                });
                Ok(http::Response::from_parts(
                    parts,
                    ObservedBody { inner: body, call },
                ))
            }
            Err(error) => {
                if let Some(call) = call {
                    call.fail();
                }
                Err(error)
            }
        })
    }
}

pin_project_lite::pin_project! {
    /// Response body that keeps the call's span open, and entered while it is polled, until the
    /// trailers carrying `grpc-status` pass through.
    pub struct ObservedBody<B> {
        #[pin]
        inner: B,
        call: Option<Call>,
    }
}

impl<B: Body> Body for ObservedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = {
            let _entered = this.call.as_ref().map(|call| call.span.enter());
            ready!(this.inner.poll_frame(cx))
        };
        let code = match &frame {
            Some(Ok(frame)) => frame
                .trailers_ref()
                .map(|trailers| grpc_status(trailers).unwrap_or(Code::Unknown)),
            Some(Err(_)) | None => Some(Code::Unknown),
        };
        if let Some(code) = code
            && let Some(call) = this.call.take()
        {
            call.finish(code);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
