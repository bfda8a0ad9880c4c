//! `turbine-denoiser`: the DiT sampling stage as a gRPC server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use turbine_denoiser::{DenoiserService, load};
use turbine_pipeline::ModelSource;
use turbine_rpc::device::{DeviceArgs, OnBackend, QuantArgs, serve_on};
use turbine_rpc::server::{AttentionWarmUpArgs, ModelArgs, ServeArgs, run_stage};
use turbine_tensor::Backend;

/// Serves turbine.v1.Denoiser: text contexts + seed -> latents, with step progress and previews.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "TURBINE_LISTEN", default_value = "0.0.0.0:50062")]
    listen: SocketAddr,
    #[command(flatten)]
    model: ModelArgs,
    /// DiT weights (a `.safetensors`, a sharded `*.index.json`, or a folder) instead of the model
    /// folder's, e.g. a converted TurboWan checkpoint.
    #[arg(long, env = "TURBINE_DIT", requires = "model_dir")]
    dit: Option<PathBuf>,
    /// DiT shape when the weights come without `config.json`: 1.3b, 14b, i2v-a14b.
    #[arg(long, env = "TURBINE_DIT_PRESET", requires = "model_dir")]
    dit_preset: Option<String>,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    quant: QuantArgs,
    #[command(flatten)]
    serve: ServeArgs,
    #[command(flatten)]
    warm_up: AttentionWarmUpArgs,
}

impl Args {
    fn source(&self) -> ModelSource {
        match self.model.source() {
            ModelSource::Files(mut files) => {
                if let Some(dit) = &self.dit {
                    files.dit = dit.clone();
                }
                files.dit_preset = self.dit_preset.clone();
                ModelSource::Files(files)
            }
            ModelSource::Tiny => ModelSource::Tiny,
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let chosen = args
        .quant
        .for_dit(&args.source())
        .and_then(|quant| args.device.select(quant));
    serve_on(chosen, args)
}

impl OnBackend for Args {
    fn on<B: Backend + Clone>(self, backend: B) -> ExitCode {
        let source = self.source();
        let (shape, modes) = (self.serve.warm_up_shape, self.warm_up.modes);
        run_stage(
            self.listen,
            &self.serve,
            "denoiser",
            move || load(backend, &source, shape.as_ref(), &modes),
            |worker, metrics| DenoiserService::new(worker, metrics).into_service(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_consistent_and_a_model_is_required() {
        turbine_rpc::testing::check_stage_flags("turbine-denoiser", |args: &Args| &args.serve);
    }
}
