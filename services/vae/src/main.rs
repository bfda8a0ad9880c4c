//! `turbine-vae`: the Wan VAE stage as a gRPC server.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use turbine_rpc::device::{Chosen, DeviceArgs, QuantArg};
use turbine_rpc::server::{ModelArgs, ServeArgs, run_stage};
use turbine_tensor::{Backend, CpuBackend};
use turbine_vae::{VaeService, load};

/// Serves turbine.v1.Vae: streaming decode of latent frames to u8 video, and video encode.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "TURBINE_LISTEN", default_value = "0.0.0.0:50063")]
    listen: SocketAddr,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    serve: ServeArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match args.device.select(QuantArg::None) {
        Ok(Chosen::Cpu) => serve(&args, CpuBackend),
        Ok(Chosen::Cuda(backend)) => serve(&args, backend),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve<B: Backend>(args: &Args, backend: B) -> ExitCode {
    let source = args.model.source();
    run_stage(
        args.listen,
        &args.serve,
        "vae",
        move || load(backend, &source),
        |worker, metrics| VaeService::new(worker, metrics).into_service(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_consistent_and_a_model_is_required() {
        turbine_rpc::testing::check_stage_flags("turbine-vae", |args: &Args| &args.serve);
    }
}
