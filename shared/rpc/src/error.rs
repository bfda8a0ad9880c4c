//! The services' one error type and its one mapping to gRPC status codes.

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};
use turbine_checkpoint::Error as CheckpointError;
use turbine_models::Error as ModelError;
use turbine_pipeline::Error as PipelineError;
use turbine_samplers::Error as SamplerError;
use turbine_tensor::Error as TensorError;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field, or a tensor stream, the service cannot take; names the field.
    #[error("{field}: {msg}")]
    InvalidArgument { field: &'static str, msg: String },
    /// What the stage itself failed with.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// Every slot of the replica is taken: the running call and the bounded queue.
    #[error("busy: {slots} calls are running or waiting; retry later or on another replica")]
    Busy { slots: usize },
    /// The model is still loading and warming up.
    #[error("the model is loading; not serving yet")]
    Loading,
    /// The model failed to load; the replica will never serve.
    #[error("the model failed to load: {0}")]
    LoadFailed(String),
    /// The worker thread is gone (it panicked on an earlier call, or the server is stopping).
    #[error("the model worker stopped")]
    WorkerStopped,
    /// A model call panicked; the worker survives it.
    #[error("the model call panicked: {0}")]
    Panicked(String),
    /// The client cancelled or disconnected; the work stopped.
    #[error("the client went away")]
    ClientGone,
    /// Reading the request stream failed (the client reset it, or a message was undecodable or
    /// over the size limit); keeps the transport's status.
    #[error("request stream: {}", .0.message())]
    RequestStream(Status),
}

impl Error {
    pub fn invalid(field: &'static str, msg: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field,
            msg: msg.into(),
        }
    }

    /// The status code this error travels as.
    pub fn code(&self) -> Code {
        match self {
            Error::InvalidArgument { .. } => Code::InvalidArgument,
            Error::Pipeline(e) => pipeline_code(e),
            Error::Busy { .. } => Code::ResourceExhausted,
            // Clients retry UNAVAILABLE elsewhere; a replica still loading is exactly that.
            Error::Loading | Error::WorkerStopped => Code::Unavailable,
            Error::LoadFailed(_) => Code::FailedPrecondition,
            Error::Panicked(_) => Code::Internal,
            Error::ClientGone => Code::Cancelled,
            Error::RequestStream(status) => status.code(),
        }
    }
}

fn pipeline_code(e: &PipelineError) -> Code {
    match e {
        PipelineError::InvalidRequest { .. } => Code::InvalidArgument,
        PipelineError::Assets(_) => Code::FailedPrecondition,
        PipelineError::Model(e) => model_code(e),
        PipelineError::Sampler(e) => sampler_code(e),
        PipelineError::Checkpoint(e) => checkpoint_code(e),
        PipelineError::Tensor(e) => tensor_code(e),
        PipelineError::Output(_) => Code::Internal,
    }
}

fn model_code(e: &ModelError) -> Code {
    match e {
        ModelError::Input(_) => Code::InvalidArgument,
        ModelError::Config(_) => Code::FailedPrecondition,
        ModelError::Checkpoint(e) => checkpoint_code(e),
        ModelError::Tensor(e) => tensor_code(e),
    }
}

/// A request that does not fit in device memory or the kernels' limits is the caller's to
/// shrink or send elsewhere; every other tensor failure is the server's.
fn tensor_code(e: &TensorError) -> Code {
    if e.exceeds_capacity() {
        Code::ResourceExhausted
    } else {
        Code::Internal
    }
}

fn sampler_code(e: &SamplerError) -> Code {
    match e {
        SamplerError::InvalidParameter { .. } => Code::InvalidArgument,
        SamplerError::Cancelled { .. } => Code::Cancelled,
        // The DiT's own errors reach the sampler boxed; unbox them to keep their meaning.
        SamplerError::Model(inner) => match inner.downcast_ref::<ModelError>() {
            Some(e) => model_code(e),
            None => Code::Internal,
        },
        SamplerError::Tensor(e) => tensor_code(e),
        SamplerError::ElementCount { .. }
        | SamplerError::ModelOutputShape { .. }
        | SamplerError::Noise(_) => Code::Internal,
    }
}

/// Checkpoint errors after loading are about the files (e.g. SLA asked of a checkpoint without
/// `proj_l`): the replica lacks what the request needs.
fn checkpoint_code(e: &CheckpointError) -> Code {
    match e {
        CheckpointError::Tensor(e) => tensor_code(e),
        CheckpointError::Io { .. }
        | CheckpointError::Safetensors { .. }
        | CheckpointError::Pth { .. }
        | CheckpointError::Convert { .. }
        | CheckpointError::PthTensor { .. }
        | CheckpointError::Missing { .. }
        | CheckpointError::ShapeMismatch { .. }
        | CheckpointError::DTypeMismatch { .. }
        | CheckpointError::UnsupportedDType { .. }
        | CheckpointError::Invalid { .. } => Code::FailedPrecondition,
    }
}

/// Metadata of a RESOURCE_EXHAUSTED that means "this replica's queue is full", which another
/// replica may not be. Without it RESOURCE_EXHAUSTED means the request itself is too big (out
/// of device memory), which retrying elsewhere on the same hardware only repeats.
pub const BUSY_METADATA: &str = "turbine-busy";

/// The full source chain, for logs.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        let code = e.code();
        let message = match &e {
            // Invalid requests name their field first, e.g. "frames: 80 must be 4k+1 ...".
            Error::Pipeline(PipelineError::InvalidRequest { field, msg }) => {
                format!("{field}: {msg}")
            }
            Error::InvalidArgument { .. }
            | Error::Pipeline(_)
            | Error::Busy { .. }
            | Error::Loading
            | Error::LoadFailed(_)
            | Error::WorkerStopped
            | Error::Panicked(_)
            | Error::ClientGone
            | Error::RequestStream(_) => e.to_string(),
        };
        if code == Code::Internal {
            tracing::error!(error = %chain(&e), "internal error");
        }
        let mut status = Status::new(code, message);
        if matches!(e, Error::Busy { .. }) {
            status
                .metadata_mut()
                .insert(BUSY_METADATA, MetadataValue::from_static("1"));
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_error_kind() {
        let cases: Vec<(Error, Code, &str)> = vec![
            (
                PipelineError::InvalidRequest {
                    field: "frames",
                    msg: "80 must be 4k+1".into(),
                }
                .into(),
                Code::InvalidArgument,
                "frames: 80 must be 4k+1",
            ),
            (
                PipelineError::Assets("VAE: x does not exist".into()).into(),
                Code::FailedPrecondition,
                "VAE: x does not exist",
            ),
            (
                PipelineError::Sampler(SamplerError::Cancelled {
                    completed: 1,
                    total: 4,
                })
                .into(),
                Code::Cancelled,
                "cancelled",
            ),
            (
                PipelineError::Sampler(SamplerError::Model(Box::new(ModelError::Checkpoint(
                    CheckpointError::Missing {
                        key: "proj_l".into(),
                        hint: String::new(),
                    },
                ))))
                .into(),
                Code::FailedPrecondition,
                "proj_l",
            ),
            (
                PipelineError::Tensor(turbine_tensor::Error::invalid("op", "broken")).into(),
                Code::Internal,
                "broken",
            ),
            (
                PipelineError::Sampler(SamplerError::Model(Box::new(ModelError::Tensor(
                    turbine_tensor::Error::OutOfMemory {
                        backend: "cuda",
                        bytes: 1 << 34,
                        detail: "cache released".into(),
                    },
                ))))
                .into(),
                Code::ResourceExhausted,
                "out of device memory allocating 17179869184 bytes",
            ),
            (
                PipelineError::Model(ModelError::Tensor(turbine_tensor::Error::too_large(
                    "sage_attention",
                    "SageSLA's block selection takes at most 131072 tokens, got 147600",
                )))
                .into(),
                Code::ResourceExhausted,
                "sage_attention: too large: SageSLA's block selection takes at most 131072 tokens",
            ),
            (Error::Busy { slots: 1 }, Code::ResourceExhausted, "busy"),
            (Error::Loading, Code::Unavailable, "loading"),
        ];
        for (error, code, needle) in cases {
            let busy = matches!(error, Error::Busy { .. });
            let status = Status::from(error);
            assert_eq!(status.code(), code, "{}", status.message());
            assert!(status.message().contains(needle), "{}", status.message());
            assert_eq!(
                status.metadata().contains_key(BUSY_METADATA),
                busy,
                "{status:?}"
            );
        }
    }
}
