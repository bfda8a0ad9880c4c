//! The public API over real gRPC on loopback, with in-process fake stages: queueing, cancelling,
//! idempotency, validation, paging, artifacts and shutdown.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tonic::Code;
use tonic::transport::Channel;
use tonic_health::ServingStatus;
use turbine_proto::v1::orchestrator_client::OrchestratorClient;
use turbine_proto::v1::{
    Attention, CancelJobRequest, FlowSampler, GenerateRequest, GenerationParams,
    GetArtifactRequest, GetJobRequest, Job, JobEvent, JobState, ListJobsRequest, ListModelsRequest,
    RcmSampler, Stage, SubmitJobRequest, WatchJobRequest, generate_event,
    generation_params::Sampler, job_event,
};
use turbine_rpc::testing::health;

use crate::testing::{FakeStages, TestServer};

/// A small video: 64×48, 5 frames (2 latent frames).
fn params(prompt: &str) -> GenerationParams {
    GenerationParams {
        prompt: prompt.into(),
        width: 64,
        height: 48,
        frames: 5,
        ..GenerationParams::default()
    }
}

async fn submit(
    client: &mut OrchestratorClient<Channel>,
    params: GenerationParams,
    key: &str,
) -> Result<(String, bool), tonic::Status> {
    let response = client
        .submit_job(SubmitJobRequest {
            params: Some(params),
            idempotency_key: key.into(),
        })
        .await?
        .into_inner();
    Ok((response.job_id, response.created))
}

async fn get(client: &mut OrchestratorClient<Channel>, job_id: &str) -> Job {
    client
        .get_job(GetJobRequest {
            job_id: job_id.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// Every event of a watch stream, until it ends.
async fn watch(client: &mut OrchestratorClient<Channel>, job_id: &str) -> Vec<JobEvent> {
    let mut stream = client
        .watch_job(WatchJobRequest {
            job_id: job_id.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::new();
    while let Some(event) = stream.message().await.unwrap() {
        events.push(event);
    }
    events
}

/// Polls until `job_id` reaches `state` (a few seconds at most).
async fn wait_for_state(client: &mut OrchestratorClient<Channel>, job_id: &str, state: JobState) {
    for _ in 0..500 {
        if get(client, job_id).await.state() == state {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("job {job_id} never reached {state:?}");
}

async fn artifact_bytes(client: &mut OrchestratorClient<Channel>, job_id: &str) -> Vec<u8> {
    let mut stream = client
        .get_artifact(GetArtifactRequest {
            job_id: job_id.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut bytes = Vec::new();
    let mut first = true;
    while let Some(chunk) = stream.message().await.unwrap() {
        assert_eq!(chunk.offset, bytes.len() as u64);
        assert_eq!(
            chunk.artifact.is_some(),
            first,
            "artifact info in the first chunk only"
        );
        first = false;
        bytes.extend_from_slice(&chunk.data);
    }
    bytes
}

fn kinds(events: &[JobEvent]) -> Vec<&'static str> {
    events
        .iter()
        .map(|e| match &e.kind {
            Some(job_event::Kind::Queued(_)) => "queued",
            Some(job_event::Kind::StageStarted(_)) => "stage",
            Some(job_event::Kind::Progress(_)) => "progress",
            Some(job_event::Kind::Preview(_)) => "preview",
            Some(job_event::Kind::Done(_)) => "done",
            Some(job_event::Kind::Failed(_)) => "failed",
            Some(job_event::Kind::Cancelled(_)) => "cancelled",
            None => "empty",
        })
        .collect()
}

#[tokio::test]
async fn submit_watch_and_download() {
    let dir = tempfile::tempdir().unwrap();
    let stages = FakeStages::new(3, Duration::from_millis(20));
    let server = TestServer::start(stages.clone(), dir.path(), &[]).await;
    let mut client = server.client().await;

    let (job_id, created) = submit(
        &mut client,
        GenerationParams {
            previews: true,
            ..params("a lighthouse at dusk")
        },
        "",
    )
    .await
    .unwrap();
    assert!(created);
    let events = watch(&mut client, &job_id).await;
    assert!(events.iter().all(|e| e.job_id == job_id));
    let seen = kinds(&events);
    assert_eq!(seen.last(), Some(&"done"), "{seen:?}");
    assert_eq!(
        seen.iter().filter(|k| **k == "progress").count(),
        3,
        "{seen:?}"
    );
    assert_eq!(
        seen.iter().filter(|k| **k == "preview").count(),
        3,
        "{seen:?}"
    );
    let stages_seen: Vec<Stage> = events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(job_event::Kind::StageStarted(s)) => Some(s.stage()),
            _ => None,
        })
        .collect();
    // A watch that starts after submission may miss the first stage event; the order holds.
    assert!(stages_seen.ends_with(&[Stage::Denoise, Stage::VaeDecode, Stage::EncodeVideo]));
    let last_progress = events
        .iter()
        .rev()
        .find_map(|e| match &e.kind {
            Some(job_event::Kind::Progress(p)) => Some(*p),
            _ => None,
        })
        .unwrap();
    assert_eq!((last_progress.step, last_progress.total), (2, 3));
    let Some(job_event::Kind::Done(done)) = &events.last().unwrap().kind else {
        unreachable!();
    };
    let artifact = done.artifact.clone().unwrap();
    assert_eq!(
        (
            artifact.width,
            artifact.height,
            artifact.frames,
            artifact.fps
        ),
        (64, 48, 5, 16.0)
    );
    assert_eq!(done.timings.len(), 4);

    let job = get(&mut client, &job_id).await;
    assert_eq!(job.state(), JobState::Succeeded);
    assert_ne!(job.seed, 0, "a seed was chosen");
    assert_eq!(job.params.as_ref().unwrap().seed, Some(job.seed));
    let bytes = artifact_bytes(&mut client, &job_id).await;
    assert_eq!(bytes.len() as u64, artifact.size_bytes);
    assert_eq!(&bytes[4..8], b"ftyp", "an MP4");

    // Watching a finished job replays its final event only.
    assert_eq!(kinds(&watch(&mut client, &job_id).await), ["done"]);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_full_queue_refuses_and_cancelled_jobs_stop() {
    let dir = tempfile::tempdir().unwrap();
    let step = Duration::from_millis(100);
    let stages = FakeStages::new(1000, step);
    let server = TestServer::start(
        stages.clone(),
        dir.path(),
        &["--queue-capacity", "1", "--concurrent-jobs", "1"],
    )
    .await;
    let mut client = server.client().await;

    let (running, _) = submit(&mut client, params("one"), "").await.unwrap();
    wait_for_state(&mut client, &running, JobState::Running).await;
    let (queued, _) = submit(&mut client, params("two"), "key-two").await.unwrap();
    let full = submit(&mut client, params("three"), "").await.unwrap_err();
    assert_eq!(full.code(), Code::ResourceExhausted, "{}", full.message());
    // A retried submission finds its job even while the queue is full.
    assert_eq!(
        submit(&mut client, params("two"), "key-two").await.unwrap(),
        (queued.clone(), false)
    );
    assert_eq!(get(&mut client, &queued).await.queue_position, 0);

    // Queued: cancelled at once, and its place is free again.
    let job = client
        .cancel_job(CancelJobRequest {
            job_id: queued.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(job.state(), JobState::Cancelled);
    assert_eq!(kinds(&watch(&mut client, &queued).await), ["cancelled"]);
    let (next, _) = submit(&mut client, params("three"), "").await.unwrap();

    // Running: the denoise call is dropped within a step.
    let mut watch_running = client
        .watch_job(WatchJobRequest {
            job_id: running.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    wait_until(|| stages.denoising.load(Ordering::SeqCst) == 1).await;
    let job = client
        .cancel_job(CancelJobRequest {
            job_id: running.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(job.state(), JobState::Cancelled);
    let mut last = None;
    while let Some(event) = watch_running.message().await.unwrap() {
        last = Some(event);
    }
    assert!(matches!(
        last.and_then(|e| e.kind),
        Some(job_event::Kind::Cancelled(_))
    ));
    wait_until(|| stages.denoise_dropped.load(Ordering::SeqCst)).await;
    // Cancelling again is harmless; a finished job cannot be cancelled.
    let again = client
        .cancel_job(CancelJobRequest {
            job_id: running.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.state(), JobState::Cancelled);

    // The freed worker takes the next job.
    wait_for_state(&mut client, &next, JobState::Running).await;
    client
        .cancel_job(CancelJobRequest { job_id: next })
        .await
        .unwrap();
    server.shutdown().await.unwrap();
}

async fn wait_until(condition: impl Fn() -> bool) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached");
}

#[tokio::test]
async fn idempotency_keys_return_the_first_job() {
    let dir = tempfile::tempdir().unwrap();
    let stages = FakeStages::new(1, Duration::ZERO);
    let server = TestServer::start(stages.clone(), dir.path(), &[]).await;
    let mut client = server.client().await;
    let (first, created) = submit(&mut client, params("a"), "k1").await.unwrap();
    assert!(created);
    let (again, created) = submit(&mut client, params("something else"), "k1")
        .await
        .unwrap();
    assert_eq!((again.as_str(), created), (first.as_str(), false));
    let (other, created) = submit(&mut client, params("a"), "k2").await.unwrap();
    assert!(created && other != first);
    let (unkeyed, created) = submit(&mut client, params("a"), "").await.unwrap();
    assert!(created && unkeyed != first);
    let long = submit(&mut client, params("a"), &"k".repeat(129))
        .await
        .unwrap_err();
    assert_eq!(long.code(), Code::InvalidArgument);
    assert!(
        long.message().starts_with("idempotency_key: "),
        "{}",
        long.message()
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn every_invalid_field_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(FakeStages::new(1, Duration::ZERO), dir.path(), &[]).await;
    let mut client = server.client().await;
    let rcm = |r: RcmSampler| Some(Sampler::Rcm(r));
    let flow = |f: FlowSampler| Some(Sampler::Flow(f));
    let sla = |a: Attention| {
        Some(Attention {
            mode: turbine_proto::v1::AttentionMode::Sla as i32,
            ..a
        })
    };
    let p = || params("ok");
    let cases: Vec<(Option<GenerationParams>, &str)> = vec![
        (None, "params: "),
        (
            Some(GenerationParams {
                prompt: "  \t".into(),
                ..p()
            }),
            "prompt: ",
        ),
        (
            Some(GenerationParams {
                prompt: "x".repeat(20_000),
                ..p()
            }),
            "prompt: ",
        ),
        (
            Some(GenerationParams {
                negative_prompt: "x".repeat(20_000),
                ..p()
            }),
            "negative_prompt: ",
        ),
        (Some(GenerationParams { width: 100, ..p() }), "width: "),
        (Some(GenerationParams { width: 4096, ..p() }), "width: "),
        (Some(GenerationParams { height: 8, ..p() }), "height: "),
        (
            Some(GenerationParams {
                height: 8192,
                ..p()
            }),
            "height: ",
        ),
        (Some(GenerationParams { frames: 4, ..p() }), "frames: "),
        (
            Some(GenerationParams {
                frames: 2000,
                ..p()
            }),
            "frames: ",
        ),
        (
            Some(GenerationParams {
                fps: Some(0.5),
                ..p()
            }),
            "fps: ",
        ),
        (
            Some(GenerationParams {
                fps: Some(f64::INFINITY),
                ..p()
            }),
            "fps: ",
        ),
        (
            Some(GenerationParams {
                sampler: rcm(RcmSampler {
                    steps: 5,
                    ..Default::default()
                }),
                ..p()
            }),
            "rcm.steps: ",
        ),
        (
            Some(GenerationParams {
                sampler: rcm(RcmSampler {
                    sigma_max: Some(0.0),
                    ..Default::default()
                }),
                ..p()
            }),
            "rcm.sigma_max: ",
        ),
        (
            Some(GenerationParams {
                sampler: flow(FlowSampler {
                    steps: 1001,
                    ..Default::default()
                }),
                ..p()
            }),
            "flow.steps: ",
        ),
        (
            Some(GenerationParams {
                sampler: flow(FlowSampler {
                    shift: Some(-1.0),
                    ..Default::default()
                }),
                ..p()
            }),
            "flow.shift: ",
        ),
        (
            Some(GenerationParams {
                sampler: flow(FlowSampler {
                    guidance: Some(0.9),
                    ..Default::default()
                }),
                ..p()
            }),
            "flow.guidance: ",
        ),
        (
            Some(GenerationParams {
                sampler: flow(FlowSampler {
                    solver: 42,
                    ..Default::default()
                }),
                ..p()
            }),
            "flow.solver: ",
        ),
        (
            Some(GenerationParams {
                attention: Some(Attention {
                    mode: 9,
                    ..Default::default()
                }),
                ..p()
            }),
            "attention.mode: ",
        ),
        (
            Some(GenerationParams {
                attention: sla(Attention {
                    topk: Some(0.0),
                    ..Default::default()
                }),
                ..p()
            }),
            "attention.topk: ",
        ),
        (
            Some(GenerationParams {
                attention: sla(Attention {
                    block_q: Some(0),
                    ..Default::default()
                }),
                ..p()
            }),
            "attention.block_q: ",
        ),
        (
            Some(GenerationParams {
                attention: sla(Attention {
                    block_k: Some(0),
                    ..Default::default()
                }),
                ..p()
            }),
            "attention.block_k: ",
        ),
    ];
    for (params, prefix) in cases {
        let status = client
            .submit_job(SubmitJobRequest {
                params: params.clone(),
                idempotency_key: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{prefix}: {}",
            status.message()
        );
        assert!(
            status.message().starts_with(prefix),
            "{prefix}: {}",
            status.message()
        );
        let status = client
            .generate(GenerateRequest { params })
            .await
            .unwrap_err();
        assert!(
            status.message().starts_with(prefix),
            "{prefix}: {}",
            status.message()
        );
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn unknown_jobs_are_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(FakeStages::new(1, Duration::ZERO), dir.path(), &[]).await;
    let mut client = server.client().await;
    let id = "0123456789abcdef0123456789abcdef".to_string();
    let codes = [
        client
            .get_job(GetJobRequest { job_id: id.clone() })
            .await
            .unwrap_err(),
        client
            .watch_job(WatchJobRequest { job_id: id.clone() })
            .await
            .unwrap_err(),
        client
            .cancel_job(CancelJobRequest { job_id: id.clone() })
            .await
            .unwrap_err(),
        client
            .get_artifact(GetArtifactRequest { job_id: id.clone() })
            .await
            .unwrap_err(),
    ];
    for status in codes {
        assert_eq!(status.code(), Code::NotFound, "{}", status.message());
        assert!(status.message().contains(&id));
    }
    let empty = client
        .get_job(GetJobRequest {
            job_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    assert!(empty.message().starts_with("job_id: "));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn artifacts_wait_for_success_and_are_evicted_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let stages = FakeStages::new(1, Duration::ZERO);
    // Each tiny MP4 is about 1–2 KB: a 1-byte cap keeps only the newest.
    let server =
        TestServer::start(stages.clone(), dir.path(), &["--artifact-max-bytes", "1"]).await;
    let mut client = server.client().await;

    let (first, _) = submit(&mut client, params("first"), "").await.unwrap();
    assert_eq!(
        kinds(&watch(&mut client, &first).await).last(),
        Some(&"done")
    );
    assert!(!artifact_bytes(&mut client, &first).await.is_empty());
    let (second, _) = submit(&mut client, params("second"), "").await.unwrap();
    watch(&mut client, &second).await;
    let evicted = client
        .get_artifact(GetArtifactRequest {
            job_id: first.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(evicted.code(), Code::NotFound);
    assert!(
        evicted.message().contains("evicted"),
        "{}",
        evicted.message()
    );
    assert!(!artifact_bytes(&mut client, &second).await.is_empty());
    assert!(!dir.path().join(format!("{first}.mp4")).exists());

    // The same prompt again: the text encoder is not called.
    let encodes = stages.encodes.load(Ordering::SeqCst);
    let (third, _) = submit(&mut client, params("second"), "").await.unwrap();
    watch(&mut client, &third).await;
    assert_eq!(stages.encodes.load(Ordering::SeqCst), encodes);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn artifacts_of_unfinished_jobs_are_a_failed_precondition() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(
        FakeStages::new(1000, Duration::from_millis(50)),
        dir.path(),
        &[],
    )
    .await;
    let mut client = server.client().await;
    let (job_id, _) = submit(&mut client, params("slow"), "").await.unwrap();
    let status = client
        .get_artifact(GetArtifactRequest {
            job_id: job_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::FailedPrecondition,
        "{}",
        status.message()
    );
    client
        .cancel_job(CancelJobRequest { job_id })
        .await
        .unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn jobs_are_listed_newest_first_in_pages() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(
        FakeStages::new(1000, Duration::from_millis(50)),
        dir.path(),
        &["--queue-capacity", "10", "--drain-timeout", "100ms"],
    )
    .await;
    let mut client = server.client().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            submit(&mut client, params(&format!("p{i}")), "")
                .await
                .unwrap()
                .0,
        );
    }
    let mut listed = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_jobs(ListJobsRequest {
                page_size: 2,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.jobs.len() <= 2);
        listed.extend(page.jobs.into_iter().map(|j| j.job_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    ids.reverse();
    assert_eq!(listed, ids);
    let bad = client
        .list_jobs(ListJobsRequest {
            page_size: 500,
            page_token: "not a token".into(),
        })
        .await
        .unwrap_err();
    assert!(bad.message().starts_with("page_token: "));
    let all = client
        .list_jobs(ListJobsRequest {
            page_size: 500,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.jobs.len(), 5);
    let models = client
        .list_models(ListModelsRequest {})
        .await
        .unwrap()
        .into_inner()
        .models;
    assert_eq!(models.len(), 1);
    assert_eq!(
        (
            models[0].default_width,
            models[0].default_height,
            models[0].default_frames
        ),
        (832, 480, 81)
    );
    // Shutdown fails the queued jobs and, past the drain timeout, the running one.
    let drained = tokio::spawn(server.shutdown());
    drained.await.unwrap().unwrap();
}

#[tokio::test]
async fn generate_streams_events_then_the_video() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(FakeStages::new(2, Duration::ZERO), dir.path(), &[]).await;
    let mut client = server.client().await;
    let mut stream = client
        .generate(GenerateRequest {
            params: Some(params("all at once")),
        })
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::new();
    let mut video = Vec::new();
    let mut size = None;
    while let Some(message) = stream.message().await.unwrap() {
        match message.kind.unwrap() {
            generate_event::Kind::Event(e) => {
                assert!(video.is_empty(), "events come before the video");
                events.push(e);
            }
            generate_event::Kind::Artifact(chunk) => {
                if let Some(a) = chunk.artifact {
                    size = Some(a.size_bytes);
                }
                video.extend_from_slice(&chunk.data);
            }
        }
    }
    assert_eq!(kinds(&events).last(), Some(&"done"));
    assert_eq!(Some(video.len() as u64), size);
    assert_eq!(&video[4..8], b"ftyp");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_drains_running_jobs_and_fails_queued_ones() {
    let dir = tempfile::tempdir().unwrap();
    let stages = FakeStages::new(5, Duration::from_millis(100));
    let server = TestServer::start(stages, dir.path(), &["--drain-timeout", "30s"]).await;
    let mut client = server.client().await;
    let (running, _) = submit(&mut client, params("runs"), "").await.unwrap();
    wait_for_state(&mut client, &running, JobState::Running).await;
    let (queued, _) = submit(&mut client, params("waits"), "").await.unwrap();
    let mut watch_running = client
        .watch_job(WatchJobRequest {
            job_id: running.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut watch_queued = client
        .watch_job(WatchJobRequest {
            job_id: queued.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let drained = tokio::spawn(server.shutdown());
    let mut last_queued = None;
    while let Some(e) = watch_queued.message().await.unwrap() {
        last_queued = e.kind;
    }
    let Some(job_event::Kind::Failed(error)) = last_queued else {
        panic!("queued job not failed: {last_queued:?}");
    };
    assert_eq!(error.code, Code::Unavailable as i32);
    let mut last_running = None;
    while let Some(e) = watch_running.message().await.unwrap() {
        last_running = e.kind;
    }
    assert!(
        matches!(last_running, Some(job_event::Kind::Done(_))),
        "{last_running:?}"
    );
    drained.await.unwrap().unwrap();
}

#[tokio::test]
async fn health_follows_the_stages_and_reflection_lists_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let stages = FakeStages::new(1, Duration::ZERO);
    stages.unready.store(true, Ordering::SeqCst);
    let server =
        TestServer::start(stages.clone(), dir.path(), &["--health-interval", "20ms"]).await;
    let channel = turbine_rpc::testing::connect(server.addr).await;
    const NAME: &str = "turbine.v1.Orchestrator";
    for service in [NAME, ""] {
        assert_eq!(health(&channel, service).await, ServingStatus::NotServing);
    }
    stages.unready.store(false, Ordering::SeqCst);
    turbine_rpc::testing::wait_serving(&channel, NAME, Duration::from_secs(5)).await;
    stages.unready.store(true, Ordering::SeqCst);
    for _ in 0..500 {
        if health(&channel, NAME).await == ServingStatus::NotServing {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(health(&channel, NAME).await, ServingStatus::NotServing);
    let (v1, v1alpha) = turbine_rpc::testing::reflected_services(&channel).await;
    for list in [v1, v1alpha] {
        assert!(list.iter().any(|s| s == NAME), "{list:?}");
        assert!(
            list.iter().any(|s| s == "grpc.health.v1.Health"),
            "{list:?}"
        );
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_generate_caller_leaving_cancels_its_job() {
    let dir = tempfile::tempdir().unwrap();
    let stages = FakeStages::new(1000, Duration::from_millis(20));
    let server = TestServer::start(stages.clone(), dir.path(), &[]).await;
    let mut client = server.client().await;
    let mut stream = client
        .generate(GenerateRequest {
            params: Some(params("walks away")),
        })
        .await
        .unwrap()
        .into_inner();
    let mut job_id = None;
    while let Some(message) = stream.message().await.unwrap() {
        if let Some(generate_event::Kind::Event(JobEvent {
            job_id: id,
            kind: Some(job_event::Kind::Progress(_)),
        })) = message.kind
        {
            job_id = Some(id);
            break;
        }
    }
    drop(stream);
    let job_id = job_id.expect("progress before leaving");
    wait_for_state(&mut client, &job_id, JobState::Cancelled).await;
    wait_until(|| stages.denoise_dropped.load(Ordering::SeqCst)).await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn frames_replayed_by_a_retried_decode_are_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let stages = Arc::new(FakeStages {
        steps: 1,
        decode_replays: true,
        ..FakeStages::default()
    });
    let server = TestServer::start(stages, dir.path(), &[]).await;
    let mut client = server.client().await;
    let (job_id, _) = submit(&mut client, params("again"), "").await.unwrap();
    let events = watch(&mut client, &job_id).await;
    let Some(job_event::Kind::Done(done)) = &events.last().unwrap().kind else {
        panic!("{events:?}");
    };
    assert_eq!(done.artifact.as_ref().unwrap().frames, 5);
    server.shutdown().await.unwrap();
}
