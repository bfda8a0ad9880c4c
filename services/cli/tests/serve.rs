//! `turbine serve`: the four services in one process answer the public API, a `Generate` call
//! returns the same MP4 bytes as embedded `turbine generate` with the same settings, and the one
//! `/metrics` counts each step and stage once.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio_stream::StreamExt;
use turbine_proto::v1::orchestrator_client::OrchestratorClient;
use turbine_proto::v1::{
    GenerateRequest, GenerationParams, RcmSampler, generate_event, generation_params,
};

const PROMPT: &str = "a paper boat drifting down a rainy street";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The Prometheus text of `/metrics` on `port`.
fn scrape(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// Kills the server if the test fails before it is stopped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_generates_the_same_video_as_generate() {
    let dir = tempfile::tempdir().unwrap();
    let (port, metrics_port) = (free_port(), free_port());
    let mut server = Child(
        Command::new(env!("CARGO_BIN_EXE_turbine"))
            .args(["serve", "--tiny", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            // Compared byte for byte with a CPU run below, GPU or not.
            .args(["--device", "cpu"])
            .arg("--artifact-dir")
            .arg(dir.path().join("artifacts"))
            .env_remove("TURBINE_MODEL_DIR")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let channel = loop {
        match tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
        {
            Ok(c) => break c,
            Err(_) => {
                assert!(
                    server.0.try_wait().unwrap().is_none(),
                    "turbine serve exited"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    turbine_rpc::testing::wait_serving(
        &channel,
        "turbine.v1.Orchestrator",
        Duration::from_secs(120),
    )
    .await;

    let params = GenerationParams {
        prompt: PROMPT.into(),
        width: 64,
        height: 48,
        frames: 9,
        seed: Some(5),
        sampler: Some(generation_params::Sampler::Rcm(RcmSampler {
            steps: 2,
            ..Default::default()
        })),
        ..Default::default()
    };
    let mut stream = OrchestratorClient::new(channel)
        .generate(GenerateRequest {
            params: Some(params),
        })
        .await
        .unwrap()
        .into_inner();
    let mut mp4 = Vec::new();
    while let Some(event) = stream.next().await {
        if let Some(generate_event::Kind::Artifact(chunk)) = event.unwrap().kind {
            assert_eq!(chunk.offset, mp4.len() as u64);
            mp4.extend_from_slice(&chunk.data);
        }
    }
    assert!(!mp4.is_empty());
    // The stage services share the orchestrator's registry; the job's 2 steps count once.
    let metrics = scrape(metrics_port);
    for line in [
        "turbine_step_seconds_count 2",
        "turbine_stage_seconds_count{stage=\"denoise\"} 1",
        "turbine_stage_seconds_count{stage=\"vae_decode\"} 1",
        "turbine_first_frame_seconds_count 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line:?} missing from\n{metrics}"
        );
    }

    let out = Command::new(env!("CARGO_BIN_EXE_turbine"))
        .args([
            "generate", "--prompt", PROMPT, "--width", "64", "--height", "48", "--frames", "9",
        ])
        .args(["--steps", "2", "--seed", "5", "--out", "embedded.mp4"])
        .args(["--device", "cpu"])
        .current_dir(dir.path())
        .env_remove("TURBINE_MODEL_DIR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        mp4 == std::fs::read(dir.path().join("embedded.mp4")).unwrap(),
        "served and embedded videos differ"
    );

    // `turbine submit`, the CLI client of the same API, receives the same bytes, and reports
    // what the server refuses with its code and field.
    let submit = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_turbine"))
            .args(["submit", "--server", &format!("http://127.0.0.1:{port}")])
            .args(["--prompt", PROMPT, "--height", "48", "--frames", "9"])
            .args(["--steps", "2", "--seed", "5"])
            .args(extra)
            .current_dir(dir.path())
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap()
    };
    let out = submit(&["--width", "64", "--out", "submitted.mp4"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        mp4 == std::fs::read(dir.path().join("submitted.mp4")).unwrap(),
        "submitted and served videos differ"
    );
    let out = submit(&["--width", "65", "--out", "refused.mp4"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("InvalidArgument: width: 65"), "{stderr}");
    assert!(!dir.path().join("refused.mp4").exists());

    let pid = server.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || server.0.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "turbine serve exited with {status}");
}
