//! What the tests do with a running cluster: submit, watch, download, scrape `/metrics`, and
//! render the same request with the embedded pipeline (`turbine generate`).

use std::io::{Read as _, Seek as _, SeekFrom};
use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::transport::Channel;
use turbine_proto::v1::orchestrator_client::OrchestratorClient;
use turbine_proto::v1::{
    Artifact, AttentionMode, FlowSolver, GenerationParams, GetArtifactRequest, JobEvent,
    SubmitJobRequest, WatchJobRequest, generation_params::Sampler, job_event,
};

use crate::binaries::binaries;

/// The longest any job of these tests may take, watching included.
pub const JOB_TIMEOUT: Duration = Duration::from_secs(120);

/// Submits `params`; returns the job id.
pub async fn submit(client: &mut OrchestratorClient<Channel>, params: &GenerationParams) -> String {
    client
        .submit_job(SubmitJobRequest {
            params: Some(params.clone()),
            idempotency_key: String::new(),
        })
        .await
        .unwrap_or_else(|status| panic!("SubmitJob({params:?}) failed: {status:?}"))
        .into_inner()
        .job_id
}

/// Opens WatchJob on `job_id`.
pub async fn watch(
    client: &mut OrchestratorClient<Channel>,
    job_id: &str,
) -> tonic::Streaming<JobEvent> {
    client
        .watch_job(WatchJobRequest {
            job_id: job_id.to_string(),
        })
        .await
        .unwrap_or_else(|status| panic!("WatchJob({job_id}) failed: {status:?}"))
        .into_inner()
}

/// The next event of a watch stream; `None` once it ended. Fails after [`JOB_TIMEOUT`].
pub async fn next_event(events: &mut tonic::Streaming<JobEvent>) -> Option<JobEvent> {
    tokio::time::timeout(JOB_TIMEOUT, events.message())
        .await
        .unwrap_or_else(|_| panic!("no job event for {JOB_TIMEOUT:?}"))
        .unwrap_or_else(|status| panic!("WatchJob stream failed: {status:?}"))
}

/// Reads a watch stream to its end.
pub async fn rest_of(events: &mut tonic::Streaming<JobEvent>) -> Vec<JobEvent> {
    let mut all = Vec::new();
    while let Some(event) = next_event(events).await {
        all.push(event);
    }
    all
}

/// Watches `job_id` from now to its final event.
pub async fn watch_to_end(client: &mut OrchestratorClient<Channel>, job_id: &str) -> Vec<JobEvent> {
    let mut events = watch(client, job_id).await;
    rest_of(&mut events).await
}

/// The kinds of `events`, in order.
pub fn kinds(events: &[JobEvent]) -> Vec<&job_event::Kind> {
    events.iter().filter_map(|e| e.kind.as_ref()).collect()
}

/// The final event's `Done`, or a failure naming what happened instead.
pub fn done(events: &[JobEvent]) -> &turbine_proto::v1::Done {
    match events.last().and_then(|e| e.kind.as_ref()) {
        Some(job_event::Kind::Done(done)) => done,
        other => panic!("the job did not succeed: last event {other:?}"),
    }
}

/// GetArtifact: the artifact description of the first chunk and the whole file, with every
/// chunk's offset checked.
pub async fn download(
    client: &mut OrchestratorClient<Channel>,
    job_id: &str,
) -> (Artifact, Vec<u8>) {
    let mut chunks = client
        .get_artifact(GetArtifactRequest {
            job_id: job_id.to_string(),
        })
        .await
        .unwrap_or_else(|status| panic!("GetArtifact({job_id}) failed: {status:?}"))
        .into_inner();
    let mut artifact = None;
    let mut bytes = Vec::new();
    let mut first = true;
    while let Some(chunk) = tokio::time::timeout(JOB_TIMEOUT, chunks.message())
        .await
        .expect("artifact chunk in time")
        .unwrap_or_else(|status| panic!("GetArtifact stream failed: {status:?}"))
    {
        assert_eq!(chunk.offset, bytes.len() as u64, "artifact chunk offset");
        if first {
            artifact = Some(
                chunk
                    .artifact
                    .expect("the first chunk carries the Artifact"),
            );
            first = false;
        } else {
            assert!(chunk.artifact.is_none(), "Artifact only in the first chunk");
        }
        bytes.extend_from_slice(&chunk.data);
    }
    (artifact.expect("at least one chunk"), bytes)
}

/// `GET /metrics` (plain HTTP/1.1 on loopback).
pub async fn scrape(addr: SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect to /metrics at {addr}: {e}"));
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("send the request");
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .expect("/metrics answered in time")
    .expect("read /metrics");
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "/metrics answered {response}"
    );
    match response.split_once("\r\n\r\n") {
        Some((_, body)) => body.to_string(),
        None => String::new(),
    }
}

/// The sum of the samples named exactly `name` (any labels) in a Prometheus exposition.
pub fn metric(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let series_name = series.split('{').next()?;
            (series_name == name).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// Denoising steps a denoiser has run (`turbine_step_seconds_count`, cancelled calls included).
pub async fn steps_run(metrics: SocketAddr) -> u64 {
    metric(&scrape(metrics).await, "turbine_step_seconds_count") as u64
}

/// `turbine generate` arguments rendering exactly `params` (which must set size, frames and seed).
pub fn cli_args(params: &GenerationParams) -> Vec<String> {
    let mut args = vec![
        "generate".to_string(),
        "--prompt".into(),
        params.prompt.clone(),
    ];
    let mut flag = |name: &str, value: String| {
        args.push(format!("--{name}"));
        args.push(value);
    };
    if !params.negative_prompt.is_empty() {
        flag("negative-prompt", params.negative_prompt.clone());
    }
    assert!(
        params.width > 0 && params.height > 0 && params.frames > 0,
        "the reference needs an explicit size"
    );
    flag("width", params.width.to_string());
    flag("height", params.height.to_string());
    flag("frames", params.frames.to_string());
    flag("fps", params.fps.unwrap_or(16.0).to_string());
    // The services compute on the CPU; the reference must too, GPU or not.
    flag("device", "cpu".into());
    flag(
        "seed",
        params.seed.expect("the reference needs a seed").to_string(),
    );
    match &params.sampler {
        None => flag("sampler", "rcm".into()),
        Some(Sampler::Rcm(rcm)) => {
            flag("sampler", if rcm.ode { "rcm-ode" } else { "rcm" }.into());
            if rcm.steps != 0 {
                flag("steps", rcm.steps.to_string());
            }
            if let Some(sigma_max) = rcm.sigma_max {
                flag("sigma-max", sigma_max.to_string());
            }
        }
        Some(Sampler::Flow(f)) => {
            let solver = match FlowSolver::try_from(f.solver) {
                Ok(FlowSolver::Euler) => "euler",
                Ok(FlowSolver::Unipc | FlowSolver::Unspecified) => "unipc",
                Err(_) => panic!("unknown solver {}", f.solver),
            };
            flag("sampler", solver.into());
            // The CLI's default of 50 steps is the proto's too.
            if f.steps != 0 {
                flag("steps", f.steps.to_string());
            }
            if let Some(shift) = f.shift {
                flag("shift", shift.to_string());
            }
            if let Some(guidance) = f.guidance {
                flag("guidance", guidance.to_string());
            }
        }
    }
    if let Some(attention) = &params.attention
        && attention.mode == AttentionMode::Sla as i32
    {
        flag("attention", "sla".into());
        if let Some(topk) = attention.topk {
            flag("sla-topk", topk.to_string());
        }
        if let Some(block_q) = attention.block_q {
            flag("sla-block-q", block_q.to_string());
        }
        if let Some(block_k) = attention.block_k {
            flag("sla-block-k", block_k.to_string());
        }
    }
    args
}

/// Runs `command` to its end with stdout and stderr collected (in files, so a chatty child never
/// blocks on a full pipe); kills it and fails after `timeout`.
///
/// std's process API, polled, rather than tokio's: tokio's `process` feature would give this
/// package a tokio build of its own instead of the services' (one more compile of the whole
/// gRPC stack in CI).
pub async fn run_to_end(mut command: Command, timeout: Duration) -> Output {
    let stdout = tempfile::tempfile().expect("temporary file");
    let stderr = tempfile::tempfile().expect("temporary file");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(stdout.try_clone().expect("clone the file handle"))
        .stderr(stderr.try_clone().expect("clone the file handle"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} ran for over {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let read = |mut file: std::fs::File| {
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(0)).expect("rewind");
        file.read_to_end(&mut bytes).expect("read the output");
        bytes
    };
    Output {
        status,
        stdout: read(stdout),
        stderr: read(stderr),
    }
}

/// The MP4 `turbine generate` (embedded pipeline, tiny preset) writes for `params`.
pub async fn reference_mp4(params: &GenerationParams) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let out = dir.path().join("reference.mp4");
    let mut args = cli_args(params);
    args.push("--out".into());
    args.push(out.display().to_string());
    let mut command = Command::new(&binaries().turbine);
    command.args(&args).env_remove("TURBINE_MODEL_DIR");
    let output = run_to_end(command, JOB_TIMEOUT).await;
    assert!(
        output.status.success(),
        "turbine {args:?} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read(&out).expect("read the reference MP4")
}

/// Where two byte strings first differ, for failure messages.
pub fn first_difference(a: &[u8], b: &[u8]) -> String {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => format!(
            "sizes {} and {}; first difference at byte {i} ({:#04x} vs {:#04x})",
            a.len(),
            b.len(),
            a[i],
            b[i]
        ),
        None if a.len() == b.len() => "identical".to_string(),
        None => format!(
            "sizes {} and {}; one is a prefix of the other",
            a.len(),
            b.len()
        ),
    }
}

/// Frames and size of an MP4's single H.264 track: `(frames, width, height)`.
pub fn mp4_video(bytes: &[u8]) -> (u32, u16, u16) {
    let reader = mp4::Mp4Reader::read_header(std::io::Cursor::new(bytes), bytes.len() as u64)
        .expect("a readable MP4");
    let tracks = reader.tracks();
    assert_eq!(tracks.len(), 1, "one track");
    let track = tracks.values().next().expect("one track");
    assert_eq!(
        track.media_type().expect("media type"),
        mp4::MediaType::H264
    );
    (track.sample_count(), track.width(), track.height())
}
