//! The operational skeleton of every stage service: configuration, health, reflection, message
//! limits, the model thread pool size and graceful shutdown.
//!
//! Lifecycle: the listener is bound first and health answers `NOT_SERVING` (for the service name
//! and for `""`) while the model loads and warms up; calls meanwhile get `UNAVAILABLE`. After
//! warm-up both turn `SERVING`. On SIGTERM or SIGINT both turn `NOT_SERVING`, the listener closes,
//! in-flight calls run to their end for at most `--drain-timeout`, and the process exits 0. A
//! model that fails to load exits non-zero.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use turbine_models::wan::AttentionMode;
use turbine_pipeline::{ModelFiles, ModelSource, VideoShape};
use turbine_telemetry::{GrpcServerLayer, Metrics, TelemetryConfig};
use turbine_tensor::SlaParams;

use crate::Error;
use crate::worker::Worker;

/// Largest gRPC message a service sends or accepts. Tensor chunks carry at most 1 MiB of data
/// ([`crate::tensor::CHUNK_BYTES`]); the rest is headroom for headers and previews, far below
/// anything that would let one message pin much memory.
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;

/// HTTP/2 flow-control windows of every Turbine server and of the orchestrator's stage clients.
/// Tensors are the payload (per 480p job a text context of up to 8 MB in, 8 MB of latents and
/// ~100 MB of frames out): under hyper's defaults (1 MiB on a server) the denoiser took 20–95 ms
/// to receive an 8 MB context on loopback, 8–16 ms with these windows (H200, bench/results/
/// 2026-11-29-services.md). A stream holds at most two of [`MAX_MESSAGE_BYTES`] in flight.
pub const STREAM_WINDOW_BYTES: u32 = 16 << 20;
/// See [`STREAM_WINDOW_BYTES`]: room for two such streams on one connection.
pub const CONNECTION_WINDOW_BYTES: u32 = 32 << 20;

/// Flags every stage service takes.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Threads for model compute (the CPU backend's pool) [default: one per core].
    #[arg(long, env = "TURBINE_THREADS")]
    pub threads: Option<usize>,
    /// Seconds in-flight calls may take to finish after SIGTERM / SIGINT before the process
    /// exits anyway.
    #[arg(long, env = "TURBINE_DRAIN_TIMEOUT", value_name = "SECONDS", default_value = "30", value_parser = parse_seconds)]
    pub drain_timeout: Duration,
    /// Calls that may wait while the model runs another (FIFO); past that, calls are refused
    /// with RESOURCE_EXHAUSTED. The model runs one call at a time.
    #[arg(long, env = "TURBINE_MAX_WAITING", default_value_t = 4)]
    pub max_waiting: u16,
    /// The request size to warm the denoiser and VAE up on before serving, `WIDTHxHEIGHTxFRAMES`
    /// (e.g. 832x480x81): the first request of that size then runs as fast as the rest. Without
    /// it, the warm-up runs the smallest inputs, which only proves the model runs.
    #[arg(long, env = "TURBINE_WARM_UP_SHAPE", value_name = "WxHxF", value_parser = parse_shape)]
    pub warm_up_shape: Option<VideoShape>,
    #[command(flatten)]
    pub telemetry: TelemetryConfig,
}

/// The denoiser's warm-up attention modes.
#[derive(Debug, Clone, clap::Args)]
pub struct AttentionWarmUpArgs {
    /// Attention modes to warm the DiT up in before serving, comma-separated: dense, sage,
    /// sla[:TOPK], sagesla[:TOPK] (TOPK defaults to 0.1); each costs a forward at the warm-up
    /// shape, and a request in a mode left out pays its first-use costs (kernel loads, GEMM
    /// plans, memory blocks) [default: dense, and sagesla when the checkpoint is SLA-tuned].
    #[arg(long = "warm-up-attention", env = "TURBINE_WARM_UP_ATTENTION", value_name = "MODE[:TOPK],...", value_delimiter = ',', value_parser = parse_attention)]
    pub modes: Vec<AttentionMode>,
}

/// Which weights a stage service loads: a Wan folder, or the bundled tiny preset. One of the two
/// is required, so a misconfigured replica never serves the tiny model's noise by accident.
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct ModelArgs {
    /// A Wan / TurboWan folder in upstream's layout (`turbine convert` turns its `.pth` files
    /// into safetensors); each service reads only its own model's files.
    #[arg(long, env = "TURBINE_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,
    /// Serve the bundled tiny preset: seeded random weights for tests and demos.
    #[arg(long, env = "TURBINE_TINY")]
    pub tiny: bool,
}

impl ModelArgs {
    pub fn source(&self) -> ModelSource {
        match &self.model_dir {
            Some(dir) => ModelSource::Files(ModelFiles::in_dir(dir)),
            None => ModelSource::Tiny,
        }
    }
}

fn parse_shape(text: &str) -> Result<VideoShape, String> {
    let parts: Vec<&str> = text.split('x').collect();
    let [w, h, f] = parts[..] else {
        return Err(format!(
            "{text}: expected WIDTHxHEIGHTxFRAMES, e.g. 832x480x81"
        ));
    };
    let number = |v: &str| v.parse::<u32>().map_err(|e| format!("{text}: {v}: {e}"));
    VideoShape::new(number(w)?, number(h)?, number(f)?).map_err(|e| format!("{text}: {e}"))
}

fn parse_attention(text: &str) -> Result<AttentionMode, String> {
    let (name, topk) = match text.split_once(':') {
        Some((name, topk)) => {
            let topk: f64 = topk.parse().map_err(|e| format!("{text}: {topk}: {e}"))?;
            (name, Some(topk))
        }
        None => (text, None),
    };
    let params = |sla: fn(f64) -> SlaParams| {
        let params = sla(topk.unwrap_or(SlaParams::DEFAULT_TOPK));
        params.validate().map_err(|e| format!("{text}: {e}"))?;
        Ok(params)
    };
    match name {
        "dense" | "sage" if topk.is_some() => Err(format!("{text}: {name} takes no top-k")),
        "dense" => Ok(AttentionMode::Dense),
        "sage" => Ok(AttentionMode::Sage),
        "sla" => params(SlaParams::sla).map(AttentionMode::Sla),
        "sagesla" => params(SlaParams::sage).map(AttentionMode::SageSla),
        _ => Err(format!(
            "{text}: expected dense, sage, sla[:TOPK] or sagesla[:TOPK]"
        )),
    }
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text.parse().map_err(|e| format!("{e}"))?;
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| format!("{text} is not a number of seconds >= 0"))
}

/// A stage service ready to be served.
pub struct Service {
    /// The fully qualified gRPC service name (`turbine.v1.Denoiser`), for health and reflection.
    pub name: &'static str,
    /// The service itself, built with [`MAX_MESSAGE_BYTES`] limits.
    pub routes: Routes,
    /// Resolves once the model is loaded and warm (or failed to load).
    pub ready: Pin<Box<dyn Future<Output = crate::Result<()>> + Send>>,
}

impl Service {
    /// A stage service named `name`, served by `routes` (its server built with
    /// [`MAX_MESSAGE_BYTES`] limits) and ready once `worker` has loaded its model.
    pub fn stage<M: 'static>(name: &'static str, routes: Routes, worker: &Worker<M>) -> Self {
        let worker = worker.clone();
        Service {
            name,
            routes,
            ready: Box::pin(async move { worker.ready().await }),
        }
    }
}

/// Why a server stopped with an error. Never sent to a client.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the listener has no local address: {source}")]
    Local { source: std::io::Error },
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error(transparent)]
    Load(Error),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("telemetry: {0:#}")]
    Telemetry(anyhow::Error),
}

/// The whole life of a service binary: runtime, telemetry, compute pool, listener, serving until
/// a signal. `service` builds the service, recording into the process's metrics.
pub fn run(
    listen: SocketAddr,
    args: &ServeArgs,
    service: impl FnOnce(&Metrics) -> Service,
) -> ExitCode {
    match run_inner(listen, args, service) {
        Ok(()) => ExitCode::SUCCESS,
        // Before telemetry is up there is no logger to report through.
        Err(e @ (ServeError::Runtime(_) | ServeError::Telemetry(_))) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
        Err(
            e @ (ServeError::Bind { .. }
            | ServeError::Local { .. }
            | ServeError::Reflection(_)
            | ServeError::Transport(_)
            | ServeError::Load(_)),
        ) => {
            tracing::error!(error = %e, "service stopped");
            ExitCode::FAILURE
        }
    }
}

/// [`run`] for a stage binary: the model thread `name` loads the model with `load`, and
/// `service` builds the service around that worker, recording into the process's metrics.
pub fn run_stage<M: 'static>(
    listen: SocketAddr,
    args: &ServeArgs,
    name: &str,
    load: impl FnOnce() -> crate::Result<M> + Send + 'static,
    service: impl FnOnce(Worker<M>, Metrics) -> Service,
) -> ExitCode {
    run(listen, args, |metrics| {
        service(Worker::spawn(name, args.max_waiting, load), metrics.clone())
    })
}

fn run_inner(
    listen: SocketAddr,
    args: &ServeArgs,
    service: impl FnOnce(&Metrics) -> Service,
) -> Result<(), ServeError> {
    // The runtime only moves bytes; model work runs on the model thread and the compute pool.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    let drain = args.drain_timeout;
    runtime.block_on(async move {
        let telemetry = turbine_telemetry::init(&args.telemetry).map_err(ServeError::Telemetry)?;
        let metrics = telemetry.metrics().clone();
        if let Some(threads) = args.threads {
            // Only fails when the pool already exists, which nothing here creates earlier.
            if let Err(e) = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build_global()
            {
                tracing::warn!(error = %e, "keeping the existing compute pool");
            }
        }
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| ServeError::Bind {
                addr: listen,
                source,
            })?;
        let served = serve(
            listener,
            service(&metrics),
            metrics,
            shutdown_signal(),
            drain,
        )
        .await;
        // Spans still buffered are exported after the drain, so the last calls' traces arrive.
        if let Err(e) = telemetry.shutdown() {
            tracing::warn!(error = %e, "flushing telemetry");
        }
        served
    })
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM: draining"),
                    _ = ctrl_c => tracing::info!("SIGINT: draining"),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; SIGINT only");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
        tracing::info!("interrupted: draining");
    }
}

/// Serves `service` on `listener` with health and reflection until `shutdown` resolves, then
/// drains in-flight calls for at most `drain`. Every call gets a server span continuing its
/// caller's trace, and per-method metrics in `metrics`.
pub async fn serve(
    listener: TcpListener,
    service: Service,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send,
    drain: Duration,
) -> Result<(), ServeError> {
    let Service {
        name,
        routes,
        ready,
    } = service;
    let (health, health_service) = tonic_health::server::health_reporter();
    let set_health = |status: ServingStatus| {
        let health = health.clone();
        async move {
            for service in [name, ""] {
                health.set_service_status(service, status).await;
            }
        }
    };
    set_health(ServingStatus::NotServing).await;

    // Reflection lists what this server serves, not every service of the shared descriptor set.
    let reflection = |itself: &str| {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(turbine_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name(name)
            .with_service_name(tonic_health::pb::health_server::SERVICE_NAME)
            .with_service_name(itself)
    };
    let v1 = reflection(tonic_reflection::pb::v1::server_reflection_server::SERVICE_NAME);
    let v1alpha = reflection(tonic_reflection::pb::v1alpha::server_reflection_server::SERVICE_NAME);
    let routes = routes
        .add_service(health_service)
        .add_service(v1.build_v1()?)
        .add_service(v1alpha.build_v1alpha()?);

    let addr = listener
        .local_addr()
        .map_err(|source| ServeError::Local { source })?;
    let (stop_accepting, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = Server::builder()
        .tcp_nodelay(true)
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .layer(GrpcServerLayer::new(metrics))
        .add_routes(routes)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
            let _ = stopped.await;
        });
    tracing::info!(service = name, "listening on {addr}");

    tokio::pin!(server);
    tokio::pin!(ready);
    tokio::pin!(shutdown);
    let mut loading = true;
    loop {
        tokio::select! {
            result = &mut server => return Ok(result?),
            loaded = &mut ready, if loading => {
                loading = false;
                match loaded {
                    Ok(()) => {
                        set_health(ServingStatus::Serving).await;
                        tracing::info!(service = name, "serving");
                    }
                    Err(e) => return Err(ServeError::Load(e)),
                }
            }
            () = &mut shutdown => break,
        }
    }

    set_health(ServingStatus::NotServing).await;
    let _ = stop_accepting.send(());
    match tokio::time::timeout(drain, &mut server).await {
        Ok(result) => {
            result?;
            tracing::info!("drained; exiting");
        }
        Err(_) => tracing::warn!(
            seconds = drain.as_secs_f64(),
            "drain timeout: abandoning the calls still running"
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_shapes_parse_and_bad_ones_name_the_problem() {
        let shape = parse_shape("832x480x81").unwrap();
        assert_eq!(
            (shape.width(), shape.height(), shape.frames()),
            (832, 480, 81)
        );
        assert!(
            parse_shape("832x480")
                .unwrap_err()
                .contains("WIDTHxHEIGHTxFRAMES")
        );
        assert!(parse_shape("832x481x81").unwrap_err().contains("height"));
        assert!(parse_shape("832x480x80").unwrap_err().contains("frames"));
        assert!(parse_shape("832xabcx81").unwrap_err().contains("abc"));
    }

    #[test]
    fn warm_up_attention_modes_parse_and_bad_ones_name_the_problem() {
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            warm_up: AttentionWarmUpArgs,
        }
        let parse = |args: &[&str]| {
            <Flags as clap::Parser>::try_parse_from(["denoiser"].iter().chain(args))
                .map(|f| f.warm_up.modes)
        };
        assert_eq!(parse(&[]).unwrap(), []);
        assert_eq!(
            parse(&["--warm-up-attention", "dense,sagesla,sla:0.15,sage"]).unwrap(),
            [
                AttentionMode::Dense,
                AttentionMode::SageSla(SlaParams::sage(0.1)),
                AttentionMode::Sla(SlaParams::sla(0.15)),
                AttentionMode::Sage,
            ]
        );
        for (bad, names) in [
            ("sagesla:0", "topk"),
            ("sagesla:1.5", "topk"),
            ("sla:abc", "abc"),
            ("dense:0.1", "no top-k"),
            ("flash", "expected dense"),
        ] {
            let err = parse(&["--warm-up-attention", bad])
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains(bad) && err.contains(names), "{bad}: {err}");
        }
    }
}
