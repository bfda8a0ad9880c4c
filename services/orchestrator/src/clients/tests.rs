//! Retries and fail-over against fake stage servers on loopback.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use clap::Parser;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::Stream;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};
use tonic_health::ServingStatus;
use turbine_proto::v1::denoiser_server::{Denoiser, DenoiserServer};
use turbine_proto::v1::{
    DenoiseEvent, DenoiseSetup, Dtype, GenerationParams, StepProgress, denoise_event, denoise_input,
};
use turbine_rpc::tensor::WireTensor;

use super::*;
use crate::config::Config;
use crate::stages::EncodedPrompt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Sample,
    Unavailable,
    InvalidArgument,
    FailedPrecondition,
    /// The replica's queue is full (turbine-rpc's busy status).
    Busy,
    /// The request does not fit in the replica's device memory.
    OutOfMemory,
    /// Sends one step, then stays silent until the server dies.
    Hang,
}

struct FakeDenoiser {
    behaviour: Behaviour,
    calls: Arc<AtomicUsize>,
    started: Option<mpsc::Sender<()>>,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<DenoiseEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Denoiser for FakeDenoiser {
    type DenoiseStream = EventStream;

    async fn denoise(
        &self,
        request: Request<Streaming<turbine_proto::v1::DenoiseInput>>,
    ) -> Result<Response<EventStream>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut input = request.into_inner();
        let mut params = None;
        while let Some(message) = input.message().await? {
            if let Some(denoise_input::Kind::Setup(setup)) = message.kind {
                params = setup.params;
            }
        }
        let params = params.ok_or_else(|| Status::invalid_argument("setup: missing"))?;
        match self.behaviour {
            Behaviour::Unavailable => return Err(Status::unavailable("loading")),
            Behaviour::InvalidArgument => {
                return Err(Status::invalid_argument("attention.mode: no proj_l"));
            }
            Behaviour::FailedPrecondition => {
                return Err(Status::failed_precondition("proj_l missing"));
            }
            Behaviour::Busy => return Err(turbine_rpc::Error::Busy { slots: 1 }.into()),
            Behaviour::OutOfMemory => {
                let oom = turbine_tensor::Error::OutOfMemory {
                    backend: "cuda",
                    bytes: 1 << 34,
                    detail: "cache released".into(),
                };
                return Err(turbine_rpc::Error::from(turbine_pipeline::Error::from(oom)).into());
            }
            Behaviour::Sample | Behaviour::Hang => {}
        }
        let (tx, rx) = mpsc::channel(8);
        let behaviour = self.behaviour;
        let started = self.started.clone();
        tokio::spawn(async move {
            let step = |step| DenoiseEvent {
                kind: Some(denoise_event::Kind::Progress(StepProgress {
                    step,
                    total: 2,
                    timestep: 1.0,
                    seconds: 0.01,
                })),
            };
            let _ = tx.send(Ok(step(0))).await;
            if behaviour == Behaviour::Hang {
                if let Some(started) = started {
                    let _ = started.send(()).await;
                }
                std::future::pending::<()>().await;
            }
            let _ = tx.send(Ok(step(1))).await;
            let (h, w) = ((params.height / 8) as usize, (params.width / 8) as usize);
            let frames = 1 + (params.frames as usize - 1) / 4;
            for _ in 0..frames {
                let latent = WireTensor {
                    dtype: Dtype::F32,
                    shape: vec![16, 1, h, w],
                    data: vec![0u8; 16 * h * w * 4].into(),
                };
                for chunk in latent.chunks("latent_frame") {
                    let event = DenoiseEvent {
                        kind: Some(denoise_event::Kind::Latent(chunk)),
                    };
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// A fake denoiser on its own runtime and thread, so that dropping it closes every connection
/// the way a dying process does.
struct FakeServer {
    url: String,
    calls: Arc<AtomicUsize>,
    health: tonic_health::server::HealthReporter,
    kill: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeServer {
    fn start(behaviour: Behaviour, started: Option<mpsc::Sender<()>>) -> Self {
        let calls = Arc::new(AtomicUsize::new(0));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (kill, killed) = oneshot::channel::<()>();
        let service = FakeDenoiser {
            behaviour,
            calls: calls.clone(),
            started,
        };
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let (health, health_service) = tonic_health::server::health_reporter();
                health
                    .set_service_status(DENOISER_SERVICE, ServingStatus::Serving)
                    .await;
                ready_tx
                    .send((listener.local_addr().unwrap(), health))
                    .unwrap();
                let server = tonic::transport::Server::builder()
                    .add_service(health_service)
                    .add_service(DenoiserServer::new(service))
                    .serve_with_incoming(TcpListenerStream::new(listener));
                tokio::select! {
                    _ = server => {}
                    _ = killed => {}
                }
            });
            // Dropping the runtime drops every connection task: the sockets close mid-stream.
            runtime.shutdown_background();
        });
        let (addr, health) = ready_rx.recv().unwrap();
        Self {
            url: format!("http://{addr}"),
            calls,
            health,
            kill: Some(kill),
            thread: Some(thread),
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn kill(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port nothing listens on.
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

async fn stages(denoisers: &[&str]) -> Arc<GrpcStages> {
    let config = Config::try_parse_from([
        "turbine-orchestrator",
        "--text-encoder",
        "http://127.0.0.1:1",
        "--vae",
        "http://127.0.0.1:1",
        "--denoiser",
        &denoisers.join(","),
        "--connect-timeout",
        "1s",
        "--denoiser-timeout",
        "20s",
    ])
    .unwrap();
    Arc::new(GrpcStages::new(&config.stages).await.unwrap())
}

fn input() -> DenoiseInput {
    let params = GenerationParams {
        prompt: "p".into(),
        width: 32,
        height: 16,
        frames: 5,
        ..GenerationParams::default()
    };
    let context = Arc::new(EncodedPrompt {
        context: WireTensor {
            dtype: Dtype::F32,
            shape: vec![2, 2],
            data: vec![0u8; 16].into(),
        },
        tokens: 1,
        truncated: false,
    });
    DenoiseInput {
        video: VideoSize {
            width: 32,
            height: 16,
            frames: 5,
        },
        setup: DenoiseSetup {
            params: Some(params),
            seed: 1,
        },
        // Encoded already: the sender may go, the value stays.
        prompts: tokio::sync::watch::channel(Some(Prompts {
            context,
            negative: None,
        }))
        .1,
    }
}

/// Runs one denoise call; returns its result, the updates it reported and the latent frames.
async fn denoise(stages: &Arc<GrpcStages>) -> (Result<()>, Vec<DenoiseUpdate>, usize) {
    let (tx, mut rx) = mpsc::channel(64);
    let log = LatentLog::new(2);
    let result = stages.denoise(&input(), &tx, &log).await;
    drop(tx);
    let mut updates = Vec::new();
    while let Some(u) = rx.recv().await {
        updates.push(u);
    }
    (result, updates, log.received())
}

#[tokio::test]
async fn a_replica_refusing_connections_is_skipped() {
    let good = FakeServer::start(Behaviour::Sample, None);
    let dead = closed_port_url();
    let stages = stages(&[&dead, &good.url]).await;
    for _ in 0..3 {
        let (result, _, frames) = denoise(&stages).await;
        result.unwrap();
        assert_eq!(frames, 2);
    }
    assert_eq!(good.calls(), 3);
    let replicas = stages.denoiser.replicas();
    let dead = replicas.iter().find(|r| r.uri() == dead).unwrap();
    assert!(
        stages.denoiser.is_down(dead),
        "marked unhealthy for the back-off"
    );
}

#[tokio::test]
async fn unavailable_is_retried_elsewhere_and_invalid_argument_is_not() {
    let loading = FakeServer::start(Behaviour::Unavailable, None);
    let good = FakeServer::start(Behaviour::Sample, None);
    let stages_ = stages(&[&loading.url, &good.url]).await;
    let (result, _, _) = denoise(&stages_).await;
    result.unwrap();
    assert_eq!((loading.calls(), good.calls()), (1, 1));

    let a = FakeServer::start(Behaviour::InvalidArgument, None);
    let b = FakeServer::start(Behaviour::InvalidArgument, None);
    let stages_ = stages(&[&a.url, &b.url]).await;
    let (result, _, _) = denoise(&stages_).await;
    let Err(Error::Stage { stage, status }) = result else {
        panic!("expected the stage's error: {result:?}");
    };
    assert_eq!(
        (stage, status.code()),
        (Stage::Denoise, Code::InvalidArgument)
    );
    assert_eq!(a.calls() + b.calls(), 1, "never retried");

    // Any other status the stage itself sends is final too: only transport failures retry.
    let c = FakeServer::start(Behaviour::FailedPrecondition, None);
    let d = FakeServer::start(Behaviour::FailedPrecondition, None);
    let stages_ = stages(&[&c.url, &d.url]).await;
    let (result, _, _) = denoise(&stages_).await;
    assert_eq!(
        Status::from(result.unwrap_err()).code(),
        Code::FailedPrecondition
    );
    assert_eq!(c.calls() + d.calls(), 1);

    // RESOURCE_EXHAUSTED: a full queue is another replica's chance; a request too big for the
    // device's memory is not.
    let busy = FakeServer::start(Behaviour::Busy, None);
    let good = FakeServer::start(Behaviour::Sample, None);
    let stages_ = stages(&[&busy.url, &good.url]).await;
    let (result, _, _) = denoise(&stages_).await;
    result.unwrap();
    assert_eq!((busy.calls(), good.calls()), (1, 1));
    let e = FakeServer::start(Behaviour::OutOfMemory, None);
    let f = FakeServer::start(Behaviour::OutOfMemory, None);
    let stages_ = stages(&[&e.url, &f.url]).await;
    let (result, _, _) = denoise(&stages_).await;
    assert_eq!(
        Status::from(result.unwrap_err()).code(),
        Code::ResourceExhausted
    );
    assert_eq!(e.calls() + f.calls(), 1, "never retried");

    let x = FakeServer::start(Behaviour::Unavailable, None);
    let y = FakeServer::start(Behaviour::Unavailable, None);
    let stages_ = stages(&[&x.url, &y.url]).await;
    let (result, _, _) = denoise(&stages_).await;
    assert_eq!(Status::from(result.unwrap_err()).code(), Code::Unavailable);
    assert_eq!(x.calls() + y.calls(), 3, "--stage-attempts");
}

#[tokio::test]
async fn a_worker_dying_mid_stream_is_retried_on_another() {
    let (started_tx, mut started) = mpsc::channel(1);
    let mut dying = FakeServer::start(Behaviour::Hang, Some(started_tx));
    let good = FakeServer::start(Behaviour::Sample, None);
    // The hanging replica is first, so the first attempt goes there.
    let stages = stages(&[&dying.url, &good.url]).await;
    let call = tokio::spawn({
        let stages = stages.clone();
        async move { denoise(&stages).await }
    });
    started.recv().await.unwrap();
    dying.kill();
    let (result, updates, frames) = call.await.unwrap();
    result.unwrap();
    assert_eq!(frames, 2);
    assert!(updates.contains(&DenoiseUpdate::Restarted), "{updates:?}");
    assert_eq!(good.calls(), 1);
}

#[tokio::test]
async fn readiness_follows_the_replicas_health() {
    let server = FakeServer::start(Behaviour::Sample, None);
    let stages = stages(&[&server.url]).await;
    // The text encoder and VAE point at a closed port: not ready.
    assert!(!stages.ready().await);
    let denoiser = stages.denoiser.replicas()[0].clone();
    assert!(
        !stages.denoiser.is_down(&denoiser),
        "a SERVING replica stays up"
    );
    server
        .health
        .set_service_status(DENOISER_SERVICE, ServingStatus::NotServing)
        .await;
    stages.ready().await;
    assert!(stages.denoiser.is_down(&denoiser), "NOT_SERVING is avoided");
    let text = stages.text_encoder.replicas()[0].clone();
    assert!(stages.text_encoder.is_down(&text));
}
