//! `turbine-vae`: the Wan VAE stage as a gRPC server.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use turbine_rpc::server::{ModelArgs, ServeArgs, run};
use turbine_rpc::worker::Worker;
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
    serve: ServeArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let source = args.model.source();
    run(args.listen, &args.serve, |metrics| {
        let worker = Worker::spawn("vae", args.serve.max_waiting, move || load(&source));
        VaeService::new(worker, metrics.clone()).into_service()
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn flags_are_consistent_and_a_model_is_required() {
        Args::command().debug_assert();
        assert!(Args::try_parse_from(["turbine-vae"]).is_err());
        assert!(Args::try_parse_from(["turbine-vae", "--tiny", "--model-dir", "/m"]).is_err());
        let args =
            Args::try_parse_from(["turbine-vae", "--tiny", "--drain-timeout", "2.5"]).unwrap();
        assert_eq!(args.serve.drain_timeout.as_millis(), 2500);
        assert!(Args::try_parse_from(["turbine-vae", "--tiny", "--drain-timeout", "-1"]).is_err());
    }
}
