//! TurboDiffusion's INT8 W8A8 linears of `--quant int8` (issue 6), on any supported GPU:
//!
//! - part `int8`: accuracy on a backend that poisons its allocations
//!   (`turbine_tensor::cuda::check_int8`): the block quantizer bit for bit against the host one;
//!   each layer's GEMM against the host block-scaled GEMM on the same int8 values (bit for bit
//!   before the bf16 rounding), against the f32 CPU linear and the GPU's bf16 linear (rel L2,
//!   issue gate 3e-2), at small shapes with row tails and Wan2.1-1.3B's, on H100/H200 for both
//!   GEMM kernels (wgmma and the portable mma.sync one); refusals of K % 128 and N % 8; then the
//!   tiny Wan DiT with INT8 block linears against the CPU, beside bf16;
//! - part `int8-bench`: CUDA-event medians of the 1.3B and 14B block linears at 32760 tokens:
//!   bf16 (cuBLASLt), INT8 (quantize + GEMM, the GEMM alone, the quantizer alone, and on
//!   H100/H200 the portable GEMM alone) and, on compute capability 9.0, FP8 (whole layer and GEMM
//!   alone).

use std::path::Path;

use anyhow::Result;
use serde_json::{Value, json};
use turbine_tensor::cuda::check::{CheckRow, format_table};
use turbine_tensor::cuda::check_int8::{INT8_REL_L2, int8_checks};
use turbine_tensor::cuda::{Precision, Quant};
use turbine_tensor::{Backend, CudaBackend, DType, LinearWeight, LinearWeights};

use super::fp8::{ITERS, M, median, tiny_dit};
use super::random;

/// Rel L2 gate of the tiny DiT with INT8 block linears against the CPU in f32: as FP8's, it only
/// catches a broken model-level path (a misplaced layer is O(1)); INT8's per-layer ~1.4 % is
/// below FP8's.
const TINY_DIT_INT8: f32 = 1e-1;

/// Part `int8` on a backend that poisons its allocations, the Wan-shape cases at `tokens` rows:
/// `(report, all checks passed)`.
pub fn checks(
    poisoned: &CudaBackend,
    fixtures: &Path,
    seed: u64,
    tokens: usize,
) -> Result<(Value, bool)> {
    let mut rows = int8_checks(poisoned, seed, tokens)?;
    match tiny_dit(
        poisoned,
        fixtures,
        Quant::Int8,
        "tiny DiT int8 vs f32 L2",
        TINY_DIT_INT8,
    ) {
        Ok(dit) => rows.extend(dit),
        Err(e) => rows.push(CheckRow {
            op: "tiny DiT int8 vs f32 L2",
            case: format!("error: {e:#}"),
            err: f32::NAN,
            tol: TINY_DIT_INT8,
        }),
    }
    println!(
        "\n== INT8 W8A8 linears (issue 6), CUDA vs host/CPU (seed {seed}): max rel, rel L2 for the \
         ops ending in L2 (gate {INT8_REL_L2:.1e} per layer; `sim` = the format's own rel L2 \
         there, host block GEMM vs f32), `gemm bits` = fraction of bf16 outputs differing from \
         the host GEMM's\n{}",
        format_table(&rows)
    );
    let failed = rows.iter().filter(|r| !r.passed()).count();
    println!("int8: {} passed, {failed} failed", rows.len() - failed);
    let report = rows
        .iter()
        .map(|r| json!({"op": r.op, "case": r.case, "err": r.err, "tol": r.tol, "ok": r.passed()}))
        .collect();
    Ok((Value::Array(report), failed == 0))
}

/// Part `int8-bench` on a backend without poisoning.
pub fn bench(b: &CudaBackend, seed: u64) -> Result<Value> {
    let bf16 = b.with_precision(Precision::Bf16);
    let fp8 = (b.info().compute_capability.0 == 9).then(|| bf16.with_quant(Quant::Fp8));
    let int8 = bf16.with_quant(Quant::Int8);
    // Where the GPU's GEMM is not the portable mma.sync one, that is timed beside it.
    let portable = Some(int8.with_portable_kernels())
        .filter(|p| p.int8_gemm_kernel() != int8.int8_gemm_kernel());
    println!(
        "\n== INT8 vs bf16 vs FP8 linears on {} (CUDA events, median of {ITERS} after 2 \
         warm-ups; bf16 input, bias and output). int8/fp8 = quantize + GEMM, as a layer runs; \
         gemm = the GEMM alone (mma = the portable mma.sync one); TF/s are TOPS for the 8-bit \
         GEMMs",
        b.info().name
    );
    println!(
        "{:<36} {:>8} {:>8} {:>9} {:>9} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "layer [M, K] -> N",
        "bf16 ms",
        "int8 ms",
        "i8gemm ms",
        "mma ms",
        "i8quant",
        "fp8 ms",
        "f8gemm ms",
        "bf16 TF/s",
        "i8g TOP/s",
        "bf16/i8g"
    );
    let mut rows = Vec::new();
    for (i, (layer, k, n)) in [
        ("1.3B q/k/v/o", 1536usize, 1536usize),
        ("1.3B ffn.0", 1536, 8960),
        ("1.3B ffn.2", 8960, 1536),
        ("14B q/k/v/o", 5120, 5120),
        ("14B ffn.0", 5120, 13824),
        ("14B ffn.2", 13824, 5120),
    ]
    .into_iter()
    .enumerate()
    {
        let seed = seed + 100 * i as u64;
        rows.push(
            time_layer(
                &bf16,
                &int8,
                portable.as_ref(),
                fp8.as_ref(),
                layer,
                [M, k, n],
                seed,
            )
            .unwrap_or_else(|e| {
                println!("{layer}: error: {e:#}");
                json!({"layer": layer, "error": format!("{e:#}")})
            }),
        );
    }
    Ok(Value::Array(rows))
}

fn time_layer(
    bf16: &CudaBackend,
    int8: &CudaBackend,
    portable: Option<&CudaBackend>,
    fp8: Option<&CudaBackend>,
    layer: &str,
    [m, k, n]: [usize; 3],
    seed: u64,
) -> Result<Value> {
    let x = bf16.to_dtype(&bf16.upload(&random(&[m, k], seed)?)?, DType::BF16)?;
    let w = LinearWeights {
        out_features: n,
        in_features: k,
        weight: LinearWeight::Dense(random(&[n, k], seed + 1)?.to_dtype(DType::BF16)?),
        bias: Some(random(&[n], seed + 2)?.to_dtype(DType::BF16)?),
    };
    let dense = bf16.upload_linear(&w)?;
    let bf16_ms = median(bf16, || bf16.linear(&x, &dense).map(drop))?;
    drop(dense);
    let layer_i8 = int8.upload_linear_quantizable(&w)?;
    let int8_ms = median(int8, || int8.linear(&x, &layer_i8).map(drop))?;
    let quant_ms = median(int8, || int8.quantize_int8(&x).map(drop))?;
    let xq = int8.quantize_int8(&x)?;
    let gemm_ms = median(int8, || int8.linear_int8(&xq, &layer_i8).map(drop))?;
    let mma_ms = match portable {
        Some(p) => Some(median(p, || p.linear_int8(&xq, &layer_i8).map(drop))?),
        None => None,
    };
    drop((layer_i8, xq));
    let (fp8_ms, fp8_gemm_ms) = match fp8 {
        Some(f) => {
            let layer_f8 = f.upload_linear_quantizable(&w)?;
            let whole = median(f, || f.linear(&x, &layer_f8).map(drop))?;
            let xq = f.quantize_fp8(&x)?;
            let gemm = median(f, || f.linear_fp8(&xq, &layer_f8).map(drop))?;
            (Some(whole), Some(gemm))
        }
        None => (None, None),
    };
    let rate = |ms: f64| 2.0 * (m * k * n) as f64 / (ms * 1e-3) / 1e12;
    let cell = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    println!(
        "{:<36} {bf16_ms:>8.3} {int8_ms:>8.3} {gemm_ms:>9.3} {:>9} {quant_ms:>9.3} {:>8} {:>9} \
         {:>9.0} {:>9.0} {:>8.2}x",
        format!("{layer} [{m}, {k}] -> {n}"),
        cell(mma_ms),
        cell(fp8_ms),
        cell(fp8_gemm_ms),
        rate(bf16_ms),
        rate(gemm_ms),
        bf16_ms / gemm_ms,
    );
    Ok(json!({
        "layer": layer, "m": m, "k": k, "n": n,
        "bf16_ms": bf16_ms, "int8_ms": int8_ms, "int8_gemm_ms": gemm_ms,
        "int8_gemm_mma_ms": mma_ms, "int8_quantize_ms": quant_ms,
        "fp8_ms": fp8_ms, "fp8_gemm_ms": fp8_gemm_ms,
        "bf16_tflops": rate(bf16_ms), "int8_gemm_tops": rate(gemm_ms),
        "fp8_gemm_tflops": fp8_gemm_ms.map(rate),
        "bf16_over_int8_layer": bf16_ms / int8_ms, "bf16_over_int8_gemm": bf16_ms / gemm_ms,
    }))
}
