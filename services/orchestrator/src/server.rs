//! The orchestrator's life: job engine, health, reflection and the public service, then a drain on
//! shutdown.
//!
//! Health (`""` and `turbine.v1.Orchestrator`) is SERVING while every stage has at least one
//! replica whose own health check answers SERVING, re-checked every `--health-interval`, and
//! NOT_SERVING before the first check, while a stage has no ready replica, and from shutdown on.
//!
//! Shutdown: stop accepting connections and submissions (UNAVAILABLE), fail queued jobs with
//! UNAVAILABLE, let running jobs finish for up to `--drain-timeout`, then fail and cancel the
//! rest. Open watch streams end with their jobs' final events.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tracing::{info, warn};
use turbine_proto::v1::orchestrator_server::{OrchestratorServer, SERVICE_NAME};
use turbine_rpc::server::{CONNECTION_WINDOW_BYTES, STREAM_WINDOW_BYTES};
use turbine_telemetry::{GrpcServerLayer, Metrics};

use crate::artifacts::ArtifactStore;
use crate::cache::PromptCache;
use crate::clients::GrpcStages;
use crate::config::Config;
use crate::job::{self, JobContext};
use crate::queue::{Queue, QueueConfig};
use crate::service::OrchestratorService;
use crate::stages::Stages;

/// Largest request accepted: parameters with two 16 KiB prompts fit many times over.
const MAX_REQUEST_BYTES: usize = 1 << 20;
/// Largest response message: artifact chunks carry 1 MiB, previews are small PNGs.
const MAX_RESPONSE_BYTES: usize = 4 << 20;
/// After the jobs have ended, how long open streams (artifact downloads) may still run.
const STREAM_GRACE: Duration = Duration::from_secs(10);
/// How long cancelled jobs get to stop their stage calls.
const ABORT_GRACE: Duration = Duration::from_secs(10);

/// Serves the orchestrator over `listener`, calling the stage services of `config`, until
/// `shutdown` resolves and the drain is over.
pub async fn run(
    config: Config,
    listener: TcpListener,
    metrics: Metrics,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let stages = GrpcStages::new(&config.stages)
        .await
        .map_err(anyhow::Error::msg)?;
    serve(config, Arc::new(stages), listener, metrics, shutdown).await
}

/// [`run`] with any implementation of the stages.
pub async fn serve<S: Stages + Clone>(
    config: Config,
    stages: S,
    listener: TcpListener,
    metrics: Metrics,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let store = ArtifactStore::open(
        &config.artifacts.artifact_dir,
        config.artifacts.artifact_max_bytes,
    )
    .with_context(|| {
        format!(
            "opening the artifact directory {}",
            config.artifacts.artifact_dir.display()
        )
    })?;
    let queue = Queue::start(
        QueueConfig {
            capacity: config.jobs.queue_capacity,
            history: config.jobs.job_history,
        },
        store,
        metrics.clone(),
    );
    let context = Arc::new(JobContext {
        stages: stages.clone(),
        cache: PromptCache::new(config.jobs.embedding_cache),
        metrics: metrics.clone(),
    });
    let mut workers = JoinSet::new();
    for _ in 0..config.jobs.concurrent_jobs {
        workers.spawn(job::worker(queue.clone(), context.clone()));
    }

    let (reporter, health_service) = tonic_health::server::health_reporter();
    set_health(&reporter, ServingStatus::NotServing).await;
    let stopping = CancellationToken::new();
    let monitor = tokio::spawn(monitor_health(
        stages,
        reporter,
        config.stages.health_interval,
        stopping.clone(),
    ));

    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(turbine_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name(SERVICE_NAME)
            .with_service_name(tonic_health::pb::health_server::SERVICE_NAME)
    };
    let service = OrchestratorServer::new(OrchestratorService::new(queue.clone(), &config.model))
        .max_decoding_message_size(MAX_REQUEST_BYTES)
        .max_encoding_message_size(MAX_RESPONSE_BYTES);
    let addr = listener.local_addr()?;
    let server = Server::builder()
        .tcp_nodelay(true)
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .layer(GrpcServerLayer::new(metrics))
        .add_service(health_service)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(service)
        .serve_with_incoming_shutdown(
            TcpListenerStream::new(listener),
            stopping.clone().cancelled_owned(),
        );
    let mut server = tokio::spawn(server);
    info!("listening on {addr}");

    tokio::select! {
        () = shutdown => {}
        result = &mut server => {
            stopping.cancel();
            return Ok(result??);
        }
    }
    info!("shutting down: no new jobs; draining running ones");
    stopping.cancel();
    // The monitor turns health NOT_SERVING as it stops.
    let _ = monitor.await;
    queue.drain().await;
    if tokio::time::timeout(config.drain_timeout, join_all(&mut workers))
        .await
        .is_err()
    {
        let aborted = queue.abort_running().await;
        warn!(aborted, timeout = ?config.drain_timeout, "drain timeout: running jobs cancelled");
        if tokio::time::timeout(ABORT_GRACE, join_all(&mut workers))
            .await
            .is_err()
        {
            warn!("cancelled jobs did not stop in time");
        }
    }
    match tokio::time::timeout(STREAM_GRACE, &mut server).await {
        Ok(result) => result??,
        Err(_) => {
            warn!("closing streams still open after the drain");
            server.abort();
        }
    }
    info!("drained");
    Ok(())
}

async fn join_all(workers: &mut JoinSet<()>) {
    while workers.join_next().await.is_some() {}
}

async fn set_health(reporter: &HealthReporter, status: ServingStatus) {
    for service in [SERVICE_NAME, ""] {
        reporter.set_service_status(service, status).await;
    }
}

/// Keeps health in step with the stages' readiness until `stopping`, then reports NOT_SERVING.
async fn monitor_health<S: Stages>(
    stages: S,
    reporter: HealthReporter,
    interval: Duration,
    stopping: CancellationToken,
) {
    let mut serving = None;
    loop {
        let ready = tokio::select! {
            () = stopping.cancelled() => break,
            ready = stages.ready() => ready,
        };
        if serving != Some(ready) {
            if ready {
                info!("every stage has a ready replica: SERVING");
            } else {
                warn!("a stage has no ready replica: NOT_SERVING");
            }
            let status = if ready {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            set_health(&reporter, status).await;
            serving = Some(ready);
        }
        tokio::select! {
            () = stopping.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
    }
    set_health(&reporter, ServingStatus::NotServing).await;
}
