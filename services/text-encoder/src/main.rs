//! `turbine-text-encoder`: the umT5 stage as a gRPC server.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use turbine_rpc::device::{DeviceArgs, OnBackend, QuantArg, serve_on};
use turbine_rpc::server::{ModelArgs, ServeArgs, run_stage};
use turbine_tensor::Backend;
use turbine_text_encoder::{TextEncoderService, load};

/// Serves turbine.v1.TextEncoder: prompt -> umT5 context.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "TURBINE_LISTEN", default_value = "0.0.0.0:50061")]
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
        run_stage(
            self.listen,
            &self.serve,
            "text-encoder",
            move || load(backend, &source),
            |worker, metrics| TextEncoderService::new(worker, metrics).into_service(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_consistent_and_a_model_is_required() {
        turbine_rpc::testing::check_stage_flags("turbine-text-encoder", |args: &Args| &args.serve);
    }
}
