//! `turbine serve`: the whole cluster in one process for local use — the text encoder, denoiser
//! and VAE services on loopback ports and the orchestrator in front of them — built from the same
//! service code the separate binaries run, talking gRPC to each other as the cluster does.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use turbine_orchestrator::Config;
use turbine_orchestrator::config::{ArtifactConfig, JobConfig, ModelConfig, StageConfig};
use turbine_pipeline::ModelSource;
use turbine_rpc::device::{Chosen, DeviceArg, DeviceArgs, QuantArgs, TextPlacementArgs};
use turbine_rpc::server::{
    AttentionWarmUpArgs, ModelArgs, ServeArgs, Service, serve, shutdown_signal,
};
use turbine_rpc::worker::Worker;
use turbine_telemetry::Metrics;
use turbine_tensor::{Backend, CpuBackend};

#[derive(clap::Args)]
pub struct Args {
    /// Address of the public Orchestrator API.
    #[arg(long, env = "TURBINE_LISTEN", default_value = "127.0.0.1:50050")]
    listen: SocketAddr,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    quant: QuantArgs,
    #[command(flatten)]
    text: TextPlacementArgs,
    #[command(flatten)]
    serve: ServeArgs,
    #[command(flatten)]
    warm_up: AttentionWarmUpArgs,
    #[command(flatten)]
    jobs: JobConfig,
    #[command(flatten)]
    artifacts: ArtifactConfig,
    #[command(flatten)]
    listing: ModelConfig,
}

/// The orchestrator's stage flags, parsed from the loopback addresses of the in-process stages so
/// every other stage setting keeps its documented default.
#[derive(Parser)]
struct StageFlags {
    #[command(flatten)]
    stages: StageConfig,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run_async(args))
}

/// The three stage services, the DiT and VAE on `backend` (the one `dit` describes) and umT5
/// where `--text-device` puts it. For `auto` on a GPU, the text worker starts once the DiT and
/// VAE have loaded, so the memory they hold is known. They record into the orchestrator's
/// registry only their gRPC series: the orchestrator records each stage and step once.
async fn stage_services<B: Backend + Clone>(
    backend: B,
    dit: &Chosen,
    args: &Args,
    metrics: &Metrics,
) -> anyhow::Result<[(&'static str, Service); 3]> {
    let source = args.model.source();
    let (max_waiting, warm_up) = (args.serve.max_waiting, args.serve.warm_up_shape);
    let denoise = Worker::spawn("denoiser", max_waiting, {
        let (backend, source) = (backend.clone(), source.clone());
        let modes = args.warm_up.modes.clone();
        move || turbine_denoiser::load(backend, &source, warm_up.as_ref(), &modes)
    });
    let decode = Worker::spawn("vae", max_waiting, {
        let source = source.clone();
        move || turbine_vae::load(backend, &source, warm_up.as_ref())
    });
    if matches!(
        (args.text.text_device, dit),
        (DeviceArg::Auto, Chosen::Cuda(_))
    ) {
        // A failed load is reported by its own service; placement only needs it finished.
        let _ = tokio::join!(denoise.ready(), decode.ready());
    }
    let text = match args.text.place(dit, &source)? {
        Chosen::Cpu => text_service(CpuBackend, source, max_waiting, metrics),
        Chosen::Cuda(b) => text_service(b, source, max_waiting, metrics),
    };
    Ok([
        ("text-encoder", text),
        (
            "denoiser",
            turbine_denoiser::DenoiserService::new(denoise, metrics.rpc_only()).into_service(),
        ),
        (
            "vae",
            turbine_vae::VaeService::new(decode, metrics.rpc_only()).into_service(),
        ),
    ])
}

fn text_service<T: Backend>(
    backend: T,
    source: ModelSource,
    max_waiting: u16,
    metrics: &Metrics,
) -> Service {
    let worker = Worker::spawn("text-encoder", max_waiting, move || {
        turbine_text_encoder::load(backend, &source)
    });
    turbine_text_encoder::TextEncoderService::new(worker, metrics.rpc_only()).into_service()
}

async fn run_async(args: Args) -> anyhow::Result<()> {
    let telemetry = turbine_telemetry::init(&args.serve.telemetry)?;
    let metrics = telemetry.metrics().clone();
    let drain = args.serve.drain_timeout;

    // Stages stop after the orchestrator has drained, so its running jobs can finish.
    let stop_front = CancellationToken::new();
    let stop_stages = CancellationToken::new();
    let mut stages = Vec::new();
    let mut urls = Vec::new();
    let dit = args
        .device
        .select(args.quant.for_dit(&args.model.source())?)?;
    let services = match &dit {
        Chosen::Cpu => stage_services(CpuBackend, &dit, &args, &metrics).await?,
        Chosen::Cuda(backend) => stage_services(backend.clone(), &dit, &args, &metrics).await?,
    };
    for (name, service) in services {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .with_context(|| format!("binding a loopback port for the {name} stage"))?;
        urls.push(format!("http://{}", listener.local_addr()?));
        let (metrics, stop) = (metrics.clone(), stop_stages.clone());
        stages.push(tokio::spawn(async move {
            serve(listener, service, metrics, stop.cancelled_owned(), drain)
                .await
                .with_context(|| format!("{name} stage"))
        }));
    }

    let flags = StageFlags::try_parse_from([
        "serve",
        "--text-encoder",
        &urls[0],
        "--denoiser",
        &urls[1],
        "--vae",
        &urls[2],
    ])?;
    let config = Config {
        listen: args.listen,
        stages: flags.stages,
        jobs: args.jobs,
        artifacts: args.artifacts,
        model: args.listing,
        telemetry: args.serve.telemetry.clone(),
        drain_timeout: drain,
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    eprintln!(
        "turbine serve: Orchestrator on {} (stages on {})",
        config.listen,
        urls.join(", ")
    );
    tokio::spawn({
        let stop = stop_front.clone();
        async move {
            shutdown_signal().await;
            stop.cancel();
        }
    });
    let front =
        turbine_orchestrator::run(config, listener, metrics, stop_front.cancelled_owned()).await;
    stop_stages.cancel();
    for stage in stages {
        stage.await.context("stage task")??;
    }
    front?;
    telemetry.shutdown()
}
