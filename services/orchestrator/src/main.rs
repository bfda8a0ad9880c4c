//! `turbine-orchestrator`: see [`turbine_orchestrator::Config`] for the flags.

use clap::Parser;
use tokio::net::TcpListener;
use turbine_orchestrator::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let telemetry = turbine_telemetry::init(&config.telemetry)?;
    let listener = TcpListener::bind(config.listen).await?;
    turbine_orchestrator::run(
        config,
        listener,
        telemetry.metrics().clone(),
        shutdown_signal(),
    )
    .await?;
    telemetry.shutdown()
}

/// SIGTERM (Kubernetes, docker stop) or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT"),
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
