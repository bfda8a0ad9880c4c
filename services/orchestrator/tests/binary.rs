//! The `turbine-orchestrator` binary as Kubernetes runs it: configured by flags, drained by
//! SIGTERM (the running job finishes, the process exits 0).

use std::time::Duration;

use turbine_pipeline::ModelSource;
use turbine_proto::v1::orchestrator_client::OrchestratorClient;
use turbine_proto::v1::{
    FlowSampler, GenerationParams, SubmitJobRequest, WatchJobRequest, generation_params::Sampler,
    job_event,
};
use turbine_rpc::testing::{self, Binary, wait_serving};
use turbine_rpc::worker::Worker;
use turbine_telemetry::Metrics;
use turbine_tensor::CpuBackend;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_lets_the_running_job_finish() {
    let text = Worker::spawn("text-encoder", 4, || {
        turbine_text_encoder::load(CpuBackend, &ModelSource::Tiny)
    });
    let denoise = Worker::spawn("denoiser", 4, || {
        turbine_denoiser::load(CpuBackend, &ModelSource::Tiny, None, &[])
    });
    let decode = Worker::spawn("vae", 4, || {
        turbine_vae::load(CpuBackend, &ModelSource::Tiny, None)
    });
    let text = testing::start(
        turbine_text_encoder::TextEncoderService::new(text, Metrics::default()).into_service(),
    )
    .await;
    let denoise = testing::start(
        turbine_denoiser::DenoiserService::new(denoise, Metrics::default()).into_service(),
    )
    .await;
    let decode =
        testing::start(turbine_vae::VaeService::new(decode, Metrics::default()).into_service())
            .await;
    let artifacts = tempfile::tempdir().unwrap();
    let flag = |name: &str, server: &testing::Running| format!("--{name}=http://{}", server.addr);
    let args = [
        flag("text-encoder", &text),
        flag("denoiser", &denoise),
        flag("vae", &decode),
        format!("--artifact-dir={}", artifacts.path().display()),
        "--health-interval=100ms".into(),
        "--drain-timeout=60s".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut binary = Binary::start(env!("CARGO_BIN_EXE_turbine-orchestrator"), &args);
    let channel = testing::connect(binary.addr).await;
    wait_serving(
        &channel,
        "turbine.v1.Orchestrator",
        Duration::from_secs(120),
    )
    .await;

    let mut client = OrchestratorClient::new(channel.clone());
    let params = GenerationParams {
        prompt: "a slow pan".into(),
        width: 64,
        height: 48,
        frames: 9,
        sampler: Some(Sampler::Flow(FlowSampler {
            steps: 20,
            ..FlowSampler::default()
        })),
        ..GenerationParams::default()
    };
    let job_id = client
        .submit_job(SubmitJobRequest {
            params: Some(params),
            idempotency_key: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .job_id;
    let mut events = client
        .watch_job(WatchJobRequest { job_id })
        .await
        .unwrap()
        .into_inner();
    loop {
        let event = events.message().await.unwrap().expect("events");
        if let Some(job_event::Kind::Progress(_)) = event.kind {
            break;
        }
    }
    binary.sigterm();
    let mut last = None;
    while let Some(event) = events.message().await.unwrap() {
        last = event.kind;
    }
    assert!(
        matches!(last, Some(job_event::Kind::Done(_))),
        "{last:?}\n{}",
        binary.log()
    );
    let status = binary.wait(Duration::from_secs(60));
    assert!(status.success(), "{status:?}\n{}", binary.log());
    assert!(binary.log().contains("drained"), "{}", binary.log());
}
