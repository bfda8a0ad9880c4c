//! `turbine-orchestrator`: see [`turbine_orchestrator::Config`] for the flags.

use clap::Parser;
use tokio::net::TcpListener;
use turbine_orchestrator::Config;
use turbine_rpc::server::shutdown_signal;

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
