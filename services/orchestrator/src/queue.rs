//! The job engine's state as one actor: a [`Queue`] handle sends commands, each carrying a
//! `oneshot` for its reply, to a task that alone owns the job table, the waiting queue, the
//! idempotency keys and the artifact store. Nothing here is locked.
//!
//! Queue semantics: admission takes a permit of an owned semaphore sized `--queue-capacity`
//! (none left: RESOURCE_EXHAUSTED); the permit stays with the job while it waits and is released
//! when a worker takes it (or it is cancelled), so the capacity bounds waiting jobs, not running
//! ones. `--concurrent-jobs` workers each ask the actor for the next job, first in first out.

mod actor;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Span;
use turbine_proto::v1::{Artifact, Job, JobEvent, JobPreview, Progress, Stage, StageTiming};
use turbine_telemetry::Metrics;

use self::actor::Actor;
use crate::artifacts::ArtifactStore;
use crate::error::{Error, Result};
use crate::params::ValidParams;

/// Commands waiting for the actor.
const COMMAND_BUFFER: usize = 1024;

/// A job handed to a worker.
#[derive(Debug)]
pub struct Assignment {
    pub job_id: String,
    pub params: ValidParams,
    /// The job's span, opened under the SubmitJob request: the job's stages join its trace.
    pub span: Span,
    pub cancel: CancellationToken,
    /// Where the MP4 is written, and where it goes once complete.
    pub partial_path: PathBuf,
    pub artifact_path: PathBuf,
    /// Seconds per pixel-frame that decoding and encoding took after sampling in recent jobs.
    pub tail_rate: Option<f64>,
}

/// What a running job reports on its way.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    Stage(Stage),
    Progress(Progress),
    Preview(JobPreview),
}

/// How a job ended.
#[derive(Debug)]
pub enum Outcome {
    Succeeded {
        artifact: Artifact,
        timings: Vec<StageTiming>,
        /// Seconds from the end of sampling to the stored MP4.
        tail_s: f64,
    },
    Failed(Error),
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub job_id: String,
    pub created: bool,
}

/// A watcher's view: the events describing the job's state now, then the live ones (none once
/// the job has ended).
#[derive(Debug)]
pub struct Subscription {
    pub current: Vec<JobEvent>,
    pub live: Option<broadcast::Receiver<JobEvent>>,
}

#[derive(Debug, Clone)]
pub struct StoredArtifact {
    pub path: PathBuf,
    pub artifact: Artifact,
    /// The store's size cap, for the message when the file was evicted meanwhile.
    pub cap_bytes: u64,
}

/// A page of ListJobs.
#[derive(Debug)]
pub struct Page {
    pub jobs: Vec<Job>,
    /// Where the next page starts (an opaque sequence number), if there is one.
    pub next: Option<u64>,
}

#[derive(Debug)]
pub struct QueueConfig {
    pub capacity: u32,
    pub history: u32,
}

/// The handle: cheap to clone, one per service, worker and runner.
#[derive(Debug, Clone)]
pub struct Queue {
    tx: mpsc::Sender<Command>,
    admission: Arc<Semaphore>,
}

#[derive(Debug)]
enum Command {
    Submit {
        params: Box<ValidParams>,
        key: Option<String>,
        span: Span,
        permit: Option<OwnedSemaphorePermit>,
        reply: oneshot::Sender<Result<Submitted>>,
    },
    Get {
        job_id: String,
        reply: oneshot::Sender<Result<Job>>,
    },
    List {
        page_size: usize,
        before: Option<u64>,
        reply: oneshot::Sender<Page>,
    },
    Watch {
        job_id: String,
        reply: oneshot::Sender<Result<Subscription>>,
    },
    Cancel {
        job_id: String,
        reply: oneshot::Sender<Result<Job>>,
    },
    Artifact {
        job_id: String,
        reply: oneshot::Sender<Result<StoredArtifact>>,
    },
    Next {
        reply: oneshot::Sender<Assignment>,
    },
    Update {
        job_id: String,
        update: Update,
    },
    Finish {
        job_id: String,
        outcome: Outcome,
    },
    Drain {
        reply: oneshot::Sender<()>,
    },
    AbortRunning {
        reply: oneshot::Sender<usize>,
    },
}

impl Queue {
    /// Starts the actor; it runs until the last handle is dropped.
    pub fn start(config: QueueConfig, store: ArtifactStore, metrics: Metrics) -> Self {
        let (tx, rx) = mpsc::channel(COMMAND_BUFFER);
        tokio::spawn(Actor::new(&config, store, metrics).run(rx));
        Self {
            tx,
            admission: Arc::new(Semaphore::new(config.capacity as usize)),
        }
    }

    async fn ask<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(command(reply))
            .await
            .map_err(|_| Error::ShuttingDown)?;
        answer.await.map_err(|_| Error::ShuttingDown)
    }

    /// Queues a job, or returns the job an earlier submission with `key` created.
    pub async fn submit(
        &self,
        params: ValidParams,
        key: Option<String>,
        span: Span,
    ) -> Result<Submitted> {
        // Taken before asking, so a full queue costs no actor work; the actor still answers a
        // known key without one (a retried submission must find its job even when full).
        let permit = self.admission.clone().try_acquire_owned().ok();
        self.ask(|reply| Command::Submit {
            params: Box::new(params),
            key,
            span,
            permit,
            reply,
        })
        .await?
    }

    pub async fn get(&self, job_id: String) -> Result<Job> {
        self.ask(|reply| Command::Get { job_id, reply }).await?
    }

    /// Jobs newest first, starting below `before`.
    pub async fn list(&self, page_size: usize, before: Option<u64>) -> Result<Page> {
        self.ask(|reply| Command::List {
            page_size,
            before,
            reply,
        })
        .await
    }

    pub async fn watch(&self, job_id: String) -> Result<Subscription> {
        self.ask(|reply| Command::Watch { job_id, reply }).await?
    }

    pub async fn cancel(&self, job_id: String) -> Result<Job> {
        self.ask(|reply| Command::Cancel { job_id, reply }).await?
    }

    pub async fn artifact(&self, job_id: String) -> Result<StoredArtifact> {
        self.ask(|reply| Command::Artifact { job_id, reply })
            .await?
    }

    /// The next job for a worker; `None` once the queue drains for shutdown.
    pub async fn next(&self) -> Option<Assignment> {
        self.ask(|reply| Command::Next { reply }).await.ok()
    }

    pub async fn update(&self, job_id: &str, update: Update) {
        // Fails only when the actor is gone at shutdown, when nobody watches any more.
        let _ = self
            .tx
            .send(Command::Update {
                job_id: job_id.to_string(),
                update,
            })
            .await;
    }

    pub async fn finish(&self, job_id: &str, outcome: Outcome) {
        let _ = self
            .tx
            .send(Command::Finish {
                job_id: job_id.to_string(),
                outcome,
            })
            .await;
    }

    /// Stops taking jobs: new submissions get UNAVAILABLE, queued jobs fail with UNAVAILABLE,
    /// idle workers are told to stop. Running jobs go on.
    pub async fn drain(&self) {
        let _ = self.ask(|reply| Command::Drain { reply }).await;
    }

    /// Fails every running job with UNAVAILABLE and cancels its stage calls; returns how many.
    pub async fn abort_running(&self) -> usize {
        self.ask(|reply| Command::AbortRunning { reply })
            .await
            .unwrap_or(0)
    }
}
