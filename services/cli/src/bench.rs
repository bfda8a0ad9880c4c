//! `turbine bench`: the DiT forward timed, with seeded random weights (no files needed) or a
//! checkpoint, printed and written as JSON.
//!
//! On CUDA: forward time from CUDA events (warm-ups, then the median of `--iters`), TFLOP/s
//! against the FLOP count of shared/reference/wan.md §2, a per-op breakdown of one profiled
//! forward, weights and peak device memory; `--quant fp8` runs the blocks' linears as FP8 GEMMs
//! (H100/H200), `--quant int8` as TurboDiffusion's W8A8 INT8 GEMMs (random weights quantized at
//! load, a `-quant` checkpoint's int8 weights as they are). `--export-weights` writes the random weights as a
//! safetensors checkpoint in the original Wan layout and `--dump` the inputs and outputs at a few
//! timesteps, which tools/gpu/dit_parity.py feeds to diffusers for the parity check.
//!
//! Random weights cost no file and no upload: the CUDA backend generates the linear layers'
//! weights (nearly all the bytes) in device memory, the CPU the rest; the export holds the host
//! generator's values, which are the same bits (`turbine_tensor::seeded`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use turbine_checkpoint::TensorStore;
use turbine_checkpoint::convert::{HostView, write_safetensors};
use turbine_models::seeded::{seeded_safetensors, seeded_store};
use turbine_models::wan::{AttentionMode, WanConfig, WanModel};
use turbine_samplers::{NoiseSource, SeededNoise};
use turbine_tensor::cuda::{Precision, Quant};
use turbine_tensor::{Backend, CpuBackend, CudaBackend, CudaOptions, HostTensor, SlaParams};

#[derive(clap::Args)]
pub struct Args {
    /// Model preset: 1.3b, 14b, i2v-a14b or tiny.
    #[arg(long, default_value = "1.3b")]
    model: String,
    /// A safetensors checkpoint of that model; without it, seeded random weights.
    #[arg(long, value_name = "PATH")]
    weights: Option<PathBuf>,
    /// Seed of the random weights and of the inputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Video size: 480p (832x480), 720p (1280x720) or WIDTHxHEIGHT (multiples of 16).
    #[arg(long, default_value = "480p")]
    size: String,
    /// Video frames, 4k+1.
    #[arg(long, default_value_t = 81)]
    frames: usize,
    /// Text context tokens.
    #[arg(long, default_value_t = 512)]
    text_tokens: usize,
    #[arg(long, value_enum, default_value_t = BackendArg::Cuda)]
    backend: BackendArg,
    /// CUDA activations and weights: bf16 (f32 accumulation and residual) or f32.
    #[arg(long, value_enum, default_value_t = PrecisionArg::Bf16)]
    precision: PrecisionArg,
    /// CUDA linears of the DiT blocks (attention q/k/v/o, FFN): none (in --precision) or fp8
    /// (e4m3 weights and activations, per-channel x per-token scales; H100/H200, bf16 only) or
    /// int8 (TurboDiffusion's W8A8, 128x128 block scales; bf16 only).
    #[arg(long, value_enum, default_value_t = QuantArg::None)]
    quant: QuantArg,
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    device: usize,
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    #[arg(long, default_value_t = 5)]
    iters: usize,
    /// Write the report here as JSON (it is printed either way).
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Write the random weights here (safetensors, original Wan key layout, bf16).
    #[arg(long, value_name = "PATH")]
    export_weights: Option<PathBuf>,
    /// Write the inputs and the outputs at `--dump-timesteps` here (safetensors).
    #[arg(long, value_name = "PATH")]
    dump: Option<PathBuf>,
    #[arg(long, value_delimiter = ',', default_value = "999,500,100")]
    dump_timesteps: Vec<f64>,
    /// Self-attention: dense, sage (8-bit dense), sla or sagesla (TurboDiffusion's default). The
    /// sparse modes add random proj_l weights when the model has none.
    #[arg(long, value_enum, default_value_t = AttentionArg::Dense)]
    attention: AttentionArg,
    /// Fraction of key blocks the sparse modes keep.
    #[arg(long, default_value_t = SlaParams::DEFAULT_TOPK)]
    topk: f64,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AttentionArg {
    Dense,
    Sage,
    Sla,
    Sagesla,
}

impl Args {
    fn attention(&self) -> AttentionMode {
        match self.attention {
            AttentionArg::Dense => AttentionMode::Dense,
            AttentionArg::Sage => AttentionMode::Sage,
            AttentionArg::Sla => AttentionMode::Sla(SlaParams::sla(self.topk)),
            AttentionArg::Sagesla => AttentionMode::SageSla(SlaParams::sage(self.topk)),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BackendArg {
    Cuda,
    Cpu,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PrecisionArg {
    Bf16,
    F32,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum QuantArg {
    None,
    Fp8,
    Int8,
}

impl Args {
    /// The CUDA backend's quantization, refusing combinations that would run without it.
    fn quant(&self) -> Result<Quant> {
        match (self.quant, self.backend, self.precision) {
            (QuantArg::None, _, _) => Ok(Quant::None),
            (QuantArg::Fp8, BackendArg::Cuda, PrecisionArg::Bf16) => Ok(Quant::Fp8),
            (QuantArg::Int8, BackendArg::Cuda, PrecisionArg::Bf16) => Ok(Quant::Int8),
            (QuantArg::Fp8, BackendArg::Cpu, _) | (QuantArg::Fp8, _, PrecisionArg::F32) => {
                bail!("--quant fp8 needs --backend cuda and --precision bf16")
            }
            (QuantArg::Int8, BackendArg::Cpu, _) | (QuantArg::Int8, _, PrecisionArg::F32) => {
                bail!("--quant int8 needs --backend cuda and --precision bf16")
            }
        }
    }
}

/// What differs between backends: how a forward is timed, and what the device reports.
trait Bench: Backend + Clone {
    /// Median and minimum ms of `f` over `iters` runs after `warmup`.
    fn time(
        &self,
        warmup: usize,
        iters: usize,
        f: &mut dyn FnMut() -> turbine_tensor::Result<()>,
    ) -> Result<(f64, f64)>;
    /// Per-op device time of one run of `f`, if the backend can measure it.
    fn profile(&self, f: &mut dyn FnMut() -> turbine_tensor::Result<()>) -> Result<Value>;
    /// Device description and memory figures.
    fn device(&self) -> Value;
    /// Energy the device has used so far, in millijoules, if it can be read.
    fn energy_mj(&self) -> Option<u64>;
}

impl Bench for CudaBackend {
    fn time(
        &self,
        warmup: usize,
        iters: usize,
        f: &mut dyn FnMut() -> turbine_tensor::Result<()>,
    ) -> Result<(f64, f64)> {
        Ok(self.time_ms(warmup, iters, f)?)
    }

    fn profile(&self, f: &mut dyn FnMut() -> turbine_tensor::Result<()>) -> Result<Value> {
        self.start_profile();
        let run = f();
        let ops = self.finish_profile()?;
        run?;
        let total: f64 = ops.iter().map(|o| o.total_ms).sum();
        Ok(ops
            .iter()
            .map(|o| {
                json!({"op": o.op, "calls": o.calls, "total_ms": o.total_ms,
                       "host_ms": o.host_ms,
                       "share": o.total_ms / total.max(f64::MIN_POSITIVE)})
            })
            .collect())
    }

    fn device(&self) -> Value {
        let info = self.info();
        let pool = self.pool_stats();
        json!({
            "backend": "cuda",
            "name": info.name,
            "compute_capability": [info.compute_capability.0, info.compute_capability.1],
            "arch": info.arch,
            "driver": info.driver_version,
            "nvrtc": [info.nvrtc_version.0, info.nvrtc_version.1],
            "precision": format!("{:?}", self.precision()).to_lowercase(),
            "quant": format!("{:?}", self.quant()).to_lowercase(),
            "memory_total_bytes": info.total_memory,
            "peak_live_bytes": pool.peak_live_bytes,
            "live_bytes": pool.live_bytes,
            "power_limit_w": self.power_limit_w(),
        })
    }

    fn energy_mj(&self) -> Option<u64> {
        CudaBackend::energy_mj(self)
    }
}

impl Bench for CpuBackend {
    fn time(
        &self,
        warmup: usize,
        iters: usize,
        f: &mut dyn FnMut() -> turbine_tensor::Result<()>,
    ) -> Result<(f64, f64)> {
        for _ in 0..warmup {
            f()?;
        }
        let mut times = Vec::with_capacity(iters.max(1));
        for _ in 0..iters.max(1) {
            let start = Instant::now();
            f()?;
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        Ok((times[times.len() / 2], times[0]))
    }

    fn profile(&self, _f: &mut dyn FnMut() -> turbine_tensor::Result<()>) -> Result<Value> {
        Ok(Value::Null)
    }

    fn device(&self) -> Value {
        json!({"backend": "cpu", "threads": std::thread::available_parallelism().map_or(1, |n| n.get())})
    }

    fn energy_mj(&self) -> Option<u64> {
        None
    }
}

pub fn run(args: Args) -> Result<()> {
    let config = WanConfig::preset(&args.model)?;
    let (width, height) = parse_size(&args.size)?;
    if args.frames == 0 || !(args.frames - 1).is_multiple_of(4) {
        bail!("--frames must be 4k+1, got {}", args.frames);
    }
    if args.text_tokens == 0 {
        bail!("--text-tokens must be at least 1");
    }
    // Wan2.1 VAE: 4x temporal, 8x spatial compression.
    let latent = [
        config.out_dim,
        (args.frames - 1) / 4 + 1,
        height / 8,
        width / 8,
    ];
    let [pt, ph, pw] = config.patch_size;
    if !latent[2].is_multiple_of(ph)
        || !latent[3].is_multiple_of(pw)
        || !latent[1].is_multiple_of(pt)
    {
        bail!("--size {width}x{height} does not divide into the model's patches");
    }
    let tokens = latent[1] / pt * (latent[2] / ph) * (latent[3] / pw);
    let flops = config.forward_flops(tokens, args.text_tokens);
    let quant = args.quant()?;

    let mut shapes = config.tensor_shapes();
    if args.attention().sla().is_some() {
        shapes.extend(config.proj_l_shapes());
    }
    if let Some(path) = &args.export_weights {
        if args.weights.is_some() {
            bail!("--export-weights writes the random weights: drop --weights");
        }
        // The image is dropped before the model loads: 28.6 GB for 14B.
        std::fs::write(path, seeded_safetensors(&shapes, args.seed)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote the random weights to {}", path.display());
    }

    let load_start = Instant::now();
    let store = match &args.weights {
        Some(path) => {
            TensorStore::open(path).with_context(|| format!("weights {}", path.display()))?
        }
        None => seeded_store(&shapes, args.seed)?,
    };
    let mut report = json!({
        "model": args.model,
        "weights": args.weights.as_ref().map_or_else(|| format!("random, seed {}", args.seed), |p| p.display().to_string()),
        "video": {"width": width, "height": height, "frames": args.frames},
        "latent": latent,
        "tokens": tokens,
        "text_tokens": args.text_tokens,
        "quant": format!("{quant:?}").to_lowercase(),
        "commit": env!("TURBINE_BUILD_COMMIT"),
        "flops_per_forward": flops,
        "attention": args.attention().to_string(),
    });
    let stats = match args.backend {
        BackendArg::Cuda => {
            let precision = match args.precision {
                PrecisionArg::Bf16 => Precision::Bf16,
                PrecisionArg::F32 => Precision::F32,
            };
            let b = CudaBackend::with_options(
                args.device,
                CudaOptions {
                    precision,
                    quant,
                    ..CudaOptions::default()
                },
            )?;
            b.warm_up()?;
            measure(&b, &args, &config, store, latent, flops, load_start)?
        }
        BackendArg::Cpu => measure(
            &CpuBackend,
            &args,
            &config,
            store,
            latent,
            flops,
            load_start,
        )?,
    };
    merge(&mut report, stats);
    let text = serde_json::to_string_pretty(&report)?;
    println!("{text}");
    if let Some(path) = &args.json {
        std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Loads the model, then times (`flops` per forward), profiles and optionally dumps forwards.
fn measure<B: Bench>(
    b: &B,
    args: &Args,
    config: &WanConfig,
    store: TensorStore,
    latent: [usize; 4],
    flops: f64,
    load_start: Instant,
) -> Result<Value> {
    let weights_start = Instant::now();
    let model = WanModel::load(b.clone(), config.clone(), &store, args.attention())?;
    drop(store);
    b.synchronize()?;
    let weights_s = weights_start.elapsed().as_secs_f64();
    let load_s = load_start.elapsed().as_secs_f64();
    let weights_device = b.device();

    let mut noise = SeededNoise::new(args.seed ^ 0x5EED);
    let x = HostTensor::from_f32(latent, noise.draw(&latent)?)?;
    let ctx_shape = [args.text_tokens, config.text_dim];
    let context = HostTensor::from_f32(ctx_shape, noise.draw(&ctx_shape)?)?;
    let condition = if config.in_dim > config.out_dim {
        let shape = [
            config.in_dim - config.out_dim,
            latent[1],
            latent[2],
            latent[3],
        ];
        Some(HostTensor::from_f32(shape, noise.draw(&shape)?)?)
    } else {
        None
    };
    let xd = b.upload(&x)?;
    let cond = condition.as_ref().map(|c| b.upload(c)).transpose()?;
    let ctx = model.encode_context(&b.upload(&context)?)?;
    let mut forward = || -> turbine_tensor::Result<()> {
        model
            .forward(&xd, 500.0, &ctx, cond.as_ref())
            .map(|_| ())
            .map_err(|e| turbine_tensor::Error::Backend {
                backend: "model",
                msg: e.to_string(),
            })
    };
    // The process's first forward, timed apart: it pays for what later ones find done (a
    // cuBLASLt heuristic per GEMM shape, the pool's first allocations, the RoPE tables). Wall time
    // against the device time of its ops is the host's share.
    let first_start = Instant::now();
    let first_ops = b.profile(&mut forward)?;
    let first_wall_ms = first_start.elapsed().as_secs_f64() * 1e3;
    let first_device_ms: f64 = first_ops.as_array().map_or(0.0, |ops| {
        ops.iter().filter_map(|o| o["total_ms"].as_f64()).sum()
    });
    // The board's energy over the warm-up and timed forwards (all alike after the first): the
    // joules a forward takes, and the mean power, which at the board's limit says the forward
    // ran power-capped, at a lower clock than its kernels run alone.
    b.synchronize()?;
    let (energy_start, timed_start) = (b.energy_mj(), Instant::now());
    let (median, min) = b.time(args.warmup, args.iters, &mut forward)?;
    b.synchronize()?;
    let energy = match (energy_start, b.energy_mj()) {
        (Some(start), Some(end)) => {
            let joules = end.saturating_sub(start) as f64 / 1e3;
            json!({
                "joules_per_forward": joules / (args.warmup + args.iters.max(1)) as f64,
                "mean_power_w": joules / timed_start.elapsed().as_secs_f64(),
            })
        }
        _ => Value::Null,
    };
    let ops = b.profile(&mut forward)?;

    if let Some(path) = &args.dump {
        let mut tensors: Vec<(String, HostTensor)> =
            vec![("x".into(), x), ("context".into(), context)];
        if let Some(c) = condition {
            tensors.push(("condition".into(), c));
        }
        for (i, &t) in args.dump_timesteps.iter().enumerate() {
            let out = model.forward(&xd, t, &ctx, cond.as_ref())?;
            tensors.push((format!("out{i}"), b.download(&out)?));
        }
        let timesteps = args
            .dump_timesteps
            .iter()
            .map(f64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        write(
            path,
            &tensors,
            HashMap::from([("timesteps".into(), timesteps)]),
        )?;
    }
    Ok(json!({
        "load_s": load_s,
        "weights_s": weights_s,
        "forward": {
            "median_ms": median,
            "min_ms": min,
            "warmup": args.warmup,
            "iters": args.iters,
            "tflops": flops / (median * 1e-3) / 1e12,
            "energy": energy,
        },
        "first_forward": {
            "wall_ms": first_wall_ms,
            "device_ms": first_device_ms,
        },
        "ops": ops,
        "device_after_load": weights_device,
        "device": b.device(),
    }))
}

fn write(
    path: &Path,
    tensors: &[(String, HostTensor)],
    meta: HashMap<String, String>,
) -> Result<()> {
    write_safetensors(
        path,
        tensors.iter().map(|(n, t)| (n.clone(), HostView(t))),
        meta,
    )
    .with_context(|| format!("writing {}", path.display()))
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, from) {
        a.extend(b);
    }
}

/// `480p`, `720p` or `WxH` → (width, height), multiples of 16.
fn parse_size(size: &str) -> Result<(usize, usize)> {
    let (w, h) = match size {
        "480p" => (832, 480),
        "720p" => (1280, 720),
        other => {
            let (w, h) = other
                .split_once('x')
                .with_context(|| format!("--size must be 480p, 720p or WxH, got `{other}`"))?;
            (
                w.parse().with_context(|| format!("--size width `{w}`"))?,
                h.parse().with_context(|| format!("--size height `{h}`"))?,
            )
        }
    };
    if w == 0 || h == 0 || w % 16 != 0 || h % 16 != 0 {
        bail!("--size {w}x{h}: width and height must be positive multiples of 16");
    }
    Ok((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn quant(flags: &[&str]) -> Result<Quant> {
        let cli = <Cli as clap::Parser>::try_parse_from(
            std::iter::once("bench").chain(flags.iter().copied()),
        )?;
        cli.args.quant()
    }

    #[test]
    fn quantization_only_on_bf16_cuda() {
        assert_eq!(quant(&[]).unwrap(), Quant::None);
        assert_eq!(
            quant(&["--quant", "none", "--backend", "cpu"]).unwrap(),
            Quant::None
        );
        assert_eq!(quant(&["--quant", "fp8"]).unwrap(), Quant::Fp8);
        for flags in [
            &["--quant", "fp8", "--precision", "f32"][..],
            &["--quant", "fp8", "--backend", "cpu"],
        ] {
            let err = quant(flags).unwrap_err().to_string();
            assert!(err.contains("--quant fp8 needs"), "{flags:?}: {err}");
        }
        assert_eq!(quant(&["--quant", "int8"]).unwrap(), Quant::Int8);
        let err = quant(&["--quant", "int8", "--backend", "cpu"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--quant int8 needs"), "{err}");
        assert!(quant(&["--quant", "int4"]).is_err());
    }

    #[test]
    fn sizes_parse_and_bad_ones_are_named() {
        assert_eq!(parse_size("480p").unwrap(), (832, 480));
        assert_eq!(parse_size("64x32").unwrap(), (64, 32));
        assert!(
            parse_size("65x32")
                .unwrap_err()
                .to_string()
                .contains("multiples of 16")
        );
        assert!(
            parse_size("big")
                .unwrap_err()
                .to_string()
                .contains("--size")
        );
    }
}
