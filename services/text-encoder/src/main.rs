//! `turbine-text-encoder`: the umT5 stage as a gRPC server.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use turbine_rpc::server::{ModelArgs, ServeArgs, run};
use turbine_rpc::worker::Worker;
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
    serve: ServeArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let source = args.model.source();
    run(args.listen, &args.serve, |metrics| {
        let worker = Worker::spawn("text-encoder", args.serve.max_waiting, move || {
            load(&source)
        });
        TextEncoderService::new(worker, metrics.clone()).into_service()
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn flags_are_consistent_and_a_model_is_required() {
        Args::command().debug_assert();
        assert!(Args::try_parse_from(["turbine-text-encoder"]).is_err());
        assert!(
            Args::try_parse_from(["turbine-text-encoder", "--tiny", "--model-dir", "/m"]).is_err()
        );
        let args =
            Args::try_parse_from(["turbine-text-encoder", "--tiny", "--drain-timeout", "2.5"])
                .unwrap();
        assert_eq!(args.serve.drain_timeout.as_millis(), 2500);
        assert!(
            Args::try_parse_from(["turbine-text-encoder", "--tiny", "--drain-timeout", "-1"])
                .is_err()
        );
    }
}
