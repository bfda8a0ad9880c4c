//! The orchestrator in front of the real text encoder, denoiser and VAE services (tiny preset),
//! all over gRPC on loopback: a job end to end with byte parity against the embedded pipeline,
//! queueing, cancellation, idempotency and replica fail-over.

use std::path::Path;
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::Channel;
use turbine_media::{FrameChunk, Mp4Config, Mp4Writer};
use turbine_orchestrator::Config;
use turbine_pipeline::{GenerateRequest, ModelSource, Pipeline, VideoShape};
use turbine_proto::v1::orchestrator_client::OrchestratorClient;
use turbine_proto::v1::{
    CancelJobRequest, FlowSampler, GenerationParams, GetArtifactRequest, GetJobRequest, Job,
    JobEvent, JobState, RcmSampler, Stage, SubmitJobRequest, WatchJobRequest,
    generation_params::Sampler, job_event,
};
use turbine_rpc::testing::{self, Running, wait_serving};
use turbine_rpc::worker::Worker;
use turbine_samplers::{RcmConfig, RcmMode};
use turbine_telemetry::Metrics;
use turbine_tensor::CpuBackend;

const READY: Duration = Duration::from_secs(120);

/// The three stage services with the tiny preset, on loopback ports.
struct Stages {
    text_encoder: Running,
    denoiser: Running,
    denoiser_service: turbine_denoiser::DenoiserService<CpuBackend>,
    vae: Running,
}

impl Stages {
    async fn start() -> Self {
        let text = Worker::spawn("text-encoder", 4, || {
            turbine_text_encoder::load(CpuBackend, &ModelSource::Tiny)
        });
        let denoise = Worker::spawn("denoiser", 4, || {
            turbine_denoiser::load(CpuBackend, &ModelSource::Tiny, None, &[])
        });
        let decode = Worker::spawn("vae", 4, || {
            turbine_vae::load(CpuBackend, &ModelSource::Tiny, None)
        });
        let denoiser_service = turbine_denoiser::DenoiserService::new(denoise, Metrics::default());
        Self {
            text_encoder: testing::start(
                turbine_text_encoder::TextEncoderService::new(text, Metrics::default())
                    .into_service(),
            )
            .await,
            denoiser: testing::start(denoiser_service.clone().into_service()).await,
            denoiser_service,
            vae: testing::start(
                turbine_vae::VaeService::new(decode, Metrics::default()).into_service(),
            )
            .await,
        }
    }
}

fn url(server: &Running) -> String {
    format!("http://{}", server.addr)
}

/// An orchestrator on a loopback port.
struct Orchestrator {
    client: OrchestratorClient<Channel>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Orchestrator {
    /// Waits until its health says every stage is ready.
    async fn start(denoisers: &str, stages: &Stages, artifacts: &Path, args: &[&str]) -> Self {
        let mut argv = vec![
            "turbine-orchestrator".to_string(),
            format!("--text-encoder={}", url(&stages.text_encoder)),
            format!("--denoiser={denoisers}"),
            format!("--vae={}", url(&stages.vae)),
            format!("--artifact-dir={}", artifacts.display()),
            "--health-interval=100ms".into(),
        ];
        argv.extend(args.iter().map(|a| a.to_string()));
        let config = Config::try_parse_from(argv).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(turbine_orchestrator::run(
            config,
            listener,
            Metrics::default(),
            async {
                let _ = stopped.await;
            },
        ));
        let channel = testing::connect(addr).await;
        wait_serving(&channel, "turbine.v1.Orchestrator", READY).await;
        Self {
            client: OrchestratorClient::new(channel),
            stop,
            task,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }

    async fn submit(
        &mut self,
        params: GenerationParams,
        key: &str,
    ) -> Result<String, tonic::Status> {
        Ok(self
            .client
            .submit_job(SubmitJobRequest {
                params: Some(params),
                idempotency_key: key.into(),
            })
            .await?
            .into_inner()
            .job_id)
    }

    async fn job(&mut self, job_id: &str) -> Job {
        self.client
            .get_job(GetJobRequest {
                job_id: job_id.into(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    async fn cancel(&mut self, job_id: &str) -> Job {
        self.client
            .cancel_job(CancelJobRequest {
                job_id: job_id.into(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    async fn events(&mut self, job_id: &str) -> tonic::Streaming<JobEvent> {
        self.client
            .watch_job(WatchJobRequest {
                job_id: job_id.into(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    async fn watch_to_end(&mut self, job_id: &str) -> Vec<JobEvent> {
        let mut stream = self.events(job_id).await;
        let mut events = Vec::new();
        while let Some(event) = stream.message().await.unwrap() {
            events.push(event);
        }
        events
    }

    async fn artifact(&mut self, job_id: &str) -> Vec<u8> {
        let mut stream = self
            .client
            .get_artifact(GetArtifactRequest {
                job_id: job_id.into(),
            })
            .await
            .unwrap()
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.message().await.unwrap() {
            bytes.extend_from_slice(&chunk.data);
        }
        bytes
    }

    async fn wait_for(&mut self, job_id: &str, state: JobState) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.job(job_id).await.state() != state {
            assert!(Instant::now() < deadline, "{job_id} never {state:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn small(prompt: &str, seed: u64) -> GenerationParams {
    GenerationParams {
        prompt: prompt.into(),
        width: 64,
        height: 48,
        frames: 9,
        seed: Some(seed),
        sampler: Some(Sampler::Rcm(RcmSampler {
            steps: 2,
            ..RcmSampler::default()
        })),
        previews: true,
        ..GenerationParams::default()
    }
}

/// A job that samples for a long while: many flow steps on a larger video.
fn slow(prompt: &str) -> GenerationParams {
    GenerationParams {
        prompt: prompt.into(),
        width: 160,
        height: 96,
        frames: 33,
        sampler: Some(Sampler::Flow(FlowSampler {
            steps: 1000,
            ..FlowSampler::default()
        })),
        ..GenerationParams::default()
    }
}

/// What `turbine generate` writes for `small(prompt, seed)`: the embedded pipeline into an MP4.
fn embedded_mp4(prompt: &str, seed: u64) -> Vec<u8> {
    let mut pipeline = Pipeline::load(CpuBackend, &ModelSource::Tiny).unwrap();
    let request = GenerateRequest {
        prompt: prompt.into(),
        negative_prompt: String::new(),
        shape: VideoShape::new(64, 48, 9).unwrap(),
        seed,
        sampler: RcmConfig::new(2, RcmConfig::SIGMA_MAX_T2V, RcmMode::Sde)
            .unwrap()
            .into(),
        attention: turbine_models::wan::AttentionMode::Dense,
    };
    struct Sink(Mp4Writer<Vec<u8>>);
    impl turbine_pipeline::FrameSink for Sink {
        fn push(
            &mut self,
            frames: &turbine_tensor::HostTensor,
        ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            let [c, n, h, w] = frames.shape[..] else {
                return Err("frames are [3, n, H, W]".into());
            };
            let data = frames.to_f32_vec();
            self.0.push(&FrameChunk::new(&data, [c, n, h, w])?)?;
            Ok(())
        }
    }
    // As `turbine generate` writes it: the clip's length declared up front.
    let config = Mp4Config {
        frames: Some(u64::from(request.shape.frames())),
        ..Mp4Config::default()
    };
    let mut sink = Sink(Mp4Writer::new(Vec::new(), 64, 48, config).unwrap());
    pipeline.generate(&request, &mut |_| {}, &mut sink).unwrap();
    sink.0.finish_into_sink().unwrap().1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_runs_through_the_stages_and_matches_the_embedded_pipeline() {
    let stages = Stages::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut orchestrator =
        Orchestrator::start(&url(&stages.denoiser), &stages, dir.path(), &[]).await;

    let prompt = "a lighthouse in a storm";
    let job_id = orchestrator.submit(small(prompt, 7), "").await.unwrap();
    let events = orchestrator.watch_to_end(&job_id).await;
    let mut progress = 0;
    let mut previews = 0;
    let mut stages_seen = Vec::new();
    for event in &events {
        match &event.kind {
            Some(job_event::Kind::Progress(p)) => {
                progress += 1;
                assert_eq!(p.total, 2);
                assert!(p.eta_seconds >= 0.0);
            }
            Some(job_event::Kind::Preview(p)) => {
                previews += 1;
                assert_eq!(&p.png[1..4], b"PNG");
            }
            Some(job_event::Kind::StageStarted(s)) => stages_seen.push(s.stage()),
            Some(
                job_event::Kind::Queued(_)
                | job_event::Kind::Done(_)
                | job_event::Kind::Failed(_)
                | job_event::Kind::Cancelled(_),
            )
            | None => {}
        }
    }
    assert_eq!((progress, previews), (2, 2), "{events:?}");
    assert!(stages_seen.ends_with(&[Stage::Denoise, Stage::VaeDecode, Stage::EncodeVideo]));
    let Some(job_event::Kind::Done(done)) = &events.last().unwrap().kind else {
        panic!("not done: {:?}", events.last());
    };
    let artifact = done.artifact.clone().unwrap();
    assert_eq!(
        (artifact.width, artifact.height, artifact.frames),
        (64, 48, 9)
    );

    let video = orchestrator.artifact(&job_id).await;
    assert_eq!(video.len() as u64, artifact.size_bytes);
    assert!(
        video == embedded_mp4(prompt, 7),
        "the services render the same MP4 bytes as the embedded pipeline"
    );
    let job = orchestrator.job(&job_id).await;
    assert_eq!(job.state(), JobState::Succeeded);
    assert_eq!(job.timings.len(), 4);

    // The same prompt again comes from the embedding cache; the video is the same.
    let again = orchestrator.submit(small(prompt, 7), "").await.unwrap();
    orchestrator.watch_to_end(&again).await;
    assert_eq!(orchestrator.artifact(&again).await, video);
    orchestrator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queue_full_cancel_and_idempotency_with_the_real_stages() {
    let stages = Stages::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut orchestrator = Orchestrator::start(
        &url(&stages.denoiser),
        &stages,
        dir.path(),
        &["--queue-capacity=1", "--concurrent-jobs=1"],
    )
    .await;

    let running = orchestrator.submit(slow("a long shot"), "").await.unwrap();
    let mut events = orchestrator.events(&running).await;
    // Wait until sampling runs: the first step's progress.
    loop {
        let event = events.message().await.unwrap().expect("job events");
        if let Some(job_event::Kind::Progress(_)) = event.kind {
            break;
        }
    }
    let queued = orchestrator
        .submit(small("waits", 1), "the-key")
        .await
        .unwrap();
    assert_eq!(
        orchestrator
            .submit(small("waits", 1), "the-key")
            .await
            .unwrap(),
        queued,
        "the same key returns the first job"
    );
    let full = orchestrator
        .submit(small("refused", 1), "")
        .await
        .unwrap_err();
    assert_eq!(full.code(), Code::ResourceExhausted, "{full:?}");

    assert_eq!(
        orchestrator.cancel(&queued).await.state(),
        JobState::Cancelled
    );
    assert_eq!(
        orchestrator.cancel(&running).await.state(),
        JobState::Cancelled
    );
    let mut last = None;
    while let Some(event) = events.message().await.unwrap() {
        last = event.kind;
    }
    assert!(
        matches!(last, Some(job_event::Kind::Cancelled(_))),
        "{last:?}"
    );

    // The denoiser stops within a step: it goes idle and its step count stops growing.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !stages.denoiser_service.is_idle() {
        assert!(Instant::now() < deadline, "the denoiser kept sampling");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let steps = stages.denoiser_service.steps_run();
    assert!(steps < 1000, "stopped early: {steps} steps");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stages.denoiser_service.steps_run(), steps);

    // The freed slot runs the next job to the end.
    let next = orchestrator.submit(small("next", 2), "").await.unwrap();
    orchestrator.wait_for(&next, JobState::Succeeded).await;
    orchestrator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_denoiser_refusing_connections_fails_over_to_the_other() {
    let stages = Stages::start().await;
    let dir = tempfile::tempdir().unwrap();
    let refused = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    // The refusing replica is listed first, so the first call is tried there; a 1 ms back-off
    // keeps the health checks from steering calls away from it before they fail over.
    let denoisers = format!("{refused},{}", url(&stages.denoiser));
    let mut orchestrator =
        Orchestrator::start(&denoisers, &stages, dir.path(), &["--replica-backoff=1ms"]).await;
    for seed in [1, 2] {
        let job_id = orchestrator
            .submit(small("fail over", seed), "")
            .await
            .unwrap();
        orchestrator.wait_for(&job_id, JobState::Succeeded).await;
        assert!(!orchestrator.artifact(&job_id).await.is_empty());
    }
    orchestrator.stop().await;
}
