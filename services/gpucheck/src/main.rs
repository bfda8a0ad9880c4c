//! `turbine-gpucheck`: the CUDA backend's device check, run on a GPU host by tools/gpu/check.sh.
//!
//! 1. every [`Backend`] op on fresh random inputs, CUDA against the CPU oracle, on a backend that
//!    poisons its allocations, in f32 and in bf16 (every flash-attention kernel included)
//!    (`turbine_tensor::cuda::check`);
//! 2. the tiny Wan DiT (`tests/fixtures/wan_dit`) CUDA against CPU and against the diffusers
//!    reference outputs, dense and SLA, in f32 and (rel L2 against the CPU) in bf16;
//! 3. CUDA-event timings (median), bf16 then f32: the tiny DiT forward, the ops of one
//!    Wan2.1-1.3B block at 480p (32760 tokens) and a one-layer 1.3B-shape forward, on a backend
//!    without poisoning. Whole-model timings are `turbine bench`'s.
//!
//! Parts `fp8` and `fp8-bench` ([`fp8`]) check and time the FP8 linear layers of `--quant fp8` on
//! H100/H200; parts `int8` and `int8-bench` ([`int8`]) the INT8 W8A8 linears of `--quant int8`;
//! part `vae` ([`vae`]) checks and times the Wan2.1 VAE.
//! Part `umt5` ([`umt5`]) checks and times the umT5 encoder in bf16 (with
//! tools/gpu/umt5_parity.py's weights and transformers outputs when given).
//! Part `sla-dump` ([`sla_dump`], not in the default parts) writes part `sage-forward`'s SageSLA
//! inputs and outputs to `--dump-sla DIR` for tools/gpu/sla_oracle.py.
//!
//! Prints tables, optionally writes every number as JSON, and exits 1 when a check fails, 2 when
//! CUDA is unavailable.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

mod fp8;
mod int8;
mod sage;
mod sage_forward;
mod sla_dump;
mod umt5;
mod vae;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use serde_json::{Value, json};
use turbine_checkpoint::TensorStore;
use turbine_models::seeded::seeded_store;
use turbine_models::wan::{AttentionMode, WanConfig, WanModel};
use turbine_tensor::cuda::Precision;
use turbine_tensor::cuda::check::{format_table, op_checks};
use turbine_tensor::{
    Backend, CpuBackend, CudaBackend, CudaOptions, DType, HostData, HostTensor, LinearWeight,
    LinearWeights, SlaParams, compare,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    Ops,
    Dit,
    Sage,
    SageForward,
    Fp8,
    Int8,
    Bench,
    Fp8Bench,
    Int8Bench,
    Vae,
    Umt5,
    SlaDump,
}

#[derive(Debug, Parser)]
#[command(about = "Checks the CUDA backend against the CPU backend and times it")]
struct Args {
    /// The repository's tests/fixtures directory.
    #[arg(long, default_value = "tests/fixtures")]
    fixtures: PathBuf,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 20_261_126)]
    seed: u64,
    /// Parts to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ops,dit,sage,sage-forward,fp8,int8,bench,fp8-bench,int8-bench"
    )]
    parts: Vec<Part>,
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    device: usize,
    /// Tokens of part int8's Wan-shape cases (fewer keep a compute-sanitizer run short).
    #[arg(long, default_value_t = 32_760)]
    int8_tokens: usize,
    /// Also write every number here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Part `vae`: a Wan2.1 VAE checkpoint (either layout) instead of seeded random weights.
    #[arg(long, value_name = "PATH")]
    vae_weights: Option<PathBuf>,
    /// Part `vae`: safetensors with the inputs `z` [16, 21, 60, 104] (normalized latents) and
    /// `video` [3, 81, 480, 832] instead of random ones.
    #[arg(long, value_name = "PATH")]
    vae_inputs: Option<PathBuf>,
    /// Part `vae`: write the full-size `decoded` video and `encoded` latents here.
    #[arg(long, value_name = "PATH")]
    vae_dump: Option<PathBuf>,
    /// Part `vae`: timed repetitions of the full-size decode and encode.
    #[arg(long, default_value_t = 3)]
    vae_iters: usize,
    /// Part umt5: umT5-XXL weights (safetensors, either layout) instead of seeded ones.
    #[arg(long, value_name = "PATH")]
    umt5_weights: Option<PathBuf>,
    /// Part umt5: transformers' outputs on the same weights (tools/gpu/umt5_parity.py).
    #[arg(long, value_name = "PATH", requires = "umt5_weights")]
    umt5_reference: Option<PathBuf>,
    /// Part sla-dump: the directory its safetensors files go to (about 180 MB per layer).
    #[arg(long, value_name = "DIR")]
    dump_sla: Option<PathBuf>,
}

/// Tolerance of the tiny DiT, as the CPU golden test's: both backends compute in f32 and differ
/// in summation order only (GEMM blocking, online softmax), a few 1e-6 relative over two blocks.
const DIT_TOL: f32 = 1e-4;

/// Relative L2 tolerance of the bf16 tiny DiT against the f32 CPU: bf16 weights and activations
/// (relative rounding 2⁻⁹ per value) through two blocks; issue 5's full-size gate against
/// diffusers bf16 is 1e-2.
const DIT_BF16_TOL: f64 = 2e-2;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "turbine_tensor=info".into()),
        )
        .init();
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("turbine-gpucheck: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// A backend that fills every allocation with NaN first, so output a kernel fails to write shows
/// up in the comparisons.
fn poisoned(device: usize) -> turbine_tensor::Result<CudaBackend> {
    CudaBackend::with_options(
        device,
        CudaOptions {
            poison_allocations: true,
            ..CudaOptions::default()
        },
    )
}

/// Runs the selected parts; `Ok(false)` when any check failed.
fn run(args: &Args) -> Result<bool> {
    let dump_part = args.parts.contains(&Part::SlaDump);
    if dump_part != args.dump_sla.is_some() {
        bail!("part sla-dump and --dump-sla DIR go together");
    }
    let start = Instant::now();
    let gpu = poisoned(args.device).context("creating the CUDA backend")?;
    let info = gpu.info().clone();
    println!(
        "device {}: {} (sm {}.{}, {} SMs, {:.1} GiB), arch {}, NVRTC {}.{}, driver {}",
        info.ordinal,
        info.name,
        info.compute_capability.0,
        info.compute_capability.1,
        info.multiprocessors,
        info.total_memory as f64 / (1u64 << 30) as f64,
        info.arch,
        info.nvrtc_version.0,
        info.nvrtc_version.1,
        info.driver_version
    );
    gpu.warm_up()?;
    let ks = gpu.kernel_stats();
    println!(
        "kernel modules: {} compiled by NVRTC, {} from the disk cache, {:.1} ms \
         (backend ready after {:.1} ms)",
        ks.compiled,
        ks.disk_hits,
        ks.load_ms,
        start.elapsed().as_secs_f64() * 1e3
    );
    let mut report = json!({
        "device": {
            "name": info.name,
            "compute_capability": [info.compute_capability.0, info.compute_capability.1],
            "arch": info.arch,
            "nvrtc": [info.nvrtc_version.0, info.nvrtc_version.1],
            "driver": info.driver_version,
        },
        "kernels": {"compiled": ks.compiled, "disk_hits": ks.disk_hits, "load_ms": ks.load_ms},
    });
    let mut ok = true;

    if args.parts.contains(&Part::Ops) {
        let rows = op_checks(&gpu, args.seed)?;
        println!(
            "\n== ops, CUDA vs CPU (seed {})\n{}",
            args.seed,
            format_table(&rows)
        );
        let failed = rows.iter().filter(|r| !r.passed()).count();
        println!("ops: {} passed, {failed} failed", rows.len() - failed);
        ok &= failed == 0;
        report["ops"] = rows
            .iter()
            .map(|r| {
                json!({"op": r.op, "case": r.case, "err": r.err, "tol": r.tol, "ok": r.passed()})
            })
            .collect();
    }

    if args.parts.contains(&Part::Dit) {
        let rows = dit_parity(&gpu, &args.fixtures)?;
        println!(
            "\n== tiny Wan DiT (WanConfig::tiny, {}), tolerance {DIT_TOL:.0e}",
            args.fixtures.join("wan_dit").display()
        );
        println!(
            "{:<6} {:<16} {:<32} {:>12} {:>12} {:>12} {:>12}",
            "case",
            "latent",
            "attention",
            "cuda vs cpu",
            "cuda vs ref",
            "cpu vs ref",
            "bf16 vs cpu"
        );
        println!(
            "(max rel; the bf16 column is the rel L2 of the bf16 CUDA model vs CPU f32, tolerance {DIT_BF16_TOL:.0e})"
        );
        for r in &rows {
            println!(
                "{:<6} {:<16} {:<32} {:>12.2e} {:>12.2e} {:>12.2e} {:>12.2e}",
                r["case"].as_str().unwrap_or_default(),
                r["latent"].as_str().unwrap_or_default(),
                r["attention"].as_str().unwrap_or_default(),
                r["cuda_vs_cpu"].as_f64().unwrap_or(f64::NAN),
                r["cuda_vs_reference"].as_f64().unwrap_or(f64::NAN),
                r["cpu_vs_reference"].as_f64().unwrap_or(f64::NAN),
                r["cuda_bf16_vs_cpu_rel_l2"].as_f64().unwrap_or(f64::NAN),
            );
        }
        let failed = rows.iter().filter(|r| r["ok"] != Value::Bool(true)).count();
        println!("dit: {} passed, {failed} failed", rows.len() - failed);
        ok &= failed == 0;
        report["dit"] = Value::Array(rows);
    }
    let stats = gpu.pool_stats();
    println!(
        "\npool after checks: {:.1} MiB live, {:.1} MiB cached, peak {:.1} MiB, \
         {} driver allocations, {} reuses",
        mib(stats.live_bytes),
        mib(stats.cached_bytes),
        mib(stats.peak_live_bytes),
        stats.driver_allocs,
        stats.reuses
    );
    drop(gpu);

    if args.parts.contains(&Part::Sage) {
        // Accuracy on poisoned allocations, timings without.
        let (part, passed) = sage::sage_part(
            &poisoned(args.device)?,
            &CudaBackend::new(args.device)?,
            args.seed,
        )?;
        report["sage"] = part;
        ok &= passed;
    }

    if args.parts.contains(&Part::SageForward) {
        let (part, passed) = sage_forward::sage_forward_part(
            &poisoned(args.device)?,
            &CudaBackend::new(args.device)?,
            args.seed,
        )?;
        report["sage_forward"] = part;
        ok &= passed;
    }

    if let Some(dir) = &args.dump_sla {
        report["sla_dump"] = sla_dump::sla_dump_part(&poisoned(args.device)?, args.seed, dir)?;
    }

    if args.parts.contains(&Part::Fp8) {
        let (part, passed) = fp8::checks(&poisoned(args.device)?, &args.fixtures, args.seed)?;
        report["fp8"] = part;
        ok &= passed;
    }

    if args.parts.contains(&Part::Int8) {
        let (part, passed) = int8::checks(
            &poisoned(args.device)?,
            &args.fixtures,
            args.seed,
            args.int8_tokens,
        )?;
        report["int8"] = part;
        ok &= passed;
    }

    if args.parts.contains(&Part::Vae) {
        let opts = vae::Options {
            fixtures: args.fixtures.clone(),
            seed: args.seed,
            weights: args.vae_weights.clone(),
            inputs: args.vae_inputs.clone(),
            dump: args.vae_dump.clone(),
            device: args.device,
            iters: args.vae_iters,
        };
        let (part, passed) = vae::vae_part(&poisoned(args.device)?, &opts)?;
        report["vae"] = part;
        ok &= passed;
    }

    if args.parts.contains(&Part::Bench) {
        let f32 = CudaBackend::new(args.device)?;
        let mut bench = serde_json::Map::new();
        for precision in [Precision::Bf16, Precision::F32] {
            let b = f32.with_precision(precision);
            bench.insert(
                format!("{precision:?}").to_lowercase(),
                benchmarks(&b, &args.fixtures, args.seed)?,
            );
        }
        report["bench"] = Value::Object(bench);
    }

    if args.parts.contains(&Part::Fp8Bench) {
        report["fp8_bench"] = fp8::bench(&CudaBackend::new(args.device)?, args.seed)?;
    }

    if args.parts.contains(&Part::Int8Bench) {
        report["int8_bench"] = int8::bench(&CudaBackend::new(args.device)?, args.seed)?;
    }

    if args.parts.contains(&Part::Umt5) {
        let (part, passed) = umt5::umt5_part(
            &poisoned(args.device)?,
            args.device,
            args.umt5_weights.as_deref(),
            args.umt5_reference.as_deref(),
            args.seed,
        )?;
        report["umt5"] = part;
        ok &= passed;
    }

    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "\n{}",
        if ok {
            "ALL CHECKS PASSED"
        } else {
            "SOME CHECKS FAILED"
        }
    );
    Ok(ok)
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

fn open(fixtures: &Path, rel: &str) -> Result<TensorStore> {
    let path = fixtures.join(rel);
    TensorStore::open(&path).with_context(|| format!("fixture {}", path.display()))
}

fn meta<T: std::str::FromStr>(store: &TensorStore, key: &str) -> Result<T> {
    store
        .metadata(key)
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("fixture metadata {key}"))
}

/// One forward of `case` from `cases`, returned to the host.
fn forward<B: Backend + Clone>(
    model: &WanModel<B>,
    cases: &TensorStore,
    case: &str,
    timestep: f64,
) -> Result<HostTensor> {
    let b = model.backend();
    let context = b.upload(&cases.get(&format!("{case}.context"))?)?;
    let ctx = model.encode_context(&context)?;
    let x = b.upload(&cases.get(&format!("{case}.x"))?)?;
    let out = model.forward(&x, timestep, &ctx, None)?;
    Ok(b.download(&out)?)
}

fn rel_err(got: &HostTensor, want: &HostTensor) -> f32 {
    if got.shape != want.shape || got.to_f32_vec().iter().any(|v| !v.is_finite()) {
        return f32::NAN;
    }
    compare::max_rel_err(&got.to_f32_vec(), &want.to_f32_vec())
}

/// The tiny DiT on every fixture case, CUDA against CPU and both against the reference outputs.
fn dit_parity(gpu: &CudaBackend, fixtures: &Path) -> Result<Vec<Value>> {
    let weights = open(fixtures, "wan_dit/tiny.safetensors")?;
    let cases = open(fixtures, "wan_dit/forward.safetensors")?;
    let config = WanConfig::tiny();
    let mut cpu = WanModel::load(CpuBackend, config.clone(), &weights, AttentionMode::Dense)?;
    let mut cuda = WanModel::load(gpu.clone(), config.clone(), &weights, AttentionMode::Dense)?;
    let mut bf16 = WanModel::load(
        gpu.with_precision(Precision::Bf16),
        config,
        &weights,
        AttentionMode::Dense,
    )?;

    let mut runs: Vec<(String, f64, AttentionMode)> = Vec::new();
    for i in 0..meta::<usize>(&cases, "dense_cases")? {
        let case = format!("case{i}");
        let t = meta(&cases, &format!("{case}.timestep"))?;
        runs.push((case, t, AttentionMode::Dense));
    }
    for i in 0..meta::<usize>(&cases, "sla_cases")? {
        let case = format!("sla{i}");
        let p: Value = serde_json::from_str(cases.metadata(&case).context("sla case metadata")?)?;
        let field = |k: &str| p[k].as_f64().with_context(|| format!("{case}: {k}"));
        let params = SlaParams {
            topk: field("topk")?,
            block_q: field("block_q")? as usize,
            block_k: field("block_k")? as usize,
        };
        let t = field("timestep")?;
        runs.push((case, t, AttentionMode::Sla(params)));
    }

    let mut rows = Vec::new();
    for (case, t, mode) in runs {
        cpu.set_attention(mode)?;
        cuda.set_attention(mode)?;
        bf16.set_attention(mode)?;
        let want = forward(&cpu, &cases, &case, t)?;
        let got = forward(&cuda, &cases, &case, t)?;
        let half = forward(&bf16, &cases, &case, t)?;
        let bf16_l2 = if half.shape == want.shape {
            compare::rel_l2(&half.to_f32_vec(), &want.to_f32_vec())
        } else {
            f64::NAN
        };
        let reference = cases.get(&format!("{case}.out"))?;
        let (vs_cpu, vs_ref, cpu_ref) = (
            rel_err(&got, &want),
            rel_err(&got, &reference),
            rel_err(&want, &reference),
        );
        let attention = mode.to_string();
        rows.push(json!({
            "case": case,
            "latent": format!("{:?}", reference.shape),
            "timestep": t,
            "attention": attention,
            "cuda_vs_cpu": vs_cpu,
            "cuda_vs_reference": vs_ref,
            "cpu_vs_reference": cpu_ref,
            "cuda_bf16_vs_cpu_rel_l2": bf16_l2,
            "ok": vs_cpu <= DIT_TOL && vs_ref <= DIT_TOL && bf16_l2 <= DIT_BF16_TOL,
        }));
    }
    Ok(rows)
}

/// Seeded normal-ish host tensor (sum of uniforms), for timing inputs: never zeros.
fn random(shape: &[usize], seed: u64) -> Result<HostTensor> {
    let mut state = seed | 1;
    let n = shape.iter().product();
    let data = (0..n)
        .map(|_| {
            let mut s = 0f32;
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                s += (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            }
            s
        })
        .collect();
    Ok(HostTensor::new(shape.to_vec(), HostData::F32(data))?)
}

/// One timing row: median/min ms plus the rate the work implies.
fn time_row(
    b: &CudaBackend,
    name: &str,
    iters: usize,
    flops: f64,
    bytes: f64,
    mut f: impl FnMut() -> turbine_tensor::Result<()>,
) -> Result<Value> {
    let (median, min) = b.time_ms(2, iters, &mut f)?;
    let tflops = flops / (median * 1e-3) / 1e12;
    let gbs = bytes / (median * 1e-3) / 1e9;
    println!(
        "{name:<52} {median:>10.3} {min:>10.3} {:>9} {:>9}",
        if flops > 0.0 {
            format!("{tflops:.1}")
        } else {
            "-".into()
        },
        if bytes > 0.0 {
            format!("{gbs:.0}")
        } else {
            "-".into()
        },
    );
    Ok(
        json!({"name": name, "median_ms": median, "min_ms": min, "iters": iters,
              "tflops": (flops > 0.0).then_some(tflops), "gbs": (bytes > 0.0).then_some(gbs)}),
    )
}

fn benchmarks(b: &CudaBackend, fixtures: &Path, seed: u64) -> Result<Value> {
    let dt = b.precision().dtype();
    let esz = dt.size_in_bytes() as f64;
    println!(
        "\n== timings on {} (CUDA events, median of N after 2 warm-ups; precision {:?}: \
         activations {dt}, residual f32)",
        b.info().name,
        b.precision()
    );
    println!(
        "{:<52} {:>10} {:>10} {:>9} {:>9}",
        "what", "median ms", "min ms", "TFLOP/s", "GB/s"
    );
    let mut rows = Vec::new();

    // The tiny DiT forward on its largest dense and SLA fixtures (host work included: the RoPE
    // tables are built on the host each forward, as the model does).
    let weights = open(fixtures, "wan_dit/tiny.safetensors")?;
    let cases = open(fixtures, "wan_dit/forward.safetensors")?;
    let mut tiny = WanModel::load(b.clone(), WanConfig::tiny(), &weights, AttentionMode::Dense)?;
    for (case, mode) in [
        ("case1", AttentionMode::Dense),
        (
            "sla0",
            AttentionMode::Sla(SlaParams {
                topk: 0.3,
                block_q: 64,
                block_k: 128,
            }),
        ),
    ] {
        tiny.set_attention(mode)?;
        let ctx = tiny.encode_context(&b.upload(&cases.get(&format!("{case}.context"))?)?)?;
        let x = b.upload(&cases.get(&format!("{case}.x"))?)?;
        let name = format!("tiny DiT forward {case} {:?}", b.shape(&x));
        rows.push(time_row(b, &name, 50, 0.0, 0.0, || {
            tiny.forward(&x, 500.0, &ctx, None)
                .map(|_| ())
                .map_err(|e| turbine_tensor::Error::Backend {
                    backend: "model",
                    msg: e.to_string(),
                })
        })?);
    }
    drop(tiny);

    // The ops of one Wan2.1-1.3B block at 480p, 81 frames: 21x30x52 = 32760 tokens.
    let (l, d, h, dh, f, lctx) = (
        32_760usize,
        1536usize,
        12usize,
        128usize,
        8960usize,
        512usize,
    );
    let (lf, df, ff) = (l as f64, d as f64, f as f64);
    // Activations in the precision's type; the residual stream is f32 in both.
    let act = |t: HostTensor| -> Result<_> { Ok(b.to_dtype(&b.upload(&t)?, dt)?) };
    let residual = b.upload(&random(&[l, d], seed)?)?;
    let x = act(random(&[l, d], seed)?)?;
    let wide = act(random(&[l, f], seed + 1)?)?;
    let linear = |out_f: usize, in_f: usize, s: u64| -> Result<_> {
        Ok(b.upload_linear(&LinearWeights {
            out_features: out_f,
            in_features: in_f,
            weight: LinearWeight::Dense(random(&[out_f, in_f], s)?),
            bias: Some(random(&[out_f], s + 1)?),
        })?)
    };
    let (w_qkvo, w_fc1, w_fc2) = (
        linear(d, d, seed + 2)?,
        linear(f, d, seed + 4)?,
        linear(d, f, seed + 6)?,
    );
    rows.push(time_row(
        b,
        "linear [32760, 1536] -> 1536 (q/k/v/o)",
        20,
        2.0 * lf * df * df,
        0.0,
        || b.linear(&x, &w_qkvo).map(|_| ()),
    )?);
    rows.push(time_row(
        b,
        "linear [32760, 1536] -> 8960 (ffn in)",
        10,
        2.0 * lf * df * ff,
        0.0,
        || b.linear(&x, &w_fc1).map(|_| ()),
    )?);
    rows.push(time_row(
        b,
        "linear [32760, 8960] -> 1536 (ffn out)",
        10,
        2.0 * lf * df * ff,
        0.0,
        || b.linear(&wide, &w_fc2).map(|_| ()),
    )?);
    let q = act(random(&[l, h, dh], seed + 8)?)?;
    let k = act(random(&[l, h, dh], seed + 9)?)?;
    let v = act(random(&[l, h, dh], seed + 10)?)?;
    rows.push(time_row(
        b,
        "self-attention [32760, 12, 128]",
        if dt == DType::BF16 { 20 } else { 3 },
        4.0 * lf * lf * dh as f64 * h as f64,
        0.0,
        || b.attention(&q, &k, &v).map(|_| ()),
    )?);
    if dt == DType::BF16 {
        let portable = b.with_portable_kernels();
        rows.push(time_row(
            b,
            "self-attention [32760, 12, 128], mma.sync kernel",
            10,
            4.0 * lf * lf * dh as f64 * h as f64,
            0.0,
            || portable.attention(&q, &k, &v).map(|_| ()),
        )?);
    }
    let kc = act(random(&[lctx, h, dh], seed + 11)?)?;
    let vc = act(random(&[lctx, h, dh], seed + 12)?)?;
    rows.push(time_row(
        b,
        "cross-attention [32760, 12, 128] x 512",
        10,
        4.0 * lf * lctx as f64 * dh as f64 * h as f64,
        0.0,
        || b.attention(&q, &kc, &vc).map(|_| ()),
    )?);
    let sla = SlaParams {
        topk: 0.1,
        block_q: 128,
        block_k: 64,
    };
    let proj_l = linear(dh, dh, seed + 13)?;
    rows.push(time_row(
        b,
        "sla_attention [32760, 12, 128] topk 0.1",
        3,
        0.0,
        0.0,
        || b.sla_attention(&q, &k, &v, &sla, &proj_l).map(|_| ()),
    )?);
    let (shift, scale) = (
        b.upload(&random(&[d], seed + 14)?)?,
        b.upload(&random(&[d], seed + 15)?)?,
    );
    rows.push(time_row(
        b,
        "layer_norm_modulate [32760, 1536]",
        20,
        0.0,
        lf * df * (4.0 + esz),
        || {
            b.layer_norm_modulate(&residual, &shift, &scale, 1e-6)
                .map(|_| ())
        },
    )?);
    rows.push(time_row(
        b,
        "rms_norm [32760, 1536]",
        20,
        0.0,
        2.0 * lf * df * esz,
        || b.rms_norm(&x, &scale, 1e-6).map(|_| ()),
    )?);
    let (cos, sin) = turbine_tensor::rope::rope_tables([21, 30, 52], dh, 1e4)?;
    let (cos, sin) = (b.upload(&cos)?, b.upload(&sin)?);
    rows.push(time_row(
        b,
        "rms_norm_rope [32760, 1536]",
        20,
        0.0,
        // x in, out, and the [L, Dh/2] cos and sin tables.
        2.0 * lf * df * esz + lf * dh as f64 * 4.0,
        || b.rms_norm_rope(&x, &scale, 1e-6, &cos, &sin, h).map(|_| ()),
    )?);
    rows.push(time_row(
        b,
        "rope [32760, 12, 128]",
        20,
        0.0,
        // x in, out, and the [L, Dh/2] cos and sin tables.
        2.0 * lf * df * esz + lf * dh as f64 * 4.0,
        || b.rope(&q, &cos, &sin).map(|_| ()),
    )?);
    rows.push(time_row(
        b,
        "gelu_tanh [32760, 8960]",
        20,
        0.0,
        2.0 * lf * ff * esz,
        || b.gelu_tanh(&wide).map(|_| ()),
    )?);
    rows.push(time_row(
        b,
        "gated_residual [32760, 1536]",
        20,
        0.0,
        lf * df * (8.0 + esz),
        || b.gated_residual(&residual, &x, &scale).map(|_| ()),
    )?);
    drop((residual, x, wide, q, k, v, kc, vc, w_qkvo, w_fc1, w_fc2));

    // A one-layer DiT of the 1.3B shape on seeded weights: patch embedding, one block, head.
    let config = WanConfig {
        num_layers: 1,
        ..WanConfig::t2v_1_3b()
    };
    let store = seeded_store(&config.tensor_shapes(), seed)?;
    let model = WanModel::load(b.clone(), config, &store, AttentionMode::Dense)?;
    let ctx = model.encode_context(&b.upload(&random(&[lctx, 4096], seed + 20)?)?)?;
    let latent = b.upload(&random(&[16, 21, 60, 104], seed + 21)?)?;
    rows.push(time_row(
        b,
        "1.3B-shape DiT forward, 1 layer, [16, 21, 60, 104]",
        3,
        0.0,
        0.0,
        || {
            model
                .forward(&latent, 500.0, &ctx, None)
                .map(|_| ())
                .map_err(|e| turbine_tensor::Error::Backend {
                    backend: "model",
                    msg: e.to_string(),
                })
        },
    )?);
    let stats = b.pool_stats();
    println!(
        "pool: peak {:.1} MiB live, {} driver allocations, {} reuses",
        mib(stats.peak_live_bytes),
        stats.driver_allocs,
        stats.reuses
    );
    Ok(Value::Array(rows))
}
