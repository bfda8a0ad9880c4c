//! Command-line and environment configuration of the orchestrator.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use turbine_telemetry::TelemetryConfig;

use crate::balance::EndpointSpec;

/// The orchestrator: public job API in front of the text encoder, denoiser and VAE services.
#[derive(Debug, Clone, Parser)]
#[command(name = "turbine-orchestrator", version)]
pub struct Config {
    /// Address the public gRPC API listens on.
    #[arg(long, env = "TURBINE_LISTEN", default_value = "0.0.0.0:50050")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub stages: StageConfig,

    #[command(flatten)]
    pub jobs: JobConfig,

    #[command(flatten)]
    pub artifacts: ArtifactConfig,

    #[command(flatten)]
    pub model: ModelConfig,

    #[command(flatten)]
    pub telemetry: TelemetryConfig,

    /// How long SIGTERM waits for running jobs to finish before cancelling them.
    #[arg(long, env = "TURBINE_DRAIN_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub drain_timeout: Duration,
}

/// Where the stage services are and how they are called.
#[derive(Debug, Clone, clap::Args)]
pub struct StageConfig {
    /// Text encoder replicas, comma-separated: `http://host:port` (one replica) or
    /// `dns://host:port` (every address the name resolves to, re-resolved periodically).
    #[arg(
        long,
        env = "TURBINE_TEXT_ENCODER",
        value_delimiter = ',',
        required = true
    )]
    pub text_encoder: Vec<EndpointSpec>,
    /// Denoiser replicas, as for `--text-encoder`.
    #[arg(long, env = "TURBINE_DENOISER", value_delimiter = ',', required = true)]
    pub denoiser: Vec<EndpointSpec>,
    /// VAE replicas, as for `--text-encoder`.
    #[arg(long, env = "TURBINE_VAE", value_delimiter = ',', required = true)]
    pub vae: Vec<EndpointSpec>,

    /// Deadline of one text-encoder call (one attempt).
    #[arg(
        long,
        env = "TURBINE_TEXT_ENCODER_TIMEOUT",
        default_value = "60s",
        value_parser = parse_duration,
    )]
    pub text_encoder_timeout: Duration,
    /// Deadline of one denoise call (one attempt), all sampling steps included: the first attempt
    /// opens while the prompts encode, so it includes the text stage too.
    #[arg(
        long,
        env = "TURBINE_DENOISER_TIMEOUT",
        default_value = "30m",
        value_parser = parse_duration,
    )]
    pub denoiser_timeout: Duration,
    /// Deadline of one VAE decode call (one attempt), from the first latent frame on.
    #[arg(long, env = "TURBINE_VAE_TIMEOUT", default_value = "10m", value_parser = parse_duration)]
    pub vae_timeout: Duration,

    /// Attempts per stage call: a call failing with UNAVAILABLE, RESOURCE_EXHAUSTED (that
    /// replica's queue is full) or a broken connection is retried on another replica until this
    /// many attempts were made. Other statuses (INVALID_ARGUMENT above all) are final.
    #[arg(
        long,
        env = "TURBINE_STAGE_ATTEMPTS",
        default_value_t = 3,
        value_parser = clap::value_parser!(u32).range(1..=10),
    )]
    pub stage_attempts: u32,
    /// TCP connect timeout to a replica.
    #[arg(
        long,
        env = "TURBINE_CONNECT_TIMEOUT",
        default_value = "5s",
        value_parser = parse_duration,
    )]
    pub connect_timeout: Duration,
    /// How long a replica that failed to connect (or reported NOT_SERVING) is avoided.
    #[arg(
        long,
        env = "TURBINE_REPLICA_BACKOFF",
        default_value = "10s",
        value_parser = parse_duration,
    )]
    pub replica_backoff: Duration,
    /// How often `dns://` endpoints are resolved again.
    #[arg(long, env = "TURBINE_DNS_REFRESH", default_value = "30s", value_parser = parse_duration)]
    pub dns_refresh: Duration,
    /// How often every replica's grpc.health.v1 status is checked.
    #[arg(
        long,
        env = "TURBINE_HEALTH_INTERVAL",
        default_value = "5s",
        value_parser = parse_duration,
    )]
    pub health_interval: Duration,
}

/// Queueing and job execution.
#[derive(Debug, Clone, clap::Args)]
pub struct JobConfig {
    /// Jobs that may wait in the queue; SubmitJob answers RESOURCE_EXHAUSTED past it.
    #[arg(
        long,
        env = "TURBINE_QUEUE_CAPACITY",
        default_value_t = 64,
        value_parser = clap::value_parser!(u32).range(1..),
    )]
    pub queue_capacity: u32,
    /// Jobs running at once (each holds one call at a time on some stage replica).
    #[arg(
        long,
        env = "TURBINE_CONCURRENT_JOBS",
        default_value_t = 1,
        value_parser = clap::value_parser!(u32).range(1..=1024),
    )]
    pub concurrent_jobs: u32,
    /// Finished jobs remembered for GetJob / ListJobs / idempotency keys; older ones (and their
    /// artifacts) are forgotten.
    #[arg(
        long,
        env = "TURBINE_JOB_HISTORY",
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u32).range(1..),
    )]
    pub job_history: u32,
    /// Prompt embeddings kept in memory, keyed by (prompt, allow_empty); 0 disables the cache.
    /// One umT5-XXL context is 16 KiB a prompt token (tokens × 4096 f32, as the text encoder
    /// sends it), 8 MiB at most.
    #[arg(long, env = "TURBINE_EMBEDDING_CACHE", default_value_t = 32)]
    pub embedding_cache: usize,
}

/// Where finished videos are kept.
#[derive(Debug, Clone, clap::Args)]
pub struct ArtifactConfig {
    /// Directory of the MP4 artifacts. Jobs live in memory, so `<job id>.mp4` files left from an
    /// earlier run are deleted at start-up.
    #[arg(long, env = "TURBINE_ARTIFACT_DIR", default_value = "artifacts")]
    pub artifact_dir: PathBuf,
    /// Total size of the stored artifacts (e.g. `10GiB`, `500MB`); the oldest are evicted past it.
    #[arg(
        long,
        env = "TURBINE_ARTIFACT_MAX_BYTES",
        default_value = "10GiB",
        value_parser = parse_bytes,
    )]
    pub artifact_max_bytes: u64,
}

/// What ListModels reports. The stage services own the weights; these flags describe them.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelConfig {
    /// Model name shown to clients.
    #[arg(long, env = "TURBINE_MODEL_NAME", default_value = "Wan2.1-T2V-1.3B")]
    pub model_name: String,
    /// DiT shape of the served model.
    #[arg(long, env = "TURBINE_MODEL_PRESET", value_enum, default_value_t = ModelPreset::T2v1_3b)]
    pub model_preset: ModelPreset,
    /// The checkpoint carries TurboDiffusion's SLA `proj_l` weights.
    #[arg(long, env = "TURBINE_MODEL_SLA")]
    pub model_sla: bool,
}

/// Wan2.1 DiT shapes (wan.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelPreset {
    #[value(name = "1.3b")]
    T2v1_3b,
    #[value(name = "14b")]
    T2v14b,
}

impl ModelPreset {
    /// `(dim, num_layers, num_heads)`.
    pub fn shape(self) -> (u32, u32, u32) {
        match self {
            ModelPreset::T2v1_3b => (1536, 30, 12),
            ModelPreset::T2v14b => (5120, 40, 40),
        }
    }
}

/// `500ms`, `30s`, `5m`, `2h`, or plain seconds (`90`, `0.5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a duration such as 500ms, 30s, 5m or 2h"))?;
    let scale = match unit {
        "ms" => 1e-3,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(value * scale).map_err(|e| format!("`{s}`: {e}"))
}

/// `1048576`, `500MB`, `10GiB` (decimal `kB`/`MB`/`GB`/`TB`, binary `KiB`/`MiB`/`GiB`/`TiB`).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a size such as 500MB or 10GiB"))?;
    let scale: f64 = match unit {
        "" | "B" => 1.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("`{s}`: unknown unit `{unit}`")),
    };
    let bytes = value * scale;
    if !(bytes.is_finite() && bytes >= 0.0 && bytes <= u64::MAX as f64) {
        return Err(format!("`{s}` is out of range"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("5 weeks").is_err());
        assert!(parse_duration("-1s").is_err());
        assert_eq!(parse_bytes("10GiB"), Ok(10 << 30));
        assert_eq!(parse_bytes("500MB"), Ok(500_000_000));
        assert_eq!(parse_bytes("123"), Ok(123));
        assert!(parse_bytes("1PB").is_err());
    }

    #[test]
    fn endpoints_and_defaults() {
        <Config as clap::CommandFactory>::command().debug_assert();
        let config = Config::try_parse_from([
            "turbine-orchestrator",
            "--text-encoder",
            "http://a:1",
            "--denoiser",
            "http://b:2,dns://denoiser.local:50051",
            "--vae",
            "dns:///vae:3",
        ])
        .unwrap();
        assert_eq!(config.stages.denoiser.len(), 2);
        assert_eq!(config.jobs.concurrent_jobs, 1);
        assert_eq!(config.stages.denoiser_timeout, Duration::from_secs(1800));
        assert!(
            Config::try_parse_from([
                "turbine-orchestrator",
                "--text-encoder",
                "ftp://a:1",
                "--denoiser",
                "http://b:2",
                "--vae",
                "http://c:3",
            ])
            .is_err()
        );
    }
}
