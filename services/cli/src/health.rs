//! `turbine health`: one grpc.health.v1 `Check`, exit status 0 only when the answer is SERVING.
//! Container healthchecks (docker compose's `healthcheck` runs a command inside the image, and the
//! images hold no shell or grpcurl) use it as their probe; so can scripts waiting for a cluster.

use std::time::Duration;

use anyhow::{Context, bail};
use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use turbine_orchestrator::config::parse_duration;

#[derive(clap::Args)]
pub struct Args {
    /// The server's address.
    #[arg(long, default_value = "http://127.0.0.1:50050")]
    addr: String,
    /// The service to ask about, e.g. `turbine.v1.Denoiser`; empty asks about the whole server.
    #[arg(long, default_value = "")]
    service: String,
    /// How long the connection and the answer may take together (e.g. `500ms`, `2s`).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    timeout: Duration,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let what = if args.service.is_empty() {
        format!("the server at {}", args.addr)
    } else {
        format!("{} at {}", args.service, args.addr)
    };
    let status = runtime
        .block_on(async {
            tokio::time::timeout(args.timeout, check(&args))
                .await
                .map_err(|_| anyhow::anyhow!("no answer within {:?}", args.timeout))?
        })
        .with_context(|| format!("checking the health of {what}"))?;
    match status {
        ServingStatus::Serving => {
            println!("{what}: SERVING");
            Ok(())
        }
        ServingStatus::NotServing | ServingStatus::Unknown | ServingStatus::ServiceUnknown => {
            bail!("{what}: {}", status.as_str_name())
        }
    }
}

async fn check(args: &Args) -> anyhow::Result<ServingStatus> {
    let channel = Endpoint::from_shared(args.addr.clone())
        .with_context(|| format!("`{}` is not an address such as http://host:port", args.addr))?
        .connect_timeout(args.timeout)
        .connect()
        .await
        .context("connecting")?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: args.service.clone(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("Health/Check: {:?}: {}", s.code(), s.message()))?;
    Ok(response.into_inner().status())
}
