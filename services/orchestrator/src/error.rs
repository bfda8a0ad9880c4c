//! The orchestrator's one error type, mapped to a gRPC status in exactly one place.

use std::time::Duration;

use tonic::{Code, Status};
use turbine_proto::v1::{JobError, Stage};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ---- the caller's request ----
    /// Starts with the request field's path (`width: `, `flow.steps: `, `idempotency_key: `):
    /// clients match on the prefix.
    #[error("{0}")]
    InvalidArgument(String),
    #[error("job {0} not found")]
    JobNotFound(String),
    #[error("job {job_id} is {state}: only queued or running jobs can be cancelled")]
    NotCancellable { job_id: String, state: &'static str },
    #[error("job {job_id} is {state}: its artifact exists once it has succeeded")]
    ArtifactNotReady { job_id: String, state: &'static str },
    #[error(
        "the artifact of job {job_id} was evicted to keep the artifact store under \
         {cap_bytes} bytes; submit the job again"
    )]
    ArtifactEvicted { job_id: String, cap_bytes: u64 },

    // ---- the orchestrator's state ----
    #[error("the job queue is full ({capacity} jobs waiting); retry later")]
    QueueFull { capacity: u32 },
    #[error("the orchestrator is shutting down; submit to another instance")]
    ShuttingDown,
    #[error("cancelled")]
    Cancelled,

    // ---- the stage services ----
    /// A stage answered with (or the transport produced) this status, after any retries.
    #[error("{}: {}", stage_name(*stage), status.message())]
    Stage { stage: Stage, status: Status },
    #[error("{} did not finish within its {after:?} deadline", stage_name(*stage))]
    StageDeadline { stage: Stage, after: Duration },
    /// A stage broke the API contract (malformed tensors, missing frames): a bug, not retried.
    #[error("{}: protocol violation: {message}", stage_name(*stage))]
    StageProtocol { stage: Stage, message: String },

    // ---- local failures ----
    #[error("video encoding failed: {0}")]
    Video(#[from] turbine_media::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl Error {
    pub fn invalid(field: &str, message: impl std::fmt::Display) -> Self {
        Error::InvalidArgument(format!("{field}: {message}"))
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// How a failed job reports this error.
    pub fn to_job_error(&self) -> JobError {
        JobError {
            code: self.code() as i32,
            message: self.to_string(),
        }
    }

    /// The one mapping from errors to gRPC codes.
    pub fn code(&self) -> Code {
        match self {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::JobNotFound(_) | Error::ArtifactEvicted { .. } => Code::NotFound,
            Error::NotCancellable { .. } | Error::ArtifactNotReady { .. } => {
                Code::FailedPrecondition
            }
            Error::QueueFull { .. } => Code::ResourceExhausted,
            Error::ShuttingDown => Code::Unavailable,
            Error::Cancelled => Code::Cancelled,
            // The stage's own code: INVALID_ARGUMENT from the denoiser (say, SLA on a checkpoint
            // without proj_l) is the caller's to fix; UNAVAILABLE after every retry is ours.
            Error::Stage { status, .. } => status.code(),
            Error::StageDeadline { .. } => Code::DeadlineExceeded,
            Error::StageProtocol { .. } | Error::Video(_) | Error::Io { .. } => Code::Internal,
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        Status::new(e.code(), e.to_string())
    }
}

pub fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::TextEncode => "text encoder",
        Stage::Denoise => "denoiser",
        Stage::VaeDecode => "VAE decoder",
        Stage::EncodeVideo => "video encoder",
        Stage::Unspecified => "stage",
    }
}
