//! `turbine`: the command-line entry point.

use std::io::IsTerminal as _;

use clap::{Parser, Subcommand};

mod bench;
mod convert;
mod generate;
mod health;
mod serve;
mod submit;

#[derive(Parser)]
#[command(name = "turbine", version, about = "Fast Wan2.1/2.2 video generation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a video from a prompt: text encoder, DiT sampling and VAE in this process.
    Generate(Box<generate::Args>),
    /// Run the text encoder, denoiser, VAE and orchestrator services in this process (local use).
    Serve(Box<serve::Args>),
    /// Submit one generation to a running cluster (Orchestrator.Generate) and save the MP4.
    Submit(Box<submit::Args>),
    /// Convert a PyTorch `.pth` checkpoint (torch.save zip + pickle) into safetensors.
    Convert(convert::Args),
    /// Time the DiT forward (random weights or a checkpoint) and report JSON.
    Bench(Box<bench::Args>),
    /// Ask a service's grpc.health.v1 status; exit 0 only when it is SERVING (container probes).
    Health(health::Args),
}

fn main() -> anyhow::Result<()> {
    let command = Cli::parse().command;
    // `serve` installs its own subscriber (with OTLP export when configured).
    if !matches!(command, Command::Serve(_)) {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .init();
    }
    match command {
        Command::Generate(args) => generate::run(*args),
        Command::Serve(args) => serve::run(*args),
        Command::Submit(args) => submit::run(*args),
        Command::Convert(args) => convert::run(args),
        Command::Bench(args) => bench::run(*args),
        Command::Health(args) => health::run(args),
    }
}
