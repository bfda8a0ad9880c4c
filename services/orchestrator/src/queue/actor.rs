//! The actor behind [`Queue`](super::Queue): the only owner of the job table, the waiting
//! queue, the idempotency keys and the artifact store. Each command runs to completion without
//! awaiting anything, so the state never needs a lock.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{OwnedSemaphorePermit, broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{Span, info};
use turbine_proto::v1::{
    Cancelled, Done, Job, JobEvent, JobState, Progress, Queued, Stage, StageStarted, job_event,
};
use turbine_telemetry::{Metrics, Stage as TelemetryStage};

use super::{
    Assignment, Command, Outcome, Page, QueueConfig, StoredArtifact, Submitted, Subscription,
    Update,
};
use crate::artifacts::{ArtifactStore, delete_files};
use crate::error::{Error, Result};
use crate::params::ValidParams;

/// Events kept per job for watchers that fall behind (previews included); a watcher further
/// behind skips ahead, and still sees the final event, which is always the newest.
const EVENT_BUFFER: usize = 256;
/// Weight of the newest job in the running estimate of post-sampling time.
const TAIL_SMOOTHING: f64 = 0.3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArtifactState {
    None,
    Stored,
    Evicted,
}

#[derive(Debug)]
struct Record {
    seq: u64,
    job: Job,
    key: Option<String>,
    /// While running: the stage in progress and the last step report, for new watchers.
    stage: Option<Stage>,
    progress: Option<Progress>,
    /// Dropped when the job ends, which ends every watcher's stream after the final event.
    events: Option<broadcast::Sender<JobEvent>>,
    cancel: Option<CancellationToken>,
    artifact: ArtifactState,
}

#[derive(Debug)]
struct Waiting {
    job_id: String,
    params: Box<ValidParams>,
    span: Span,
    /// Returned to the admission semaphore when the job leaves the queue.
    permit: OwnedSemaphorePermit,
    queued_at: Instant,
}

pub(super) struct Actor {
    records: HashMap<String, Record>,
    /// Submission order: sequence number → job id (ListJobs walks it backwards).
    order: BTreeMap<u64, String>,
    keys: HashMap<String, String>,
    waiting: VecDeque<Waiting>,
    idle_workers: VecDeque<oneshot::Sender<Assignment>>,
    /// Ended jobs, oldest first, forgotten past `history`.
    finished: VecDeque<String>,
    capacity: u32,
    history: usize,
    store: ArtifactStore,
    next_seq: u64,
    draining: bool,
    tail_rate: Option<f64>,
    /// Jobs in the running state (cancelled ones leave it at once, though their stage calls may
    /// take up to one denoising step to stop).
    running: i64,
    metrics: Metrics,
}

impl Actor {
    pub(super) fn new(config: &QueueConfig, store: ArtifactStore, metrics: Metrics) -> Self {
        Self {
            records: HashMap::new(),
            order: BTreeMap::new(),
            keys: HashMap::new(),
            waiting: VecDeque::new(),
            idle_workers: VecDeque::new(),
            finished: VecDeque::new(),
            capacity: config.capacity,
            history: config.history as usize,
            store,
            next_seq: 1,
            draining: false,
            tail_rate: None,
            running: 0,
            metrics,
        }
    }

    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        while let Some(command) = rx.recv().await {
            self.handle(command);
            self.publish_gauges();
        }
    }

    fn handle(&mut self, command: Command) {
        // A dropped reply receiver means the caller gave up (client disconnected): ignore.
        match command {
            Command::Submit {
                params,
                key,
                span,
                permit,
                reply,
            } => {
                let _ = reply.send(self.submit(params, key, span, permit));
            }
            Command::Get { job_id, reply } => {
                let _ = reply.send(self.record(&job_id).map(|r| r.job.clone()));
            }
            Command::List {
                page_size,
                before,
                reply,
            } => {
                let _ = reply.send(self.list(page_size, before));
            }
            Command::Watch { job_id, reply } => {
                let _ = reply.send(self.watch(&job_id));
            }
            Command::Cancel { job_id, reply } => {
                let _ = reply.send(self.cancel(&job_id));
            }
            Command::Artifact { job_id, reply } => {
                let _ = reply.send(self.artifact(&job_id));
            }
            Command::Next { reply } => {
                if !self.draining {
                    self.idle_workers.push_back(reply);
                    self.dispatch();
                }
            }
            Command::Update { job_id, update } => self.update(&job_id, update),
            Command::Finish { job_id, outcome } => self.finish(&job_id, outcome),
            Command::Drain { reply } => {
                self.drain();
                let _ = reply.send(());
            }
            Command::AbortRunning { reply } => {
                let _ = reply.send(self.abort_running());
            }
        }
    }

    fn record(&self, job_id: &str) -> Result<&Record> {
        self.records
            .get(job_id)
            .ok_or_else(|| Error::JobNotFound(job_id.to_string()))
    }

    fn record_mut(&mut self, job_id: &str) -> Result<&mut Record> {
        self.records
            .get_mut(job_id)
            .ok_or_else(|| Error::JobNotFound(job_id.to_string()))
    }

    fn submit(
        &mut self,
        params: Box<ValidParams>,
        key: Option<String>,
        span: Span,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Result<Submitted> {
        if let Some(job_id) = key.as_ref().and_then(|k| self.keys.get(k)) {
            return Ok(Submitted {
                job_id: job_id.clone(),
                created: false,
            });
        }
        if self.draining {
            return Err(Error::ShuttingDown);
        }
        let permit = permit.ok_or(Error::QueueFull {
            capacity: self.capacity,
        })?;
        let job_id = loop {
            let id = format!("{:032x}", rand::random::<u128>());
            if !self.records.contains_key(&id) {
                break id;
            }
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        let now = now_s();
        let job = Job {
            job_id: job_id.clone(),
            state: JobState::Queued as i32,
            params: Some(params.resolved.clone()),
            seed: params.seed,
            created_at: now,
            updated_at: now,
            queue_position: self.waiting.len() as u32,
            ..Job::default()
        };
        span.in_scope(|| info!(job_id, seed = params.seed, "job queued"));
        if let Some(k) = &key {
            self.keys.insert(k.clone(), job_id.clone());
        }
        self.order.insert(seq, job_id.clone());
        self.records.insert(
            job_id.clone(),
            Record {
                seq,
                job,
                key,
                stage: None,
                progress: None,
                events: Some(broadcast::channel(EVENT_BUFFER).0),
                cancel: None,
                artifact: ArtifactState::None,
            },
        );
        self.waiting.push_back(Waiting {
            job_id: job_id.clone(),
            params,
            span,
            permit,
            queued_at: Instant::now(),
        });
        self.dispatch();
        Ok(Submitted {
            job_id,
            created: true,
        })
    }

    /// Hands waiting jobs to idle workers, then tells the rest their new places.
    fn dispatch(&mut self) {
        while !self.waiting.is_empty() {
            let Some(worker) = self.idle_workers.pop_front() else {
                break;
            };
            if worker.is_closed() {
                continue;
            }
            let Some(Waiting {
                job_id,
                params,
                span,
                permit,
                queued_at,
            }) = self.waiting.pop_front()
            else {
                break;
            };
            let cancel = CancellationToken::new();
            let assignment = Assignment {
                job_id: job_id.clone(),
                params: *params,
                span,
                cancel: cancel.clone(),
                partial_path: self.store.partial_path(&job_id),
                artifact_path: self.store.path(&job_id),
                tail_rate: self.tail_rate,
            };
            match worker.send(assignment) {
                Ok(()) => {
                    drop(permit);
                    self.metrics
                        .observe_stage(TelemetryStage::Queue, queued_at.elapsed());
                    self.running += 1;
                    if let Some(record) = self.records.get_mut(&job_id) {
                        record.job.state = JobState::Running as i32;
                        record.job.queue_position = 0;
                        record.job.updated_at = now_s();
                        record.cancel = Some(cancel);
                    }
                }
                Err(back) => self.waiting.push_front(Waiting {
                    job_id,
                    params: Box::new(back.params),
                    span: back.span,
                    permit,
                    queued_at,
                }),
            }
        }
        self.announce_positions();
    }

    fn publish_gauges(&self) {
        self.metrics.queue_depth().set(self.waiting.len() as i64);
        self.metrics.jobs_running().set(self.running);
    }

    fn announce_positions(&mut self) {
        for (position, waiting) in self.waiting.iter().enumerate() {
            let Some(record) = self.records.get_mut(&waiting.job_id) else {
                continue;
            };
            let position = position as u32;
            if record.job.queue_position != position {
                record.job.queue_position = position;
                emit(record, job_event::Kind::Queued(Queued { position }));
            }
        }
    }

    fn list(&self, page_size: usize, before: Option<u64>) -> Page {
        let mut newest_first = self.order.range(..before.unwrap_or(u64::MAX)).rev();
        let page: Vec<(u64, &String)> = newest_first
            .by_ref()
            .take(page_size)
            .map(|(seq, id)| (*seq, id))
            .collect();
        let next = match newest_first.next() {
            Some(_) => page.last().map(|(seq, _)| *seq),
            None => None,
        };
        Page {
            jobs: page
                .iter()
                .filter_map(|(_, id)| self.records.get(*id).map(|r| r.job.clone()))
                .collect(),
            next,
        }
    }

    fn watch(&self, job_id: &str) -> Result<Subscription> {
        let record = self.record(job_id)?;
        let event = |kind| JobEvent {
            job_id: job_id.to_string(),
            kind: Some(kind),
        };
        let mut current = Vec::new();
        match record.job.state() {
            JobState::Queued => current.push(event(job_event::Kind::Queued(Queued {
                position: record.job.queue_position,
            }))),
            JobState::Running => {
                if let Some(stage) = record.stage {
                    current.push(event(job_event::Kind::StageStarted(StageStarted {
                        stage: stage as i32,
                    })));
                }
                if let Some(progress) = &record.progress {
                    current.push(event(job_event::Kind::Progress(*progress)));
                }
            }
            JobState::Succeeded
            | JobState::Failed
            | JobState::Cancelled
            | JobState::Unspecified => {
                current.extend(final_event(&record.job).map(event));
            }
        }
        Ok(Subscription {
            current,
            live: record.events.as_ref().map(|tx| tx.subscribe()),
        })
    }

    fn cancel(&mut self, job_id: &str) -> Result<Job> {
        let record = self.record_mut(job_id)?;
        match record.job.state() {
            JobState::Queued => {
                // Dropping the entry returns its admission permit.
                self.waiting.retain(|w| w.job_id != job_id);
                self.end(job_id, Outcome::Cancelled);
                self.announce_positions();
            }
            JobState::Running => {
                if let Some(cancel) = record.cancel.take() {
                    cancel.cancel();
                }
                self.end(job_id, Outcome::Cancelled);
            }
            JobState::Cancelled | JobState::Unspecified => {}
            state @ (JobState::Succeeded | JobState::Failed) => {
                return Err(Error::NotCancellable {
                    job_id: job_id.to_string(),
                    state: state_name(state),
                });
            }
        }
        self.record(job_id).map(|r| r.job.clone())
    }

    fn artifact(&self, job_id: &str) -> Result<StoredArtifact> {
        let record = self.record(job_id)?;
        match (record.artifact, &record.job.artifact) {
            (ArtifactState::Stored, Some(artifact)) => Ok(StoredArtifact {
                path: self.store.path(job_id),
                artifact: artifact.clone(),
                cap_bytes: self.store.cap_bytes(),
            }),
            (ArtifactState::Evicted, _) => Err(Error::ArtifactEvicted {
                job_id: job_id.to_string(),
                cap_bytes: self.store.cap_bytes(),
            }),
            (ArtifactState::None | ArtifactState::Stored, _) => Err(Error::ArtifactNotReady {
                job_id: job_id.to_string(),
                state: state_name(record.job.state()),
            }),
        }
    }

    fn update(&mut self, job_id: &str, update: Update) {
        let Some(record) = self.records.get_mut(job_id) else {
            return;
        };
        // A job cancelled while running may still report until its stage call stops.
        if record.job.state() != JobState::Running {
            return;
        }
        record.job.updated_at = now_s();
        let kind = match update {
            Update::Stage(stage) => {
                record.stage = Some(stage);
                record.progress = None;
                job_event::Kind::StageStarted(StageStarted {
                    stage: stage as i32,
                })
            }
            Update::Progress(progress) => {
                record.progress = Some(progress);
                job_event::Kind::Progress(progress)
            }
            Update::Preview(preview) => job_event::Kind::Preview(preview),
        };
        emit(record, kind);
    }

    /// A worker's report that its job ended.
    fn finish(&mut self, job_id: &str, outcome: Outcome) {
        let running = self
            .records
            .get(job_id)
            .is_some_and(|r| r.job.state() == JobState::Running);
        if running {
            if let Outcome::Succeeded { tail_s, .. } = &outcome {
                self.learn_tail(job_id, *tail_s);
            }
            self.end(job_id, outcome);
        } else {
            // Cancelled or aborted while running: an MP4 finished meanwhile has no taker.
            delete_files(vec![self.store.path(job_id)]);
        }
    }

    /// Puts a queued or running job into its final state and tells its watchers.
    fn end(&mut self, job_id: &str, outcome: Outcome) {
        let mut evicted = Vec::new();
        let Some(record) = self.records.get_mut(job_id) else {
            return;
        };
        if record.job.state() == JobState::Running {
            self.running -= 1;
        }
        record.cancel = None;
        record.stage = None;
        record.progress = None;
        record.job.queue_position = 0;
        record.job.updated_at = now_s();
        match outcome {
            Outcome::Succeeded {
                artifact, timings, ..
            } => {
                record.job.state = JobState::Succeeded as i32;
                record.artifact = ArtifactState::Stored;
                evicted = self.store.add(job_id, artifact.size_bytes);
                record.job.artifact = Some(artifact);
                record.job.timings = timings;
            }
            Outcome::Failed(error) => {
                record.job.state = JobState::Failed as i32;
                record.job.error = Some(error.to_job_error());
            }
            Outcome::Cancelled => record.job.state = JobState::Cancelled as i32,
        }
        if let Some(kind) = final_event(&record.job) {
            emit(record, kind);
        }
        record.events = None;
        info!(job_id, state = state_name(record.job.state()), "job ended");
        let mut paths = Vec::new();
        for id in evicted {
            if let Some(r) = self.records.get_mut(&id) {
                r.artifact = ArtifactState::Evicted;
            }
            paths.push(self.store.path(&id));
        }
        self.finished.push_back(job_id.to_string());
        while self.finished.len() > self.history {
            let Some(old) = self.finished.pop_front() else {
                break;
            };
            if let Some(forgotten) = self.forget(&old) {
                paths.push(forgotten);
            }
        }
        delete_files(paths);
    }

    /// Drops an ended job's record; returns its artifact file if one is stored.
    fn forget(&mut self, job_id: &str) -> Option<PathBuf> {
        let record = self.records.remove(job_id)?;
        self.order.remove(&record.seq);
        if let Some(key) = &record.key {
            self.keys.remove(key);
        }
        self.store.remove(job_id).then(|| self.store.path(job_id))
    }

    fn drain(&mut self) {
        self.draining = true;
        self.idle_workers.clear();
        let waiting: Vec<Waiting> = self.waiting.drain(..).collect();
        for w in waiting {
            self.end(&w.job_id, Outcome::Failed(Error::ShuttingDown));
        }
    }

    fn abort_running(&mut self) -> usize {
        let running: Vec<String> = self
            .records
            .iter()
            .filter(|(_, r)| r.job.state() == JobState::Running)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &running {
            if let Some(cancel) = self.records.get_mut(id).and_then(|r| r.cancel.take()) {
                cancel.cancel();
            }
            self.end(id, Outcome::Failed(Error::ShuttingDown));
        }
        running.len()
    }

    fn learn_tail(&mut self, job_id: &str, tail_s: f64) {
        let Some(params) = self.records.get(job_id).and_then(|r| r.job.params.as_ref()) else {
            return;
        };
        let pixel_frames =
            f64::from(params.width) * f64::from(params.height) * f64::from(params.frames);
        if pixel_frames <= 0.0 {
            return;
        }
        let rate = tail_s / pixel_frames;
        self.tail_rate = Some(match self.tail_rate {
            Some(old) => old + TAIL_SMOOTHING * (rate - old),
            None => rate,
        });
    }
}

fn emit(record: &Record, kind: job_event::Kind) {
    if let Some(tx) = &record.events {
        // No receiver means nobody is watching right now.
        let _ = tx.send(JobEvent {
            job_id: record.job.job_id.clone(),
            kind: Some(kind),
        });
    }
}

/// The event that ends a watch stream, for a job in a final state.
fn final_event(job: &Job) -> Option<job_event::Kind> {
    match job.state() {
        JobState::Succeeded => Some(job_event::Kind::Done(Done {
            artifact: job.artifact.clone(),
            timings: job.timings.clone(),
        })),
        JobState::Failed => Some(job_event::Kind::Failed(
            job.error.clone().unwrap_or_default(),
        )),
        JobState::Cancelled => Some(job_event::Kind::Cancelled(Cancelled {})),
        JobState::Queued | JobState::Running | JobState::Unspecified => None,
    }
}

fn state_name(state: JobState) -> &'static str {
    match state {
        JobState::Unspecified => "in an unknown state",
        JobState::Queued => "queued",
        JobState::Running => "running",
        JobState::Succeeded => "succeeded",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
    }
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}
