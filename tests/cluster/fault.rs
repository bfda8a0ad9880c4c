//! Faults: the denoiser replica serving a job is SIGKILLed mid-job, and a job is cancelled while
//! denoising.

use std::time::{Duration, Instant};

use turbine_cluster_tests::client::{
    self, done, download, first_difference, next_event, reference_mp4, steps_run, submit,
};
use turbine_cluster_tests::{Cluster, ClusterConfig};
use turbine_proto::v1::{
    CancelJobRequest, FlowSolver, GenerationParams, GetJobRequest, JobState, job_event,
};

use crate::{flow, params, rcm};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_serving_denoiser_moves_the_job_to_the_other_replica() {
    let cluster = Cluster::start(ClusterConfig {
        denoisers: 2,
        ..ClusterConfig::default()
    })
    .await;
    let mut client = cluster.client().await;
    // 100 guided Euler steps: a few seconds of sampling, so the kill lands mid-denoise.
    const STEPS: u64 = 100;
    let request = GenerationParams {
        sampler: flow(FlowSolver::Euler, STEPS as u32, 5.0),
        ..params("a lighthouse in a storm", (64, 48, 9), 5)
    };
    let job_id = submit(&mut client, &request).await;
    let mut events = client::watch(&mut client, &job_id).await;
    loop {
        let event = next_event(&mut events).await.expect("the job runs");
        match event.kind {
            Some(job_event::Kind::Progress(_)) => break,
            Some(job_event::Kind::Done(_) | job_event::Kind::Failed(_)) => {
                panic!("the job ended before its first step: {event:?}")
            }
            _ => {}
        }
    }

    // The replica that runs the job is the one whose step counter moved.
    let mut counts = Vec::new();
    for denoiser in &cluster.denoisers {
        counts.push(steps_run(denoiser.metrics).await);
    }
    let serving: Vec<usize> = (0..counts.len()).filter(|&i| counts[i] > 0).collect();
    assert_eq!(
        serving.len(),
        1,
        "exactly one replica samples the job; steps per replica {counts:?}"
    );
    let (victim, survivor) = (serving[0], 1 - serving[0]);
    let at_kill = steps_run(cluster.denoisers[victim].metrics).await;
    assert!(
        at_kill < STEPS,
        "denoising finished before the kill ({at_kill} steps): the job is too short to test failover"
    );
    cluster.denoisers[victim].process.kill();
    eprintln!("failover: denoiser-{victim} SIGKILLed after {at_kill} of {STEPS} steps");

    let rest = client::rest_of(&mut events).await;
    done(&rest);
    // The survivor sampled the whole job again from the start, with the same seed.
    assert_eq!(
        steps_run(cluster.denoisers[survivor].metrics).await,
        STEPS,
        "the surviving replica ran the job"
    );
    let orchestrator_log = cluster.orchestrator.process.log();
    assert!(
        orchestrator_log.contains("retrying on another replica"),
        "the orchestrator logged no retry:\n{orchestrator_log}"
    );
    let job = client
        .get_job(GetJobRequest {
            job_id: job_id.clone(),
        })
        .await
        .expect("GetJob")
        .into_inner();
    assert_eq!(job.state(), JobState::Succeeded);

    // Sampling is deterministic, so the failover changes nothing in the video.
    let (_, mp4) = download(&mut client, &job_id).await;
    let embedded = reference_mp4(&request).await;
    assert!(
        mp4 == embedded,
        "the failed-over job's MP4 differs from the embedded pipeline's: {}",
        first_difference(&mp4, &embedded)
    );
}

/// Parses `sampling stopped after {done} of {total} steps` from the denoiser's log.
fn stopped_after(line: &str) -> Option<(u64, u64)> {
    let rest = line.split("sampling stopped after ").nth(1)?;
    let mut words = rest.split_whitespace();
    let done = words.next()?.parse().ok()?;
    let _of = words.next()?;
    let total = words.next()?.parse().ok()?;
    Some((done, total))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_job_stops_its_denoiser_within_one_step() {
    let cluster = Cluster::start(ClusterConfig::default()).await;
    let denoiser = &cluster.denoisers[0];
    let mut client = cluster.client().await;
    // 300 guided UniPC steps at 256x144, about 0.1 s each: half a minute of sampling if nothing
    // stopped it.
    const STEPS: u64 = 300;
    let request = GenerationParams {
        sampler: flow(FlowSolver::Unipc, STEPS as u32, 5.0),
        ..params("a hummingbird over a flower", (256, 144, 9), 3)
    };
    let job_id = submit(&mut client, &request).await;
    let mut events = client::watch(&mut client, &job_id).await;
    let mut step_seconds = Vec::new();
    let started = Instant::now();
    while step_seconds.len() < 2 {
        let event = next_event(&mut events).await.expect("the job runs");
        match event.kind {
            Some(job_event::Kind::Progress(_)) => step_seconds.push(started.elapsed()),
            Some(job_event::Kind::Done(_) | job_event::Kind::Failed(_)) => {
                panic!("the job ended before it could be cancelled: {event:?}")
            }
            _ => {}
        }
    }

    let cancelled = client
        .cancel_job(CancelJobRequest {
            job_id: job_id.clone(),
        })
        .await
        .expect("CancelJob")
        .into_inner();
    let before = steps_run(denoiser.metrics).await;
    assert_eq!(cancelled.state(), JobState::Cancelled);

    let (stopped, total) = denoiser
        .process
        .wait_for_log(
            "that sampling stopped",
            Duration::from_secs(30),
            stopped_after,
        )
        .await;
    let after = steps_run(denoiser.metrics).await;
    eprintln!(
        "cancel: {before} steps counted after CancelJob returned, sampling stopped after {stopped} \
         of {total}; one step is {:?}",
        step_seconds[1] - step_seconds[0]
    );
    assert_eq!(total, STEPS);
    assert_eq!(
        after, stopped,
        "the step counter agrees with the denoiser's log"
    );
    assert!(
        after <= before + 1,
        "{} steps ran after the cancel ({before} before, stopped after {after}); one step is {:?}",
        after - before,
        step_seconds[1] - step_seconds[0]
    );

    let rest = client::rest_of(&mut events).await;
    assert!(
        matches!(
            rest.last().and_then(|e| e.kind.as_ref()),
            Some(job_event::Kind::Cancelled(_))
        ),
        "the watch ends with Cancelled: {:?}",
        client::kinds(&rest)
    );
    // Nothing keeps sampling in the background: the counter stays put for a few steps' time.
    tokio::time::sleep(3 * (step_seconds[1] - step_seconds[0])).await;
    assert_eq!(steps_run(denoiser.metrics).await, after);

    // The replica is free for the next job.
    let next = params("after the cancel", (64, 48, 9), 1);
    let next = GenerationParams {
        sampler: rcm(2),
        ..next
    };
    let next_id = submit(&mut client, &next).await;
    done(&client::watch_to_end(&mut client, &next_id).await);
    let job = client
        .get_job(GetJobRequest { job_id })
        .await
        .expect("GetJob")
        .into_inner();
    assert_eq!(job.state(), JobState::Cancelled);
}
