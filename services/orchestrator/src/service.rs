//! The public `turbine.v1.Orchestrator` service: each handler validates, asks the queue actor,
//! and shapes the answer.

use std::collections::VecDeque;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};
use tracing::{Instrument, Span, debug, field, info_span};
use turbine_proto::v1::orchestrator_server::Orchestrator;
use turbine_proto::v1::{
    Artifact, ArtifactChunk, CancelJobRequest, GenerateEvent, GenerateRequest, GetArtifactRequest,
    GetJobRequest, Job, JobEvent, ListJobsRequest, ListJobsResponse, ListModelsRequest,
    ListModelsResponse, ModelInfo, SubmitJobRequest, SubmitJobResponse, WatchJobRequest,
    generate_event, job_event,
};
use turbine_rpc::params::{DEFAULT_FRAMES, DEFAULT_HEIGHT, DEFAULT_WIDTH};
use turbine_rpc::tensor::CHUNK_BYTES;

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::params;
use crate::queue::{Queue, StoredArtifact, Submitted, Subscription};

const DEFAULT_PAGE_SIZE: u32 = 20;
const MAX_PAGE_SIZE: u32 = 100;
/// Messages a response stream holds ahead of a slow client.
const STREAM_BUFFER: usize = 16;

pub struct OrchestratorService {
    queue: Queue,
    model: ModelInfo,
}

impl OrchestratorService {
    pub fn new(queue: Queue, model: &ModelConfig) -> Self {
        let (dim, num_layers, num_heads) = model.model_preset.shape();
        Self {
            queue,
            model: ModelInfo {
                name: model.model_name.clone(),
                task: "t2v".into(),
                dim,
                num_layers,
                num_heads,
                supports_sla: model.model_sla,
                default_width: DEFAULT_WIDTH,
                default_height: DEFAULT_HEIGHT,
                default_frames: DEFAULT_FRAMES,
            },
        }
    }

    /// Validates and queues; the job's span opens here, under the request's, so the job's stage
    /// calls join the submitting request's trace.
    async fn submit(
        &self,
        params: Option<turbine_proto::v1::GenerationParams>,
        key: Option<String>,
    ) -> Result<Submitted> {
        let params = params::validate(params, rand::random)?;
        let span = info_span!("job", job_id = field::Empty);
        let submitted = self.queue.submit(params, key, span.clone()).await?;
        span.record("job_id", submitted.job_id.as_str());
        Ok(submitted)
    }
}

type ResponseStream<T> = ReceiverStream<Result<T, Status>>;

#[tonic::async_trait]
impl Orchestrator for OrchestratorService {
    async fn submit_job(
        &self,
        request: Request<SubmitJobRequest>,
    ) -> Result<Response<SubmitJobResponse>, Status> {
        let SubmitJobRequest {
            params,
            idempotency_key,
        } = request.into_inner();
        let key = params::idempotency_key(idempotency_key)?;
        let Submitted { job_id, created } = self.submit(params, key).await?;
        Ok(Response::new(SubmitJobResponse { job_id, created }))
    }

    type WatchJobStream = ResponseStream<JobEvent>;

    async fn watch_job(
        &self,
        request: Request<WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let job_id = required_id(request.into_inner().job_id)?;
        let mut watcher = Watcher::new(self.queue.watch(job_id).await?);
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    event = watcher.next() => event,
                    // A client that left while the job is quiet (say, queued) frees the task now.
                    () = tx.closed() => return,
                };
                let Some(event) = event else {
                    return;
                };
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn cancel_job(
        &self,
        request: Request<CancelJobRequest>,
    ) -> Result<Response<Job>, Status> {
        let job_id = required_id(request.into_inner().job_id)?;
        Ok(Response::new(self.queue.cancel(job_id).await?))
    }

    async fn get_job(&self, request: Request<GetJobRequest>) -> Result<Response<Job>, Status> {
        let job_id = required_id(request.into_inner().job_id)?;
        Ok(Response::new(self.queue.get(job_id).await?))
    }

    async fn list_jobs(
        &self,
        request: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsResponse>, Status> {
        let ListJobsRequest {
            page_size,
            page_token,
        } = request.into_inner();
        // Larger pages are cut to the maximum rather than refused (AIP-158).
        let page_size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let before = match page_token.as_str() {
            "" => None,
            token => Some(parse_page_token(token)?),
        };
        let page = self.queue.list(page_size as usize, before).await?;
        Ok(Response::new(ListJobsResponse {
            jobs: page.jobs,
            next_page_token: page.next.map(page_token_for).unwrap_or_default(),
        }))
    }

    type GetArtifactStream = ResponseStream<ArtifactChunk>;

    async fn get_artifact(
        &self,
        request: Request<GetArtifactRequest>,
    ) -> Result<Response<Self::GetArtifactStream>, Status> {
        let job_id = required_id(request.into_inner().job_id)?;
        let stored = self.queue.artifact(job_id.clone()).await?;
        let file = open_artifact(&job_id, &stored).await?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(async move {
            if let Err(status) = send_file(file, stored.artifact, &tx, |chunk| chunk).await {
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type GenerateStream = ResponseStream<GenerateEvent>;

    async fn generate(
        &self,
        request: Request<GenerateRequest>,
    ) -> Result<Response<Self::GenerateStream>, Status> {
        let Submitted { job_id, .. } = self.submit(request.into_inner().params, None).await?;
        let watcher = Watcher::new(self.queue.watch(job_id.clone()).await?);
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(generate(self.queue.clone(), job_id, watcher, tx).instrument(Span::current()));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn list_models(
        &self,
        _request: Request<ListModelsRequest>,
    ) -> Result<Response<ListModelsResponse>, Status> {
        Ok(Response::new(ListModelsResponse {
            models: vec![self.model.clone()],
        }))
    }
}

/// Generate's stream: the job's events, then its MP4. A failed or cancelled job ends the stream
/// with that status after its final event. The caller leaving cancels the job: nobody else holds
/// its id.
async fn generate(
    queue: Queue,
    job_id: String,
    mut watcher: Watcher,
    tx: mpsc::Sender<Result<GenerateEvent, Status>>,
) {
    let wrap = |kind| GenerateEvent { kind: Some(kind) };
    loop {
        let event = tokio::select! {
            event = watcher.next() => event,
            () = tx.closed() => None,
        };
        let Some(event) = event else {
            if tx.is_closed() {
                debug!(job_id, "Generate caller left; cancelling its job");
                let _ = queue.cancel(job_id).await;
            }
            return;
        };
        let end = match &event.kind {
            Some(job_event::Kind::Done(_)) => Ok(()),
            Some(job_event::Kind::Failed(e)) => {
                Err(Status::new(Code::from(e.code), e.message.clone()))
            }
            Some(job_event::Kind::Cancelled(_)) => Err(Status::cancelled("the job was cancelled")),
            Some(
                job_event::Kind::Queued(_)
                | job_event::Kind::StageStarted(_)
                | job_event::Kind::Progress(_)
                | job_event::Kind::Preview(_),
            )
            | None => {
                if tx
                    .send(Ok(wrap(generate_event::Kind::Event(event))))
                    .await
                    .is_err()
                {
                    let _ = queue.cancel(job_id).await;
                    return;
                }
                continue;
            }
        };
        if tx
            .send(Ok(wrap(generate_event::Kind::Event(event))))
            .await
            .is_err()
        {
            return;
        }
        if let Err(status) = end {
            let _ = tx.send(Err(status)).await;
            return;
        }
        break;
    }
    let sent = async {
        let stored = queue.artifact(job_id.clone()).await?;
        let file = open_artifact(&job_id, &stored).await?;
        send_file(file, stored.artifact, &tx, |chunk| {
            wrap(generate_event::Kind::Artifact(chunk))
        })
        .await
    };
    if let Err(status) = sent.await {
        let _ = tx.send(Err(status)).await;
    }
}

/// The events of one job: first those describing its state when watching began, then live ones,
/// ending after the final event (done, failed or cancelled).
struct Watcher {
    current: VecDeque<JobEvent>,
    live: Option<broadcast::Receiver<JobEvent>>,
    ended: bool,
}

impl Watcher {
    fn new(subscription: Subscription) -> Self {
        Self {
            current: subscription.current.into(),
            live: subscription.live,
            ended: false,
        }
    }

    async fn next(&mut self) -> Option<JobEvent> {
        if self.ended {
            return None;
        }
        let event = match self.current.pop_front() {
            Some(event) => event,
            None => loop {
                match self.live.as_mut()?.recv().await {
                    Ok(event) => break event,
                    // A slow watcher skips to the oldest event still buffered; the final event
                    // is the newest one sent, so it is never skipped.
                    Err(broadcast::error::RecvError::Lagged(skipped)) => {
                        debug!(skipped, "watcher fell behind; events skipped");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            },
        };
        self.ended = matches!(
            event.kind,
            Some(
                job_event::Kind::Done(_)
                    | job_event::Kind::Failed(_)
                    | job_event::Kind::Cancelled(_)
            )
        );
        Some(event)
    }
}

fn required_id(job_id: String) -> Result<String> {
    if job_id.is_empty() {
        return Err(Error::invalid("job_id", "required"));
    }
    Ok(job_id)
}

fn page_token_for(seq: u64) -> String {
    format!("{seq:x}")
}

fn parse_page_token(token: &str) -> Result<u64> {
    u64::from_str_radix(token, 16)
        .map_err(|_| Error::invalid("page_token", "not a token returned by ListJobs"))
}

async fn open_artifact(job_id: &str, stored: &StoredArtifact) -> Result<tokio::fs::File> {
    match tokio::fs::File::open(&stored.path).await {
        Ok(file) => Ok(file),
        // Evicted between the lookup and the open.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::ArtifactEvicted {
            job_id: job_id.to_string(),
            cap_bytes: stored.cap_bytes,
        }),
        Err(e) => Err(Error::io(
            format!("opening the artifact of job {job_id}"),
            e,
        )),
    }
}

/// Streams `file` in chunks of at most [`CHUNK_BYTES`], the first carrying `artifact`.
async fn send_file<T>(
    mut file: tokio::fs::File,
    artifact: Artifact,
    tx: &mpsc::Sender<Result<T, Status>>,
    wrap: impl Fn(ArtifactChunk) -> T,
) -> Result<(), Status> {
    let mut artifact = Some(artifact);
    let mut offset = 0u64;
    loop {
        let mut data = BytesMut::with_capacity(CHUNK_BYTES);
        while data.len() < CHUNK_BYTES {
            let read = file
                .read_buf(&mut data)
                .await
                .map_err(|e| Status::from(Error::io("reading the artifact", e)))?;
            if read == 0 {
                break;
            }
        }
        let len = data.len();
        if len == 0 && artifact.is_none() {
            return Ok(());
        }
        let chunk = ArtifactChunk {
            offset,
            data: data.freeze(),
            artifact: artifact.take(),
        };
        if tx.send(Ok(wrap(chunk))).await.is_err() {
            return Ok(());
        }
        offset += len as u64;
        if len < CHUNK_BYTES {
            return Ok(());
        }
    }
}
