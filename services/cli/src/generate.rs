//! `turbine generate`: prompt to MP4 in one process.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use turbine_media::{FrameChunk, GifConfig, GifWriter, Mp4Config, Mp4Writer, PngFrameDump};
use turbine_models::wan::AttentionMode;
use turbine_pipeline::{
    DecodeStage, DenoiseStage, Event, FrameSink, GenerateRequest, LoadReport, ModelFiles,
    ModelLoad, ModelSource, Pipeline, Report, Stage, TextStage, VideoShape,
};
use turbine_samplers::{DrawnAhead, FlowConfig, FlowSolver, RcmConfig, RcmMode, SamplerConfig};
use turbine_tensor::{Backend, CpuBackend, HostTensor, SlaParams};

use turbine_rpc::device::{Chosen, DeviceArgs, QuantArgs, TextPlacementArgs};

#[derive(clap::Args)]
pub struct Args {
    /// What the video shows.
    #[arg(long, short)]
    prompt: String,
    /// The unconditional prompt of classifier-free guidance (`unipc` / `euler` samplers with
    /// guidance > 1); rCM ignores it.
    #[arg(long, default_value = "")]
    negative_prompt: String,
    /// Output MP4 (H.264).
    #[arg(long, short, default_value = "turbine.mp4")]
    out: PathBuf,
    /// Also write an animated GIF here.
    #[arg(long, value_name = "PATH")]
    gif: Option<PathBuf>,
    /// Also write every frame as PNG into this folder.
    #[arg(long, value_name = "DIR")]
    png_dir: Option<PathBuf>,

    #[command(flatten)]
    models: ModelArgs,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    quant: QuantArgs,
    #[command(flatten)]
    text: TextPlacementArgs,

    /// Width in pixels, a multiple of 16 [default: 832, tiny preset 160].
    #[arg(long)]
    width: Option<u32>,
    /// Height in pixels, a multiple of 16 [default: 480, tiny preset 96].
    #[arg(long)]
    height: Option<u32>,
    /// Frames, 4k+1 [default: 81, tiny preset 33].
    #[arg(long)]
    frames: Option<u32>,
    /// Frames per second of the MP4 / GIF.
    #[arg(long, default_value_t = 16.0)]
    fps: f64,
    /// H.264 segments (16 frames between seek points) encoded at once [default: one per core].
    /// The file does not depend on it.
    #[arg(long, value_name = "N")]
    encoder_threads: Option<std::num::NonZeroUsize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,

    /// rCM (TurboDiffusion, 1-4 steps, no guidance; `rcm-ode` is its deterministic variant) or
    /// Wan's flow-matching samplers (`unipc`, `euler`) for the original models.
    #[arg(long, value_enum, default_value_t = SamplerArg::Rcm)]
    sampler: SamplerArg,
    /// Denoising steps [default: 4 for rCM, 50 for unipc/euler].
    #[arg(long)]
    steps: Option<usize>,
    /// rCM's initial noise level (80 for T2V, 200 for I2V upstream).
    #[arg(long, default_value_t = turbine_samplers::RcmConfig::SIGMA_MAX_T2V)]
    sigma_max: f64,
    /// Flow-matching sigma shift (unipc / euler).
    #[arg(long, default_value_t = turbine_samplers::FlowConfig::DEFAULT_SHIFT)]
    shift: f64,
    /// Classifier-free guidance scale (unipc / euler); 1 disables the negative branch.
    #[arg(long, default_value_t = turbine_samplers::FlowConfig::DEFAULT_GUIDANCE)]
    guidance: f64,

    /// Self-attention: dense, or TurboDiffusion's sparse-linear attention (sla, sagesla: needs a
    /// TurboWan checkpoint's `proj_l`); the sage modes are 8-bit on GPUs and exact on the CPU.
    #[arg(long, value_enum, default_value_t = AttentionArg::Dense)]
    attention: AttentionArg,
    /// SLA: fraction of key blocks each query block attends to (upstream 0.1; 0.15 for quality).
    #[arg(long, default_value_t = SlaParams::DEFAULT_TOPK)]
    sla_topk: f64,
    /// SLA query block size in tokens [default: 128; sagesla: 64, the only size it takes].
    #[arg(long)]
    sla_block_q: Option<usize>,
    /// SLA key block size in tokens [default: 64; sagesla: 128, the only size it takes].
    #[arg(long)]
    sla_block_k: Option<usize>,

    /// Write the run's report (sizes, timesteps, per-stage timings) as JSON here (`-` for stdout).
    #[arg(long, value_name = "PATH")]
    timings_json: Option<PathBuf>,
}

/// Model files; with none given, the bundled tiny preset runs.
#[derive(clap::Args)]
pub struct ModelArgs {
    /// A Wan / TurboWan folder: `config.json`, `diffusion_pytorch_model*.safetensors`,
    /// `models_t5_umt5-xxl-enc-bf16.safetensors`, `google/umt5-xxl/tokenizer.json`,
    /// `Wan2.1_VAE.safetensors` (convert `.pth` files with `turbine convert`). Without it the
    /// bundled tiny preset runs: seeded random weights that show the pipeline, not a picture.
    #[arg(long, env = "TURBINE_MODEL_DIR")]
    model_dir: Option<PathBuf>,
    /// DiT weights (a `.safetensors`, a sharded `*.index.json`, or a folder), overriding the folder's.
    #[arg(long, requires = "model_dir")]
    dit: Option<PathBuf>,
    /// DiT shape when there is no `config.json`: 1.3b, 14b, i2v-a14b.
    #[arg(long, requires = "model_dir")]
    dit_preset: Option<String>,
    /// umT5-XXL encoder weights (safetensors).
    #[arg(long, requires = "model_dir")]
    text_encoder: Option<PathBuf>,
    /// umT5 `tokenizer.json`.
    #[arg(long, requires = "model_dir")]
    tokenizer: Option<PathBuf>,
    /// Wan2.1 VAE weights (safetensors).
    #[arg(long, requires = "model_dir")]
    vae: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SamplerArg {
    Rcm,
    RcmOde,
    Unipc,
    Euler,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum AttentionArg {
    Dense,
    Sla,
    /// Dense with SageAttention's 8-bit numerics where the GPU has them.
    Sage,
    /// SLA with 8-bit numerics and 64 x 128 blocks (TurboDiffusion's default).
    Sagesla,
}

impl ModelArgs {
    fn source(&self) -> ModelSource {
        let Some(dir) = &self.model_dir else {
            return ModelSource::Tiny;
        };
        let mut files = ModelFiles::in_dir(dir);
        if let Some(p) = &self.dit {
            files.dit = p.clone();
        }
        if let Some(p) = &self.dit_preset {
            files.dit_preset = Some(p.clone());
        }
        if let Some(p) = &self.text_encoder {
            files.text_encoder = p.clone();
        }
        if let Some(p) = &self.tokenizer {
            files.tokenizer = p.clone();
        }
        if let Some(p) = &self.vae {
            files.vae = p.clone();
        }
        ModelSource::Files(files)
    }
}

impl Args {
    fn request(&self, tiny: bool) -> anyhow::Result<GenerateRequest> {
        let (w, h, f) = if tiny { (160, 96, 33) } else { (832, 480, 81) };
        let shape = VideoShape::new(
            self.width.unwrap_or(w),
            self.height.unwrap_or(h),
            self.frames.unwrap_or(f),
        )?;
        let sampler: SamplerConfig = match self.sampler {
            SamplerArg::Rcm | SamplerArg::RcmOde => {
                let mode = if self.sampler == SamplerArg::Rcm {
                    RcmMode::Sde
                } else {
                    RcmMode::Ode
                };
                RcmConfig::new(self.steps.unwrap_or(4), self.sigma_max, mode)?.into()
            }
            SamplerArg::Unipc | SamplerArg::Euler => {
                let solver = if self.sampler == SamplerArg::Unipc {
                    FlowSolver::UniPc
                } else {
                    FlowSolver::Euler
                };
                FlowConfig::new(self.steps.unwrap_or(50), self.shift, self.guidance, solver)?.into()
            }
        };
        let attention = match self.attention {
            AttentionArg::Dense => AttentionMode::Dense,
            AttentionArg::Sla => {
                let defaults = SlaParams::sla(self.sla_topk);
                let params = SlaParams {
                    block_q: self.sla_block_q.unwrap_or(defaults.block_q),
                    block_k: self.sla_block_k.unwrap_or(defaults.block_k),
                    ..defaults
                };
                params.validate()?;
                AttentionMode::Sla(params)
            }
            AttentionArg::Sage => AttentionMode::Sage,
            AttentionArg::Sagesla => {
                let params = SlaParams::sage(self.sla_topk);
                params.validate()?;
                let blocks = (
                    self.sla_block_q.unwrap_or(params.block_q),
                    self.sla_block_k.unwrap_or(params.block_k),
                );
                if blocks != (params.block_q, params.block_k) {
                    anyhow::bail!(
                        "--sla-block-q/--sla-block-k: SageSLA blocks are {} x {} tokens, got {} x {}",
                        params.block_q,
                        params.block_k,
                        blocks.0,
                        blocks.1
                    );
                }
                AttentionMode::SageSla(params)
            }
        };
        Ok(GenerateRequest {
            prompt: self.prompt.clone(),
            negative_prompt: self.negative_prompt.clone(),
            shape,
            seed: self.seed,
            sampler,
            attention,
        })
    }
}

/// The MP4 and the optional GIF and PNG outputs, fed chunk by chunk as the VAE decodes.
struct Outputs {
    mp4: Mp4Writer<std::io::BufWriter<std::fs::File>>,
    gif: Option<GifWriter<std::io::BufWriter<std::fs::File>>>,
    png: Option<PngFrameDump>,
}

impl Outputs {
    fn create(args: &Args, shape: &VideoShape) -> anyhow::Result<Self> {
        let (w, h) = (shape.width() as usize, shape.height() as usize);
        let mp4 = Mp4Writer::create(
            &args.out,
            w,
            h,
            Mp4Config {
                fps: args.fps,
                threads: args.encoder_threads,
                frames: Some(u64::from(shape.frames())),
                ..Mp4Config::default()
            },
        )
        .with_context(|| format!("cannot write {}", args.out.display()))?;
        let gif = match &args.gif {
            Some(path) => {
                let file = std::fs::File::create(path)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                let config = GifConfig {
                    fps: args.fps,
                    ..GifConfig::default()
                };
                Some(GifWriter::new(std::io::BufWriter::new(file), w, h, config)?)
            }
            None => None,
        };
        let png = match &args.png_dir {
            Some(dir) => Some(PngFrameDump::create(dir)?),
            None => None,
        };
        Ok(Self { mp4, gif, png })
    }
}

impl FrameSink for Outputs {
    fn push(
        &mut self,
        frames: &HostTensor,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let data = frames.f32_elements();
        let [c, n, h, w] = frames.shape[..] else {
            return Err(format!(
                "VAE output has shape {:?}, expected [3, n, H, W]",
                frames.shape
            )
            .into());
        };
        let chunk = FrameChunk::new(&data, [c, n, h, w])?;
        self.mp4.push(&chunk)?;
        if let Some(gif) = &mut self.gif {
            gif.push(&chunk)?;
        }
        if let Some(png) = &mut self.png {
            png.push(&chunk)?;
        }
        Ok(())
    }
}

/// One progress bar per stage on stderr (hidden when stderr is not a terminal).
struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    fn on(&mut self, event: &Event) {
        match event {
            Event::StageStarted { stage, units } => {
                let bar = ProgressBar::with_draw_target(
                    Some(*units as u64),
                    ProgressDrawTarget::stderr(),
                );
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>12} [{bar:30}] {pos}/{len} {msg} ({elapsed})",
                    )
                    .expect("static template")
                    .progress_chars("=> "),
                );
                bar.set_prefix(stage_name(*stage));
                self.bar = Some(bar);
            }
            Event::Step {
                index, timestep, ..
            } => {
                if let Some(bar) = &self.bar {
                    bar.set_position(*index as u64 + 1);
                    bar.set_message(format!("t={timestep}"));
                }
            }
            Event::Frames { done, .. } => {
                if let Some(bar) = &self.bar {
                    bar.set_position(*done as u64);
                }
            }
            Event::StageFinished { .. } => {
                if let Some(bar) = self.bar.take() {
                    bar.finish();
                }
            }
        }
    }
}

fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::TextEncode => "text encode",
        Stage::Denoise => "denoise",
        Stage::VaeDecode => "vae decode",
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let start = Instant::now();
    let source = args.models.source();
    let request = args.request(source == ModelSource::Tiny)?;
    if source == ModelSource::Tiny {
        eprintln!(
            "no --model-dir: running the bundled tiny preset (seeded random weights; shows the pipeline, not a picture)"
        );
    }
    let dit = args.device.select(args.quant.for_dit(&source)?)?;
    let job = Job {
        args: &args,
        source: &source,
        request: &request,
        start,
    };
    match &dit {
        Chosen::Cpu => generate_on(CpuBackend, &dit, &job),
        Chosen::Cuda(backend) => generate_on(backend.clone(), &dit, &job),
    }
}

/// What one `turbine generate` runs, and when it started.
struct Job<'a> {
    args: &'a Args,
    source: &'a ModelSource,
    request: &'a GenerateRequest,
    start: Instant,
}

/// Loads the DiT and VAE onto `backend` (the one `dit` describes), then umT5 where
/// `--text-device` puts it, and generates. The request's initial latent is drawn from the DiT's
/// load on, while the other models load.
fn generate_on<B: Backend + Clone>(backend: B, dit: &Chosen, job: &Job<'_>) -> anyhow::Result<()> {
    let denoise = DenoiseStage::load(backend.clone(), job.source).context("loading the DiT")?;
    let noise = denoise.noise(job.request);
    let decode = DecodeStage::load(backend, job.source).context("loading the VAE")?;
    let warm_gpu = matches!(dit, Chosen::Cuda(_));
    let stages = (denoise, decode, noise);
    match job.args.text.place(dit, job.source)? {
        Chosen::Cpu => run_pipeline(CpuBackend, stages, warm_gpu, false, job),
        Chosen::Cuda(b) => run_pipeline(b, stages, warm_gpu, true, job),
    }
}

/// Loads umT5 onto `text_backend` next to the loaded DiT and VAE, generates from the request's
/// noise drawn meanwhile, and writes the outputs and the report. With `warm_gpu` (the DiT and VAE
/// on a GPU), the VAE's decode and a DiT forward in the request's attention mode warm up at its
/// size while umT5 loads: their one-time costs on the GPU (kernel modules, cuDNN's and
/// cuBLASLt's plans, the memory pool's blocks) are then paid during a load that waits on host
/// memory copies, not in the request's first step. With `warm_text` (umT5 on a GPU), umT5 then
/// warms up at the prompt's token count likewise; on the CPU it has no such costs and an extra
/// encode would take seconds.
fn run_pipeline<B: Backend + Clone, T: Backend>(
    text_backend: T,
    (mut denoise, decode, noise): (DenoiseStage<B>, DecodeStage<B>, DrawnAhead),
    warm_gpu: bool,
    warm_text: bool,
    job: &Job<'_>,
) -> anyhow::Result<()> {
    let Job {
        args,
        request,
        start,
        ..
    } = *job;
    let text = std::thread::scope(|scope| {
        let warm = warm_gpu.then(|| {
            scope.spawn(|| -> anyhow::Result<()> {
                decode
                    .warm_up_decode(Some(&request.shape))
                    .context("warming up the VAE")?;
                denoise.warm_up_for(request).context("warming up the DiT")
            })
        });
        let text = TextStage::load(text_backend, job.source).context("loading the text encoder");
        if let Some(warm) = warm {
            warm.join()
                .map_err(|_| anyhow::anyhow!("the GPU warm-up panicked"))??;
        }
        text
    })?;
    if warm_text {
        text.warm_up_for(&request.prompt)
            .context("warming up the text encoder")?;
    }
    let mut pipeline = Pipeline::from_stages(text, denoise, decode)?;
    let load_s = start.elapsed().as_secs_f64();
    let loads = pipeline.load_report();

    let mut outputs = Outputs::create(args, &request.shape)?;
    let mut progress = Progress { bar: None };
    let report = pipeline.generate_from(request, noise, &mut |e| progress.on(e), &mut outputs)?;
    let encode_start = Instant::now();
    let info = outputs.mp4.finish().context("finishing the MP4")?;
    if let Some(gif) = outputs.gif {
        gif.finish().context("finishing the GIF")?;
    }
    let finish_s = encode_start.elapsed().as_secs_f64();

    print_summary(&args.out, &report, load_s, &loads, finish_s, info.bytes);
    if let Some(path) = &args.timings_json {
        write_json(
            path,
            &report,
            load_s,
            &loads,
            finish_s,
            start.elapsed().as_secs_f64(),
        )?;
    }
    Ok(())
}

/// The models of a [`LoadReport`] with their names in the summary and the JSON.
fn models(loads: &LoadReport) -> [(&'static str, &ModelLoad); 3] {
    [
        ("text_encoder", &loads.text_encoder),
        ("dit", &loads.dit),
        ("vae", &loads.vae),
    ]
}

fn print_summary(
    out: &Path,
    r: &Report,
    load_s: f64,
    loads: &LoadReport,
    finish_s: f64,
    bytes: u64,
) {
    let t = &r.timings;
    eprintln!(
        "wrote {} ({} frames, {}x{}, {} bytes)",
        out.display(),
        r.frames,
        r.width,
        r.height,
        bytes
    );
    eprintln!("  load         {load_s:8.3} s  (device set-up included)");
    for (name, m) in models(loads) {
        eprintln!(
            "    {name:<12}{:7.3} s  {:6.2} GB  {:6.2} GB/s",
            m.seconds,
            m.bytes as f64 / 1e9,
            m.gb_per_s()
        );
    }
    eprintln!("  text encode  {:8.3} s", t.text_encode_s);
    eprintln!(
        "  denoise      {:8.3} s  ({} steps)",
        t.denoise_s,
        t.steps_s.len()
    );
    eprintln!(
        "  vae decode   {:8.3} s  (first frame at {:.3} s; of which output encoding {:.3} s)",
        t.vae_decode_s,
        t.chunks.first().map_or(f64::NAN, |c| c.decoded_s),
        t.sink_s
    );
    eprintln!("  finish file  {finish_s:8.3} s");
}

fn write_json(
    path: &Path,
    r: &Report,
    load_s: f64,
    loads: &LoadReport,
    finish_s: f64,
    wall_s: f64,
) -> anyhow::Result<()> {
    let load: serde_json::Map<String, serde_json::Value> = models(loads)
        .into_iter()
        .map(|(name, m)| {
            let entry = serde_json::json!({
                "seconds": m.seconds,
                "bytes": m.bytes,
                "gb_per_s": m.gb_per_s(),
            });
            (name.to_string(), entry)
        })
        .collect();
    let json = serde_json::json!({
        "report": r,
        "load_s": load_s,
        "load": load,
        "finish_output_s": finish_s,
        "wall_s": wall_s,
    });
    let text = serde_json::to_string_pretty(&json)?;
    if path == Path::new("-") {
        println!("{text}");
    } else {
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
