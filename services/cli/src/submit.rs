//! `turbine submit`: one generation on a running cluster through the public API
//! (`Orchestrator.Generate`), the MP4 saved here: the smallest client of the API, for smoke tests
//! and scripts. What the server refuses is reported with its gRPC code and message.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use turbine_proto::v1::orchestrator_client::OrchestratorClient;
use turbine_proto::v1::{
    Attention, AttentionMode, FlowSampler, FlowSolver, GenerateRequest, GenerationParams,
    RcmSampler, Stage, generate_event, generation_params::Sampler, job_event,
};

use crate::generate::{AttentionArg, SamplerArg};

#[derive(clap::Args)]
pub struct Args {
    /// The Orchestrator's address.
    #[arg(long, env = "TURBINE_SERVER", default_value = "http://127.0.0.1:50050")]
    server: String,
    /// What the video shows.
    #[arg(long, short)]
    prompt: String,
    /// The unconditional prompt of classifier-free guidance (unipc / euler).
    #[arg(long, default_value = "")]
    negative_prompt: String,
    /// Output MP4.
    #[arg(long, short, default_value = "turbine.mp4")]
    out: PathBuf,
    /// Width in pixels, a multiple of 16 [default: the server's, 832].
    #[arg(long)]
    width: Option<u32>,
    /// Height in pixels, a multiple of 16 [default: the server's, 480].
    #[arg(long)]
    height: Option<u32>,
    /// Frames, 4k+1 [default: the server's, 81].
    #[arg(long)]
    frames: Option<u32>,
    /// Frames per second of the MP4 [default: the server's, 16].
    #[arg(long)]
    fps: Option<f64>,
    /// Noise seed [default: drawn by the server].
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long, value_enum, default_value_t = SamplerArg::Rcm)]
    sampler: SamplerArg,
    /// Denoising steps [default: the server's: 4 for rCM, 50 for unipc/euler].
    #[arg(long)]
    steps: Option<u32>,
    /// Classifier-free guidance scale (unipc / euler) [default: the server's].
    #[arg(long)]
    guidance: Option<f64>,
    #[arg(long, value_enum, default_value_t = AttentionArg::Dense)]
    attention: AttentionArg,
    /// SLA / SageSLA: fraction of key blocks each query block attends to [default: 0.1].
    #[arg(long)]
    sla_topk: Option<f64>,
    /// Write the job id, the artifact and the server-side stage timings as JSON here.
    #[arg(long, value_name = "PATH")]
    timings_json: Option<PathBuf>,
}

impl Args {
    fn params(&self) -> GenerationParams {
        let steps = self.steps.unwrap_or(0);
        let sampler = match self.sampler {
            SamplerArg::Rcm | SamplerArg::RcmOde => Sampler::Rcm(RcmSampler {
                steps,
                sigma_max: None,
                ode: self.sampler == SamplerArg::RcmOde,
            }),
            SamplerArg::Unipc | SamplerArg::Euler => Sampler::Flow(FlowSampler {
                steps,
                shift: None,
                guidance: self.guidance,
                solver: if self.sampler == SamplerArg::Unipc {
                    FlowSolver::Unipc
                } else {
                    FlowSolver::Euler
                } as i32,
            }),
        };
        let mode = match self.attention {
            AttentionArg::Dense => AttentionMode::Dense,
            AttentionArg::Sla => AttentionMode::Sla,
            AttentionArg::Sage => AttentionMode::Sage,
            AttentionArg::Sagesla => AttentionMode::SageSla,
        };
        GenerationParams {
            prompt: self.prompt.clone(),
            negative_prompt: self.negative_prompt.clone(),
            width: self.width.unwrap_or(0),
            height: self.height.unwrap_or(0),
            frames: self.frames.unwrap_or(0),
            fps: self.fps,
            seed: self.seed,
            sampler: Some(sampler),
            attention: Some(Attention {
                mode: mode as i32,
                topk: self.sla_topk,
                block_q: None,
                block_k: None,
            }),
            previews: false,
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(submit(args))
}

fn stage_name(stage: i32) -> &'static str {
    match Stage::try_from(stage).unwrap_or(Stage::Unspecified) {
        Stage::TextEncode => "text encode",
        Stage::Denoise => "denoise",
        Stage::VaeDecode => "vae decode",
        Stage::EncodeVideo => "encode video",
        Stage::Unspecified => "unknown stage",
    }
}

/// Runs the call, the video going to a `.partial` file renamed into place once complete, so a
/// failed call never leaves a truncated MP4 behind.
async fn submit(args: Args) -> anyhow::Result<()> {
    let partial = args.out.with_extension("mp4.partial");
    let result = call(&args, &partial).await;
    match result {
        Ok(()) => std::fs::rename(&partial, &args.out)
            .with_context(|| format!("moving the video to {}", args.out.display())),
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

async fn call(args: &Args, partial: &Path) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut client = OrchestratorClient::connect(args.server.clone())
        .await
        .with_context(|| format!("connecting to {}", args.server))?
        .max_decoding_message_size(turbine_rpc::server::MAX_MESSAGE_BYTES);
    let mut events = client
        .generate(GenerateRequest {
            params: Some(args.params()),
        })
        .await
        .map_err(|s| anyhow::anyhow!("Generate: {:?}: {}", s.code(), s.message()))?
        .into_inner();
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(partial)
            .with_context(|| format!("creating {}", partial.display()))?,
    );
    let (mut written, mut job, mut done) = (0u64, String::new(), None);
    while let Some(event) = events
        .message()
        .await
        .map_err(|s| anyhow::anyhow!("Generate stream: {:?}: {}", s.code(), s.message()))?
    {
        match event.kind {
            Some(generate_event::Kind::Event(e)) => {
                job = e.job_id;
                match e.kind {
                    Some(job_event::Kind::Queued(q)) => {
                        eprintln!("{job}: queued at {}", q.position)
                    }
                    Some(job_event::Kind::StageStarted(s)) => {
                        eprintln!("{job}: {}", stage_name(s.stage))
                    }
                    Some(job_event::Kind::Progress(p)) => {
                        eprintln!("{job}: step {}/{}", p.step + 1, p.total)
                    }
                    Some(job_event::Kind::Done(d)) => done = Some(d),
                    Some(job_event::Kind::Failed(f)) => {
                        bail!(
                            "job {job} failed: {:?}: {}",
                            tonic::Code::from(f.code),
                            f.message
                        )
                    }
                    Some(job_event::Kind::Cancelled(_)) => bail!("job {job} was cancelled"),
                    Some(job_event::Kind::Preview(_)) | None => {}
                }
            }
            Some(generate_event::Kind::Artifact(chunk)) => {
                if chunk.offset != written {
                    bail!(
                        "artifact chunk at byte {} after {written} bytes",
                        chunk.offset
                    );
                }
                file.write_all(&chunk.data)?;
                written += chunk.data.len() as u64;
            }
            None => {}
        }
    }
    file.flush()?;
    let Some(done) = done else {
        bail!("the stream of job {job} ended without its result");
    };
    let artifact = done.artifact.unwrap_or_default();
    if artifact.size_bytes != written {
        bail!(
            "job {job}: received {written} of {} bytes",
            artifact.size_bytes
        );
    }
    let wall_s = start.elapsed().as_secs_f64();
    eprintln!(
        "wrote {} ({} frames, {}x{}, {written} bytes) in {wall_s:.3} s",
        args.out.display(),
        artifact.frames,
        artifact.width,
        artifact.height
    );
    for t in &done.timings {
        eprintln!("  {:<13}{:8.3} s", stage_name(t.stage), t.seconds);
    }
    if let Some(path) = &args.timings_json {
        let timings: serde_json::Map<String, serde_json::Value> = done
            .timings
            .iter()
            .map(|t| {
                (
                    stage_name(t.stage).replace(' ', "_") + "_s",
                    t.seconds.into(),
                )
            })
            .collect();
        let report = serde_json::json!({
            "job_id": job,
            "frames": artifact.frames,
            "width": artifact.width,
            "height": artifact.height,
            "bytes": written,
            "client_wall_s": wall_s,
            "server_timings": timings,
        });
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
