//! `turbine-vae`: the Wan VAE stage as a gRPC server.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use turbine_rpc::device::{DeviceArgs, OnBackend, QuantArg, serve_on};
use turbine_rpc::server::{ModelArgs, ServeArgs, run_stage};
use turbine_tensor::Backend;
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
    let chosen = args.device.select(QuantArg::None);
    serve_on(chosen, args)
}

impl OnBackend for Args {
    fn on<B: Backend + Clone>(self, backend: B) -> ExitCode {
        let source = self.model.source();
        let warm_up = self.serve.warm_up_shape;
        run_stage(
            self.listen,
            &self.serve,
            "vae",
            move || load(backend, &source, warm_up.as_ref()),
            |worker, metrics| VaeService::new(worker, metrics).into_service(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_consistent_and_a_model_is_required() {
        turbine_rpc::testing::check_stage_flags("turbine-vae", |args: &Args| &args.serve);
    }
}
