//! Part `vae`: the Wan2.1 VAE on the GPU.
//!
//! 1. `conv3d` CUDA against CPU at the VAE's kinds of convolution, f32 and bf16;
//! 2. the tiny VAE (`tests/fixtures/vae/tiny.safetensors`) decode and encode, CUDA against CPU;
//! 3. the full Wan2.1 VAE in bf16 (seeded random weights, or `--vae-weights`): decode of
//!    `[16, 21, 60, 104]` (480P, 81 frames) and encode of `[3, 81, 480, 832]`, timed with CUDA
//!    events (warm-up, median) with the time to the first frame and peak pool memory; with
//!    `--vae-inputs`/`--vae-dump` the inputs come from tools/gpu/vae_parity.py and the outputs go
//!    back to it for the comparison with diffusers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use turbine_checkpoint::TensorStore;
use turbine_checkpoint::convert::{HostView, write_safetensors};
use turbine_models::seeded::seeded_store;
use turbine_models::vae::{WanVae, WanVaeConfig};
use turbine_tensor::cuda::{OpTime, Precision};
use turbine_tensor::{Backend, CpuBackend, CudaBackend, DType, HostTensor, compare};

use crate::{mib, random};

/// Relative L2 gate of f32 CUDA against the CPU: cuDNN's FMA-only algorithms and the CPU differ in
/// summation order only (≈ √K · 2⁻²⁴ for K ≤ 2592 products, a few 1e-6); the tiny VAE chains ~40
/// convolutions.
const F32_TOL: f64 = 1e-4;

/// Relative L2 gate of bf16 CUDA against the f32 CPU on bf16-rounded operands: each output is
/// rounded to bf16 (2⁻⁹ relative, ≈ 2e-3 rms) after f32 accumulation; through the whole tiny VAE
/// (bf16 activations between every op) the error compounds, most in the decoder: diffusers' own
/// bf16 decode is 2.1e-2 from its fp32 at 480p (its encode 5.0e-3; H100, 2026-11-26), and the
/// tiny decoder measured 3.6e-2.
const BF16_CONV_TOL: f64 = 1e-2;
const BF16_MODEL_TOL: f64 = 5e-2;

/// Options of this part.
pub struct Options {
    pub fixtures: PathBuf,
    pub seed: u64,
    pub weights: Option<PathBuf>,
    pub inputs: Option<PathBuf>,
    pub dump: Option<PathBuf>,
    /// CUDA device of the timed runs, each on a fresh backend.
    pub device: usize,
    /// Timed repetitions of the full-size decode and encode.
    pub iters: usize,
}

/// A host tensor rounded to bf16 and back, so both backends see the same operand values.
fn bf16_rounded(t: &HostTensor) -> Result<HostTensor> {
    Ok(t.to_dtype(DType::BF16)?.to_dtype(DType::F32)?)
}

fn gate(name: &str, err: f64, tol: f64) -> (Value, bool) {
    let ok = err <= tol;
    println!(
        "{name:<64} rel L2 {err:.3e}  (tol {tol:.0e})  {}",
        if ok { "ok" } else { "FAIL" }
    );
    (
        json!({"check": name, "rel_l2": err, "tol": tol, "ok": ok}),
        ok,
    )
}

fn rel_l2(got: &HostTensor, want: &HostTensor) -> f64 {
    let g = got.to_f32_vec();
    if got.shape != want.shape || g.iter().any(|v| !v.is_finite()) {
        return f64::NAN;
    }
    compare::rel_l2(&g, &want.to_f32_vec())
}

/// (name, x, weight, stride, pad): the VAE's convolutions at reduced size.
type ConvCase = (
    &'static str,
    [usize; 4],
    [usize; 5],
    [usize; 3],
    [[usize; 2]; 3],
);

const CONV_CASES: [ConvCase; 6] = [
    (
        "causal 3x3x3, 2 frames front pad",
        [5, 24, 40, 32],
        [48, 3, 3, 3, 32],
        [1; 3],
        [[2, 0], [1, 1], [1, 1]],
    ),
    (
        "3x3x3 on cached frames (no time pad)",
        [6, 16, 24, 64],
        [64, 3, 3, 3, 64],
        [1; 3],
        [[0, 0], [1, 1], [1, 1]],
    ),
    (
        "encoder conv_in, 3 channels",
        [5, 32, 48, 3],
        [96, 3, 3, 3, 3],
        [1; 3],
        [[2, 0], [1, 1], [1, 1]],
    ),
    (
        "1x1x1 shortcut",
        [3, 16, 16, 64],
        [32, 1, 1, 1, 64],
        [1; 3],
        [[0; 2]; 3],
    ),
    (
        "(3,1,1) time conv, stride 2",
        [5, 12, 20, 32],
        [32, 3, 1, 1, 32],
        [2, 1, 1],
        [[0; 2]; 3],
    ),
    (
        "downsample2d: 3x3 stride 2, pad right/bottom",
        [2, 24, 40, 32],
        [32, 1, 3, 3, 32],
        [1, 2, 2],
        [[0, 0], [0, 1], [0, 1]],
    ),
];

/// Runs the part; `Ok((report, passed))`.
pub fn vae_part(checked: &CudaBackend, opts: &Options) -> Result<(Value, bool)> {
    let mut ok = true;
    let mut checks = Vec::new();
    let mut push = |(v, passed): (Value, bool)| {
        ok &= passed;
        checks.push(v);
    };
    let engine = checked.conv_engine();
    println!("\n== vae: conv3d engine {engine}");

    for (i, (name, xs, ws, stride, pad)) in CONV_CASES.into_iter().enumerate() {
        let seed = opts.seed + 10 * i as u64;
        let x = bf16_rounded(&random(&xs, seed)?)?;
        let w = bf16_rounded(&scaled(&random(&ws, seed + 1)?, ws)?)?;
        let bias = bf16_rounded(&random(&[ws[0]], seed + 2)?)?;
        let cpu = CpuBackend;
        let want = cpu.download(&cpu.conv3d(
            &cpu.upload(&x)?,
            &cpu.upload(&w)?,
            Some(&cpu.upload(&bias)?),
            stride,
            pad,
        )?)?;
        for (precision, tol) in [(Precision::F32, F32_TOL), (Precision::Bf16, BF16_CONV_TOL)] {
            let b = checked.with_precision(precision);
            let got = b.download(&b.conv3d(
                &b.upload(&x)?,
                &b.upload_param(&w)?,
                Some(&b.upload(&bias)?),
                stride,
                pad,
            )?)?;
            push(gate(
                &format!("conv3d {precision:?} {name} {xs:?}"),
                rel_l2(&got, &want),
                tol,
            ));
        }
    }

    let tiny = open(&opts.fixtures.join("vae/tiny.safetensors"))?;
    let config = WanVaeConfig::tiny();
    let cpu = WanVae::load(CpuBackend, config.clone(), &tiny)?;
    let z = random(&[16, 3, 4, 6], opts.seed + 100)?;
    let video = clamp_unit(&random(&[3, 5, 32, 48], opts.seed + 101)?)?;
    let want_dec = cpu.decode(&CpuBackend.upload(&z)?)?;
    let want_dec = CpuBackend.download(&want_dec)?;
    let want_enc = CpuBackend.download(&cpu.encode(&CpuBackend.upload(&video)?)?)?;
    for (precision, tol) in [(Precision::F32, F32_TOL), (Precision::Bf16, BF16_MODEL_TOL)] {
        let b = checked.with_precision(precision);
        let vae = WanVae::load(b.clone(), config.clone(), &tiny)?;
        let dec = b.download(&vae.decode(&b.upload(&z)?)?)?;
        push(gate(
            &format!("tiny VAE decode {precision:?} [16, 3, 4, 6]"),
            rel_l2(&dec, &want_dec),
            tol,
        ));
        let enc = b.download(&vae.encode(&b.upload(&video)?)?)?;
        push(gate(
            &format!("tiny VAE encode {precision:?} [3, 5, 32, 48]"),
            rel_l2(&enc, &want_enc),
            tol,
        ));
    }

    let (planned, fallbacks) = checked.conv_plans();
    println!("conv3d problems so far: {planned} on cuDNN, {fallbacks} on the direct kernel");
    let mut report = json!({"conv_engine": engine, "cudnn_plans": planned,
                            "direct_fallbacks": fallbacks, "checks": checks});
    // The direct kernel would take many minutes at full size.
    if engine != "cudnn" || planned == 0 {
        println!("full-size VAE skipped: cuDNN runs no convolution here (FAIL)");
        report["full"] = json!({"skipped": "cuDNN not loaded or without algorithms"});
        return Ok((report, false));
    }
    report["conv_timings"] = conv_timings(&fresh(opts.device)?)?;
    report["full"] = full_size(opts)?;
    Ok((report, ok))
}

/// (name, x, w) of one timed convolution, channels last.
type TimedCase = (&'static str, [usize; 4], [usize; 5]);

/// The symmetric pad of every [`TIMED_CASES`] convolution: none in time (the cached frames are
/// the causal pad), 1 in height and width.
const TIMED_PAD: [usize; 3] = [0, 1, 1];

/// The decoder's heaviest convolutions as one chunk meets them (2 cached frames in front of its
/// 4 frames at 240x416 and up, 2 at 120x208, 1 at 60x104), with the input layouts
/// [`turbine_tensor::Backend::conv_input`] chooses between: stored 128 wide or time taps folded
/// into channels (`[F, H, W, 3C]` by a 1x3x3 filter).
const TIMED_CASES: [TimedCase; 11] = [
    ("res conv 96, 480x832", [6, 480, 832, 96], [96, 3, 3, 3, 96]),
    (
        "res conv 96, 480x832, input 128 wide",
        [6, 480, 832, 128],
        [96, 3, 3, 3, 128],
    ),
    (
        "res conv 96, 480x832, time taps folded (used)",
        [4, 480, 832, 288],
        [96, 1, 3, 3, 288],
    ),
    (
        "res conv 192, 240x416",
        [6, 240, 416, 192],
        [192, 3, 3, 3, 192],
    ),
    (
        "res conv 192, 240x416, time taps folded",
        [4, 240, 416, 576],
        [192, 1, 3, 3, 576],
    ),
    (
        "res conv 384, 120x208 (2 frames + 2 cached)",
        [4, 120, 208, 384],
        [384, 3, 3, 3, 384],
    ),
    (
        "res conv 384, 120x208, time taps folded",
        [2, 120, 208, 1152],
        [384, 1, 3, 3, 1152],
    ),
    (
        "res conv 384, 60x104 (1 frame + 2 cached)",
        [3, 60, 104, 384],
        [384, 3, 3, 3, 384],
    ),
    (
        "res conv 384, 60x104, time taps folded",
        [1, 60, 104, 1152],
        [384, 1, 3, 3, 1152],
    ),
    (
        "upsample conv 192 -> 96, 480x832",
        [4, 480, 832, 192],
        [96, 1, 3, 3, 192],
    ),
    (
        "head conv 96 -> 3, 480x832",
        [6, 480, 832, 96],
        [3, 3, 3, 3, 96],
    ),
];

/// bf16 times of the decoder's main convolutions alone, on cuDNN and on the narrow kernel where it
/// applies (the engine the backend picks): the floor under the VAE's time.
fn conv_timings(b: &CudaBackend) -> Result<Value> {
    println!(
        "\n{:<44} {:>11} {:>8} {:>11} {:>8}",
        "bf16 conv3d (NDHWC)", "cuDNN ms", "TFLOPS", "narrow ms", "TFLOPS"
    );
    let mut rows = Vec::new();
    let pad = TIMED_PAD;
    for (name, x, w) in TIMED_CASES {
        let outputs: usize = (0..3).map(|d| x[d] + 2 * pad[d] + 1 - w[d + 1]).product();
        let flops = 2.0 * (w.iter().product::<usize>() * outputs) as f64;
        let t = b.time_conv3d(x, w, pad, 5)?;
        let rate = |ms: Option<f64>| ms.map(|ms| flops / (ms * 1e-3) / 1e12);
        let show = |v: Option<f64>, p: usize| v.map_or("-".into(), |v| format!("{v:.p$}"));
        println!(
            "{name:<44} {:>11} {:>8} {:>11} {:>8}",
            show(t.cudnn, 3),
            show(rate(t.cudnn), 0),
            show(t.narrow, 3),
            show(rate(t.narrow), 0)
        );
        rows.push(
            json!({"name": name, "x": x, "w": w, "ms": t.cudnn, "narrow_ms": t.narrow,
                         "flops": flops}),
        );
    }
    Ok(Value::Array(rows))
}

/// Weights scaled to unit output variance (`1/√fan_in`), like a trained layer's.
fn scaled(w: &HostTensor, shape: [usize; 5]) -> Result<HostTensor> {
    let fan_in: usize = shape[1..].iter().product();
    let s = (fan_in as f32).sqrt().recip();
    Ok(HostTensor::from_f32(
        shape.to_vec(),
        w.to_f32_vec().iter().map(|v| v * s).collect(),
    )?)
}

/// Video values in [−1, 1].
fn clamp_unit(t: &HostTensor) -> Result<HostTensor> {
    Ok(HostTensor::from_f32(
        t.shape.clone(),
        t.to_f32_vec().iter().map(|v| v.clamp(-1.0, 1.0)).collect(),
    )?)
}

fn open(path: &std::path::Path) -> Result<TensorStore> {
    TensorStore::open(path).with_context(|| format!("opening {}", path.display()))
}

/// A model error as the backend timing closures return it.
fn tensor_err(e: turbine_models::Error) -> turbine_tensor::Error {
    match e {
        turbine_models::Error::Tensor(e) => e,
        other @ (turbine_models::Error::Config(_)
        | turbine_models::Error::Input(_)
        | turbine_models::Error::Checkpoint(_)) => {
            turbine_tensor::Error::invalid("vae", other.to_string())
        }
    }
}

/// Prints a profile, op by op (device ms, host ms), and returns it as JSON rows.
fn print_profile(ops: &[OpTime]) -> Vec<Value> {
    ops.iter()
        .map(|o| {
            println!(
                "    {:<40} {:>6} calls {:>10.1} ms (host {:.1} ms)",
                o.op, o.calls, o.total_ms, o.host_ms
            );
            json!({"op": o.op, "calls": o.calls, "ms": o.total_ms, "host_ms": o.host_ms})
        })
        .collect()
}

/// A fresh bf16 backend without poisoning: its pool's peak is one run's.
fn fresh(device: usize) -> Result<CudaBackend> {
    Ok(CudaBackend::new(device)?.with_precision(Precision::Bf16))
}

fn gib(bytes: usize) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

/// The full Wan2.1 VAE in bf16: decode and encode timings, peak memory, optional dumps.
fn full_size(opts: &Options) -> Result<Value> {
    let config = WanVaeConfig::wan21();
    let store = match &opts.weights {
        Some(path) => open(path)?,
        None => seeded_store(&config.tensor_shapes(), opts.seed)?,
    };
    let (z, video) = match &opts.inputs {
        Some(path) => {
            let inputs = open(path)?;
            (inputs.get("z")?, inputs.get("video")?)
        }
        None => (
            random(&[16, 21, 60, 104], opts.seed + 200)?,
            clamp_unit(&random(&[3, 81, 480, 832], opts.seed + 201)?)?,
        ),
    };
    let iters = opts.iters.max(1);
    let mut dumps: Vec<(String, HostTensor)> = Vec::new();
    println!(
        "\n{:<52} {:>10} {:>10} {:>10} {:>10}",
        "full Wan2.1 VAE, bf16", "first ms", "median ms", "min ms", "peak GiB"
    );

    let b = fresh(opts.device)?;
    let vae = WanVae::load(b.clone(), config.clone(), &store)?;
    let weights_bytes = b.pool_stats().live_bytes;
    let zd = b.upload(&z)?;
    // The first decode plans every convolution shape (cuDNN's timed search); frames stream out
    // per latent frame.
    let start = Instant::now();
    let mut first_frame_ms = f64::NAN;
    let mut frames = Vec::new();
    for (i, chunk) in vae.decode_stream(&zd)?.enumerate() {
        frames.push(chunk?);
        if i == 0 {
            b.synchronize()?;
            first_frame_ms = start.elapsed().as_secs_f64() * 1e3;
        }
    }
    let decoded = b.concat(&frames.iter().collect::<Vec<_>>(), 1)?;
    b.synchronize()?;
    let first_ms = start.elapsed().as_secs_f64() * 1e3;
    drop(frames);
    if opts.dump.is_some() {
        dumps.push(("decoded".into(), b.download(&decoded)?));
    }
    drop(decoded);
    let (median, min) = b.time_ms(0, iters, || vae.decode(&zd).map(|_| ()).map_err(tensor_err))?;
    let z0 = b.slice(&zd, 1, 0, 1)?;
    let (ttff, _) = b.time_ms(0, iters, || {
        vae.decode_session()
            .push(&z0)
            .map(|_| ())
            .map_err(tensor_err)
    })?;
    let peak = b.pool_stats().peak_live_bytes;
    // Where a decode's time goes, by op (events around every op: a separate, slower run).
    b.start_profile();
    let profiled = vae.decode(&zd);
    let ops = b.finish_profile()?;
    profiled?;
    println!(
        "{:<52} {first_ms:>10.1} {median:>10.1} {min:>10.1} {:>10.2}",
        "decode [16, 21, 60, 104] -> [3, 81, 480, 832]",
        gib(peak)
    );
    let profile = print_profile(&ops);
    // The first chunk's push alone, where the device may wait on the host's enqueueing (a whole
    // decode's host times can hold waits for room in a full launch queue).
    b.synchronize()?;
    b.start_profile();
    let start = Instant::now();
    let pushed = vae.decode_session().push(&z0).map(drop);
    let push_ms = start.elapsed().as_secs_f64() * 1e3;
    let first_ops = b.finish_profile()?;
    pushed?;
    println!("  first chunk alone (one latent frame): pushed in {push_ms:.1} ms on the host");
    let first_profile = print_profile(&first_ops);
    let (planned, fallbacks) = b.conv_plans();
    println!(
        "    first frame {ttff:.1} ms ({first_frame_ms:.1} ms in the first call); weights {:.0} MiB; \
         {planned} conv problems on cuDNN, {fallbacks} on the direct kernel",
        mib(weights_bytes)
    );
    let decode = json!({
        "latent": [16, 21, 60, 104], "first_call_ms": first_ms, "median_ms": median,
        "min_ms": min, "iters": iters, "first_frame_ms": ttff,
        "first_frame_first_call_ms": first_frame_ms,
        "peak_bytes": peak, "weights_bytes": weights_bytes, "profile": profile,
        "first_chunk": {"push_ms": push_ms, "profile": first_profile},
        "cudnn_plans": planned, "direct_fallbacks": fallbacks,
    });
    drop((vae, zd, z0, b));

    let b = fresh(opts.device)?;
    let vae = WanVae::load(b.clone(), config, &store)?;
    let vd = b.upload(&video)?;
    let start = Instant::now();
    let encoded = vae.encode(&vd)?;
    b.synchronize()?;
    let first_ms = start.elapsed().as_secs_f64() * 1e3;
    if opts.dump.is_some() {
        dumps.push(("encoded".into(), b.download(&encoded)?));
    }
    drop(encoded);
    let (median, min) = b.time_ms(0, iters, || vae.encode(&vd).map(|_| ()).map_err(tensor_err))?;
    let peak = b.pool_stats().peak_live_bytes;
    println!(
        "{:<52} {first_ms:>10.1} {median:>10.1} {min:>10.1} {:>10.2}",
        "encode [3, 81, 480, 832] -> [16, 21, 60, 104]",
        gib(peak)
    );
    let encode = json!({
        "video": [3, 81, 480, 832], "first_call_ms": first_ms, "median_ms": median,
        "min_ms": min, "iters": iters, "peak_bytes": peak,
    });

    if let Some(path) = &opts.dump {
        write_safetensors(
            path,
            dumps.iter().map(|(n, t)| (n.clone(), HostView(t))),
            HashMap::new(),
        )
        .with_context(|| format!("writing {}", path.display()))?;
        println!("outputs written to {}", path.display());
    }
    Ok(json!({"decode": decode, "encode": encode, "weights": opts.weights, "inputs": opts.inputs}))
}
