//! SubmitJob → WatchJob → GetArtifact through four processes, and the MP4 compared byte for byte
//! with the embedded pipeline's (`turbine generate`, same prompt, seed, size, frames, sampler).

use turbine_cluster_tests::client::{
    self, done, download, first_difference, mp4_video, reference_mp4, submit,
};
use turbine_cluster_tests::{Cluster, ClusterConfig};
use turbine_proto::v1::{
    FlowSolver, GenerationParams, GetJobRequest, JobEvent, JobState, ListJobsRequest, Stage,
    job_event,
};

use crate::{flow, params, rcm};

const STAGES: [Stage; 4] = [
    Stage::TextEncode,
    Stage::Denoise,
    Stage::VaeDecode,
    Stage::EncodeVideo,
];

/// The events on one line: `queued(0) TextEncode Denoise step0/4 … done`.
fn summary(events: &[JobEvent]) -> String {
    client::kinds(events)
        .iter()
        .map(|kind| match kind {
            job_event::Kind::Queued(q) => format!("queued({})", q.position),
            job_event::Kind::StageStarted(s) => format!("{:?}", s.stage()),
            job_event::Kind::Progress(p) => format!("step{}/{}", p.step, p.total),
            job_event::Kind::Preview(p) => format!("preview{}", p.step),
            job_event::Kind::Done(_) => "done".into(),
            job_event::Kind::Failed(e) => format!("failed({})", e.code),
            job_event::Kind::Cancelled(_) => "cancelled".into(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Checks a job's events from `Queued` on: queued at position 0, every stage started in order,
/// one progress event per step with a finite ETA, then `Done` with the artifact and one timing
/// per stage. Returns what is out of order (progress outside the denoise stage), so the test
/// still compares the videos before it fails.
fn check_events(
    events: &[JobEvent],
    job_id: &str,
    params: &GenerationParams,
    steps: u32,
) -> Vec<String> {
    let mut problems = Vec::new();
    let describe = || summary(events);
    assert!(
        events.iter().all(|e| e.job_id == job_id),
        "events of another job: {}",
        describe()
    );
    let kinds = client::kinds(events);
    assert!(
        matches!(kinds.first(), Some(job_event::Kind::Queued(q)) if q.position == 0),
        "the job was watched while queued behind the other: {}",
        describe()
    );
    let started: Vec<(usize, Stage)> = kinds
        .iter()
        .enumerate()
        .filter_map(|(i, k)| {
            if let job_event::Kind::StageStarted(s) = k {
                Some((i, s.stage()))
            } else {
                None
            }
        })
        .collect();
    assert_eq!(
        started.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        STAGES,
        "stage starts: {}",
        describe()
    );
    let (denoise_at, decode_at) = (started[1].0, started[2].0);
    let progress: Vec<(usize, &turbine_proto::v1::Progress)> = kinds
        .iter()
        .enumerate()
        .filter_map(|(i, k)| {
            if let job_event::Kind::Progress(p) = k {
                Some((i, p))
            } else {
                None
            }
        })
        .collect();
    assert_eq!(
        progress.iter().map(|(_, p)| p.step).collect::<Vec<_>>(),
        (0..steps).collect::<Vec<_>>(),
        "one progress event per step: {}",
        describe()
    );
    for (at, p) in &progress {
        if !(denoise_at < *at && *at < decode_at) {
            problems.push(format!(
                "job {job_id}: the progress event of step {}/{} came outside the denoise stage \
                 (after STAGE_VAE_DECODE started): {}",
                p.step,
                p.total,
                summary(events)
            ));
        }
        assert_eq!(p.total, steps);
        assert!(
            p.eta_seconds.is_finite() && p.eta_seconds >= 0.0,
            "ETA {p:?}"
        );
        if p.step + 1 < steps {
            assert!(p.eta_seconds > 0.0, "steps remain, yet the ETA is 0: {p:?}");
        }
        assert!(p.timestep > 0.0, "{p:?}");
    }
    let done = done(events);
    let artifact = done.artifact.as_ref().expect("Done carries the artifact");
    assert_eq!(artifact.mime_type, "video/mp4");
    assert_eq!(
        (artifact.frames, artifact.width, artifact.height),
        (params.frames, params.width, params.height)
    );
    assert_eq!(artifact.fps, 16.0);
    assert!(artifact.size_bytes > 0);
    let timed: Vec<Stage> = done.timings.iter().map(|t| t.stage()).collect();
    assert_eq!(timed, STAGES, "timings: {:?}", done.timings);
    assert!(
        done.timings
            .iter()
            .all(|t| t.seconds.is_finite() && t.seconds >= 0.0),
        "{:?}",
        done.timings
    );
    assert!(
        done.timings
            .iter()
            .find(|t| t.stage() == Stage::Denoise)
            .is_some_and(|t| t.seconds > 0.0),
        "denoising took no time: {:?}",
        done.timings
    );
    problems
}

/// Writes both videos where a developer can look at them, and says where.
fn keep_for_inspection(name: &str, cluster_mp4: &[u8], embedded_mp4: &[u8]) -> String {
    let dir = std::env::temp_dir().join("turbine-cluster-tests");
    let _ = std::fs::create_dir_all(&dir);
    let a = dir.join(format!("{name}-cluster.mp4"));
    let b = dir.join(format!("{name}-embedded.mp4"));
    let _ = std::fs::write(&a, cluster_mp4);
    let _ = std::fs::write(&b, embedded_mp4);
    format!("kept as {} and {}", a.display(), b.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_video_equals_the_embedded_pipeline_byte_for_byte() {
    let cluster = Cluster::start(ClusterConfig::default()).await;
    let mut client = cluster.client().await;

    // Classifier-free guidance: two f32 contexts (prompt and negative prompt) cross the wire.
    let guided = GenerationParams {
        negative_prompt: "blurry, low quality".into(),
        sampler: flow(FlowSolver::Unipc, 12, 5.0),
        ..params("a red fox running through fresh snow", (64, 48, 9), 7)
    };
    // The default sampler (rCM, 4 steps), 13 frames (4 latent frames streamed to the VAE).
    let distilled = GenerationParams {
        sampler: rcm(4),
        ..params(
            "a paper boat drifting down a rainy street",
            (64, 48, 13),
            11,
        )
    };
    let first = submit(&mut client, &guided).await;
    let second = submit(&mut client, &distilled).await;
    // The first job is still running (the orchestrator runs one at a time), so the second is
    // watched from its queued state on.
    let mut second_events = client::watch(&mut client, &second).await;
    let first_events = client::watch_to_end(&mut client, &first).await;
    let second_events = client::rest_of(&mut second_events).await;
    done(&first_events);
    let mut problems = check_events(&second_events, &second, &distilled, 4);

    for (name, job_id, params, events) in [
        ("guided-unipc", &first, &guided, &first_events),
        ("rcm", &second, &distilled, &second_events),
    ] {
        let (artifact, mp4) = download(&mut client, job_id).await;
        assert_eq!(
            Some(&artifact),
            done(events).artifact.as_ref(),
            "GetArtifact and Done describe the same artifact"
        );
        assert_eq!(artifact.size_bytes, mp4.len() as u64);
        assert_eq!(
            mp4_video(&mp4),
            (params.frames, params.width as u16, params.height as u16)
        );
        let job = client
            .get_job(GetJobRequest {
                job_id: job_id.clone(),
            })
            .await
            .expect("GetJob")
            .into_inner();
        assert_eq!(job.state(), JobState::Succeeded);
        assert_eq!(job.seed, params.seed.unwrap());
        assert_eq!(job.artifact.as_ref(), Some(&artifact));

        let embedded = reference_mp4(params).await;
        if mp4 != embedded {
            problems.push(format!(
                "{name}: the cluster's MP4 differs from `turbine {}`: {}; {}",
                client::cli_args(params).join(" "),
                first_difference(&mp4, &embedded),
                keep_for_inspection(name, &mp4, &embedded)
            ));
        }
    }

    let listed = client
        .list_jobs(ListJobsRequest::default())
        .await
        .expect("ListJobs")
        .into_inner();
    let ids: Vec<&str> = listed.jobs.iter().map(|j| j.job_id.as_str()).collect();
    assert_eq!(ids, [second.as_str(), first.as_str()], "newest first");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
