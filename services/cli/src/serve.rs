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
use turbine_rpc::server::{ModelArgs, ServeArgs, Service, serve, shutdown_signal};
use turbine_rpc::worker::Worker;

#[derive(clap::Args)]
pub struct Args {
    /// Address of the public Orchestrator API.
    #[arg(long, env = "TURBINE_LISTEN", default_value = "127.0.0.1:50050")]
    listen: SocketAddr,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    serve: ServeArgs,
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

async fn run_async(args: Args) -> anyhow::Result<()> {
    let telemetry = turbine_telemetry::init(&args.serve.telemetry)?;
    let metrics = telemetry.metrics().clone();
    let source = args.model.source();
    let max_waiting = args.serve.max_waiting;
    let drain = args.serve.drain_timeout;

    // Stages stop after the orchestrator has drained, so its running jobs can finish.
    let stop_front = CancellationToken::new();
    let stop_stages = CancellationToken::new();
    let mut stages = Vec::new();
    let mut urls = Vec::new();
    let services: [(&str, Service); 3] = [
        ("text-encoder", {
            let source = source.clone();
            let worker = Worker::spawn("text-encoder", max_waiting, move || {
                turbine_text_encoder::load(&source)
            });
            turbine_text_encoder::TextEncoderService::new(worker, metrics.clone()).into_service()
        }),
        ("denoiser", {
            let source = source.clone();
            let worker = Worker::spawn("denoiser", max_waiting, move || {
                turbine_denoiser::load(&source)
            });
            turbine_denoiser::DenoiserService::new(worker, metrics.clone()).into_service()
        }),
        ("vae", {
            let source = source.clone();
            let worker = Worker::spawn("vae", max_waiting, move || turbine_vae::load(&source));
            turbine_vae::VaeService::new(worker, metrics.clone()).into_service()
        }),
    ];
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
