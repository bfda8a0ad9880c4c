//! The device checks of the FP8 linear layers ([`Quant::Fp8`], compute capability 9.0).
//!
//! Inputs are seeded normal samples rounded to bf16, as a bf16 checkpoint and the bf16 DiT's
//! activations hold them: `x ~ N(0, 1)`, `W ~ N(0, 1/K)`, bias `~ N(0, 0.1²)`. Every layer shape
//! is compared three ways, on a backend that poisons its allocations:
//!
//! - **`vs sim`**, the implementation gate: the CPU's f32 linear on exactly the values the host
//!   quantizer ([`crate::fp8`]) produces from the same inputs, so only the GPU's summation and
//!   its bf16 output rounding (2⁻⁹ relative) remain: max rel ≤ [`SIM`] = 2e-2. A scale applied
//!   per token where it belongs per channel, a transposed operand or an unwritten output fails
//!   this by orders of magnitude;
//! - **`vs f32 L2`**: rel L2 against the CPU's f32 linear on the unquantized values: what FP8
//!   costs, gated at [`FP8_REL_L2`];
//! - **`vs bf16 L2`**: rel L2 against the GPU's bf16 linear, the path FP8 replaces, same gate.
//!
//! And the quantization kernel itself must equal the host quantizer bit for bit (`fp8 quantize`,
//! error 0), on random rows, structured rows (zeros, a ramp, values across 30 binades) and both
//! input types; the LayerNorms that quantize in their own pass (`fp8 layer_norm input`) must
//! equal the norm followed by the quantizer, bit for bit. A layer that adds its gated output into
//! an f32 or bf16 residual stream inside the GEMM (`fp8 linear residual`) is compared with the CPU
//! on the quantized values and with the GPU's composed path (the layer's bf16 output, then the
//! gated residual add).
//!
//! The Sage attention's output written in e4m3 by the attention itself for an FP8 output
//! projection (`fp8 attention output`) must use one scale with nothing saturated, lose no more
//! than the output quantized per row would (×[`HIDDEN_VS_ROWS`]), and keep o within that of the
//! per-row path.
//!
//! Shapes: small odd ones (rows not a multiple of any tile), the FFN's GELU epilogue, a `-quant`
//! checkpoint's int8 block weight requantized per channel, and Wan2.1-1.3B's block linears at 480p
//! (32760 tokens: q/k/v/o 1536 -> 1536, ffn.0 1536 -> 8960 with its GELU, ffn.2 8960 -> 1536).

use super::check::CheckRow;
use super::check_quant::{Checker, Format, Layer, l2, measure, quantizer_err};
use super::sage::SAGE_HEAD_DIM;
use super::{CudaBackend, CudaLinear, Quant};
use crate::fp8::Fp8Rows;
use crate::{Backend, DType, HostTensor, LinearWeight, Result, SlaParams, compare};

/// Max rel of the FP8 GPU linear against the CPU on the same quantized values. The GEMMs use
/// fast accumulation (the FP8 MMA's own accumulator, cuda/gemm.rs), which on an H100 reads
/// 8.0e-3 at K = 13824 and 1.01e-2 at K = 8960, against 2.7e-3 with partial sums promoted to
/// f32; the L2 rows below read the same either way.
const SIM: f32 = 2e-2;

/// Rel L2 gate of the FP8 linear against the unquantized f32 and bf16 linears.
///
/// e4m3 keeps 3 mantissa bits: round to nearest moves a value by at most half a step, 2⁻⁴ of its
/// binade's lower edge, and by 2⁻³/√12 ≈ 3.6 % of that edge RMS — about 2.6 % of the value for
/// normal samples (the host quantizer measures 2.6 % on one operand). `x` and `W` round
/// independently and a random dot product adds the errors in quadrature like its terms, so the
/// output's rel L2 is ≈ √2 · 2.6 % ≈ 3.7 % whatever the shape: the format's floor, which the
/// `vs sim` rows' reference shows too. Issue 6's per-layer gate, 3e-2, is stated for real
/// activations (whose sums are less random) and sits below that floor on random data; the gate
/// here is the floor plus margin for the sampling spread and the bf16 output. Rounding by
/// truncation instead of to nearest doubles the error and fails it.
pub const FP8_REL_L2: f32 = 4.5e-2;

/// The FP8 side of the shared checks.
struct Fp8;

impl Format for Fp8 {
    const QUANT: Quant = Quant::Fp8;
    const QUANTIZE: &'static str = "fp8 quantize";
    const LINEAR: &'static str = "fp8 linear";
    const SYNCHRONIZE: &'static str = "fp8 synchronize";
    const INT8_WEIGHT: &'static str = ", int8 block weight";
    const MISPLACED: (&'static str, &'static str) = (
        "fp8 check",
        "upload_linear_quantizable placed a dense layer on an FP8 backend",
    );

    const RESIDUAL: [&'static str; 3] = [
        "fp8 linear residual",
        "fp8 linear residual vs sim",
        "fp8 linear residual vs composed L2",
    ];

    fn placed(layer: &CudaLinear) -> bool {
        layer.is_fp8()
    }

    fn quantized(x: &[f32], rows: usize, cols: usize) -> Result<Vec<f32>> {
        Ok(Fp8Rows::quantize(x, rows, cols)?.dequantize())
    }

    fn quantized_weight(w: &[f32], rows: usize, cols: usize) -> Result<Vec<f32>> {
        Ok(Fp8Rows::quantize_weight(w, rows, cols)?.dequantize())
    }

    /// From a bf16 tensor when `x` is bf16.
    fn try_quantize(c: &mut Checker<Self>, case: &str, x: &HostTensor) -> Result<()> {
        let (rows, cols) = (x.shape[0], x.shape[1]);
        let as_bf16 = x.dtype() == DType::BF16;
        let d = c.gpu.upload(x)?;
        let d = if as_bf16 {
            c.gpu.to_dtype(&d, DType::BF16)?
        } else {
            d
        };
        let got = c.gpu.download_fp8(&c.gpu.quantize_fp8(&d)?)?;
        let want = Fp8Rows::quantize(&x.to_f32_vec(), rows, cols)?;
        let err = quantizer_err(got == want, got.scales == want.scales, || {
            compare::max_rel_err(&got.dequantize(), &want.dequantize())
        });
        let input = if as_bf16 { "bf16" } else { "f32" };
        c.push(Self::QUANTIZE, &format!("{case} {input}"), err, 0.0);
        Ok(())
    }

    /// The three comparisons of the module doc.
    fn try_linear(c: &mut Checker<Self>, l: &Layer) -> Result<()> {
        let &Layer {
            rows, w, ref case, ..
        } = l;
        let (out_f, in_f) = (w.out_features, w.in_features);
        let (gpu, ()) = c.gpu_outputs(l, |_, _| Ok(()))?;
        let (x32, w32) = (gpu.x.to_f32_vec(), w.dense_f32());
        let sim = c.cpu_linear(
            l,
            Fp8Rows::quantize(&x32, rows, in_f)?.dequantize(),
            Fp8Rows::quantize_weight(&w32, out_f, in_f)?.dequantize(),
        )?;
        let reference = c.cpu_linear(l, x32, w32)?;

        let floor = l2(&sim, &reference);
        c.push(
            "fp8 linear vs sim",
            case,
            measure(compare::max_rel_err, &gpu.got, &sim),
            SIM,
        );
        c.push(
            "fp8 linear vs f32 L2",
            &format!("{case} (sim {floor:.1e})"),
            l2(&gpu.got, &reference),
            FP8_REL_L2,
        );
        c.push(
            "fp8 linear vs bf16 L2",
            case,
            l2(&gpu.got, &gpu.bf16),
            FP8_REL_L2,
        );
        Ok(())
    }
}

/// The fused norm-and-quantize of `[rows, cols]` f32 residual rows (mean 8, spread 4, as in the
/// op checks) against the bf16 norm then [`CudaBackend::quantize_fp8`]: modulated, affine, and
/// each after a residual add in the same pass (whose sum must equal the elementwise kernels').
fn norm_input(c: &mut Checker<Fp8>, rows: usize, cols: usize) -> Result<()> {
    let x = c.rng.tensor(&[rows, cols], 4.0).to_f32_vec();
    let x = HostTensor::from_f32([rows, cols], x.iter().map(|v| v + 8.0).collect())?;
    let g = &c.gpu.clone();
    let (x, p, q) = (
        g.upload(&x)?,
        g.upload(&c.rng.tensor(&[cols], 1.0))?,
        g.upload(&c.rng.tensor(&[cols], 1.0))?,
    );
    let y = g.to_dtype(&g.upload(&c.rng.tensor(&[rows, cols], 1.0))?, DType::BF16)?;
    let gated = g.gated_residual(&x, &y, &p)?;
    let added = g.add(&x, &y)?;
    let (gated_sum, gated_in) =
        g.residual_layer_norm_input(&x, &y, Some(&p), Some((&p, &q)), 1e-6)?;
    let (added_sum, added_in) = g.residual_layer_norm_modulate_input(&x, &y, None, &p, &q, 1e-6)?;
    let cases = [
        (
            "modulated",
            g.layer_norm_modulate_input(&x, &p, &q, 1e-6)?,
            g.layer_norm_modulate(&x, &p, &q, 1e-6)?,
            None,
        ),
        (
            "affine",
            g.layer_norm_input(&x, Some((&p, &q)), 1e-6)?,
            g.layer_norm(&x, Some((&p, &q)), 1e-6)?,
            None,
        ),
        (
            "gated residual + affine",
            gated_in,
            g.layer_norm(&gated, Some((&p, &q)), 1e-6)?,
            Some((gated_sum, gated)),
        ),
        (
            "residual + modulated",
            added_in,
            g.layer_norm_modulate(&added, &p, &q, 1e-6)?,
            Some((added_sum, added)),
        ),
    ];
    // The norm under its output bound's one scale, as an FFN's first layer reads it: equal to the
    // quantizer given that scale, and no value at e4m3's saturation.
    let next = g.upload_linear_quantizable(&c.weights(16, cols, true)?)?;
    let normed = g.layer_norm_modulate(&x, &p, &q, 1e-6)?;
    let bounded = g.layer_norm_modulate_input_for(&x, &p, &q, 1e-6, &next)?;
    let err = match bounded
        .fp8_rows()
        .and_then(|r| r.common.as_ref().map(|c| (r, c)))
    {
        Some((rows, common)) => {
            let got = g.download_fp8(rows)?;
            let scale = g.download(common)?.to_f32_vec()[0];
            let scale = g.upload(&HostTensor::from_f32([1], vec![scale])?)?;
            let want = super::quant::quantize_rows_with(
                &g.dev,
                &normed,
                super::quant::Lifetime::Activation,
                Some(&scale),
            )?;
            let want = g.download_fp8(&want)?;
            let saturated = got.values.iter().any(|&v| v & 0x7F == 0x7E);
            if saturated {
                f32::NAN
            } else {
                quantizer_err(got == want, got.scales == want.scales, || {
                    compare::max_rel_err(&got.dequantize(), &want.dequantize())
                })
            }
        }
        None => f32::NAN,
    };
    c.push(
        "fp8 layer_norm input",
        &format!("modulated, one scale under the bound [{rows}, {cols}]"),
        err,
        0.0,
    );
    for (kind, fused, normed, sums) in cases {
        let want = g.download_fp8(&g.quantize_fp8(&normed)?)?;
        let mut err = match fused.fp8_rows() {
            Some(rows) => {
                let got = g.download_fp8(rows)?;
                quantizer_err(got == want, got.scales == want.scales, || {
                    compare::max_rel_err(&got.dequantize(), &want.dequantize())
                })
            }
            None => f32::NAN,
        };
        if let Some((fused_sum, sum)) = sums {
            let (a, b) = (g.download(&fused_sum)?, g.download(&sum)?);
            err = err.max(compare::max_rel_err(&a.to_f32_vec(), &b.to_f32_vec()));
        }
        c.push(
            "fp8 layer_norm input",
            &format!("{kind} [{rows}, {cols}]"),
            err,
            0.0,
        );
    }
    Ok(())
}

/// Rel L2 of an FFN with both layers FP8 (norm → ffn.0 + GELU → ffn.2) against the bf16 FFN:
/// two layers' e4m3 errors in quadrature, √2 · [`FP8_REL_L2`].
const FFN_REL_L2: f32 = 6.4e-2;

/// How much more an FP8 layer's input may lose written in e4m3 by the op before it under a
/// bound's one scale (the FFN's hidden rows by its first GEMM, the attention's output by the
/// attention) than with each row quantized by its amax: e4m3 keeps its relative step wherever a
/// value lands above its smallest normal, so only values far below the bound round coarser
/// (kernels/quant.cu, kernels/sage.cu).
const HIDDEN_VS_ROWS: f32 = 1.1;

/// An FFN `[rows, d] → ffn → d` from a modulated norm of f32 residual rows under one scale
/// ([`Backend::layer_norm_modulate_input_for`]), its hidden rows written by the first GEMM in
/// e4m3 under the bound ([`Backend::linear_gelu_tanh_input`]), against the same FP8 layers from
/// the per-row norm with the GELU output quantized per row, and against the bf16 FFN. With
/// `spread`, half the first layer's rows are 2⁸ smaller: its weight keeps a scale per row, and
/// the backend quantizes the GELU output per row instead (`fused` false): the rows check that
/// the fallback still computes the FFN.
fn hidden(c: &mut Checker<Fp8>, rows: usize, d: usize, ffn: usize, spread: bool) -> Result<()> {
    let case = format!(
        "[{rows}, {d}] -> {ffn} -> {d}{}",
        if spread { ", rows 2^8 apart" } else { "" }
    );
    let fused = !spread;
    let g = &c.gpu.clone();
    let (mut up_w, down_w) = (c.weights(ffn, d, true)?, c.weights(d, ffn, true)?);
    if spread {
        let LinearWeight::Dense(w) = &up_w.weight else {
            return Err(crate::Error::invalid(
                "fp8 hidden",
                "seeded weights are dense",
            ));
        };
        let scaled = w
            .to_f32_vec()
            .iter()
            .enumerate()
            .map(|(i, v)| if i < ffn / 2 * d { v / 256.0 } else { *v })
            .collect();
        up_w.weight =
            LinearWeight::Dense(HostTensor::from_f32([ffn, d], scaled)?.to_dtype(DType::BF16)?);
    }
    let (up, down) = (
        g.upload_linear_quantizable(&up_w)?,
        g.upload_linear_quantizable(&down_w)?,
    );
    let (up_d, down_d) = (g.upload_linear(&up_w)?, g.upload_linear(&down_w)?);
    let x = c.rng.tensor(&[rows, d], 4.0).to_f32_vec();
    let x = g.upload(&HostTensor::from_f32(
        [rows, d],
        x.iter().map(|v| v + 8.0).collect(),
    )?)?;
    let (shift, scale) = (
        g.upload(&c.rng.tensor(&[d], 1.0))?,
        g.upload(&c.rng.tensor(&[d], 1.0))?,
    );
    let h = g.layer_norm_modulate_input_for(&x, &shift, &scale, 1e-6, &up)?;
    let hid = g.linear_gelu_tanh_input(&h, &up, &down)?;
    let got = g.download(&g.linear_prepared(&hid, &down)?)?.to_f32_vec();
    let h_rows = g.layer_norm_modulate_input(&x, &shift, &scale, 1e-6)?;
    let per_row = g.linear(&g.linear_gelu_tanh_prepared(&h_rows, &up)?, &down)?;
    let per_row = g.download(&per_row)?.to_f32_vec();
    let normed = g.layer_norm_modulate(&x, &shift, &scale, 1e-6)?;
    let bf16 = g.linear(&g.linear_gelu_tanh(&normed, &up_d)?, &down_d)?;
    let bf16 = g.download(&bf16)?.to_f32_vec();

    // The path taken: one scale for every hidden row, and no value at e4m3's saturation.
    let q = match hid.fp8_rows() {
        Some(rows) => g.download_fp8(rows)?,
        None => {
            return Err(crate::Error::invalid(
                "fp8 hidden",
                "the hidden rows are not FP8",
            ));
        }
    };
    let one_scale = q.scales.iter().all(|&s| s == q.scales[0]);
    let deq = q.dequantize();
    let largest = deq.iter().fold(0f32, |m, v| m.max(v.abs())) / q.scales[0];
    let path = if one_scale == fused && (!fused || largest < 448.0) {
        0.0
    } else {
        f32::NAN
    };
    let per_row_l2 = l2(&per_row, &bf16);
    c.push(
        if fused {
            "fp8 hidden from GEMM"
        } else {
            "fp8 hidden per row (fallback)"
        },
        &format!("{case}: largest |e4m3| {largest:.1} of 448"),
        path,
        0.0,
    );
    c.push(
        "fp8 hidden FFN vs bf16 L2",
        &format!("{case} (per row {per_row_l2:.2e})"),
        l2(&got, &bf16),
        (HIDDEN_VS_ROWS * per_row_l2).min(FFN_REL_L2),
    );
    c.push("fp8 FFN per row vs bf16 L2", &case, per_row_l2, FFN_REL_L2);
    Ok(())
}

/// The attention whose output [`attention_output`] checks.
#[derive(Debug, Clone, Copy)]
enum OutputOf {
    /// Dense Sage or (`sla`) SageSLA top-k 0.1 with a random `proj_l`, on the wgmma kernel or
    /// (`portable`) the mma.sync one ([`Backend::sage_attention_input`]).
    Sage { sla: bool, portable: bool },
    /// Dense bf16 attention over `keys` keys, the cross-attention's persistent wgmma kernel
    /// ([`Backend::attention_input`]).
    Flash { keys: usize },
}

/// An attention's output written by its own epilogue in e4m3 for an FP8 output projection (the
/// DiT's o), under one scale from a bound, against the bf16 output: `[len, heads, 128]` queries
/// of N(0, 1) q, k, v.
fn attention_output(
    c: &mut Checker<Fp8>,
    (len, heads): (usize, usize),
    of: OutputOf,
) -> Result<()> {
    let portable = matches!(of, OutputOf::Sage { portable: true, .. });
    let g = &if portable {
        c.gpu.with_portable_kernels()
    } else {
        c.gpu.clone()
    };
    let d = heads * SAGE_HEAD_DIM;
    let (case, keys) = match of {
        OutputOf::Sage { sla, portable } => (
            format!(
                "[{len}, {heads}, 128] {}{}",
                if sla { "sagesla 0.1" } else { "sage dense" },
                if portable { " (mma.sync)" } else { "" }
            ),
            len,
        ),
        OutputOf::Flash { keys } => (format!("[{len}, {heads}, 128] x {keys} keys bf16"), keys),
    };
    let mut qkv = Vec::new();
    for rows in [len, keys, keys] {
        let t = c.rng.tensor(&[rows, heads, SAGE_HEAD_DIM], 1.0);
        qkv.push(g.to_dtype(&g.upload(&t)?, DType::BF16)?);
    }
    let w = c.weights(d, d, true)?;
    let (o, o_bf16) = (g.upload_linear_quantizable(&w)?, g.upload_linear(&w)?);
    let (q, k, v) = (&qkv[0], &qkv[1], &qkv[2]);
    let (input, out) = match of {
        OutputOf::Sage { sla, .. } => {
            let proj_l = g.upload_linear(&c.weights(SAGE_HEAD_DIM, SAGE_HEAD_DIM, true)?)?;
            let params = SlaParams::sage(0.1);
            let sla = sla.then_some((&params, &proj_l));
            let input = g.sage_attention_input(q, k, v, sla, &o)?;
            (input, g.sage_attention(q, k, v, sla)?)
        }
        OutputOf::Flash { .. } => (g.attention_input(q, k, v, &o)?, g.attention(q, k, v)?),
    };
    let out = g.reshape(&out, &[len, d])?;

    // The path taken: one scale for every row, no value at e4m3's saturation.
    let Some(rows) = input.fp8_rows() else {
        return Err(crate::Error::invalid(
            "fp8 attention output",
            "the attention output is not FP8",
        ));
    };
    let q = g.download_fp8(rows)?;
    let deq = q.dequantize();
    let largest = deq.iter().fold(0f32, |m, v| m.max(v.abs())) / q.scales[0];
    let one_scale = q.scales.iter().all(|&s| s == q.scales[0]);
    c.push(
        "fp8 attention output",
        &format!("{case}: largest |e4m3| {largest:.1} of 448"),
        if one_scale && largest < 448.0 {
            0.0
        } else {
            f32::NAN
        },
        0.0,
    );
    let want = g.download(&out)?.to_f32_vec();
    let per_row = l2(&Fp8Rows::quantize(&want, len, d)?.dequantize(), &want);
    c.push(
        "fp8 attention output vs bf16 L2",
        &format!("{case} (per row {per_row:.2e})"),
        l2(&deq, &want),
        HIDDEN_VS_ROWS * per_row,
    );

    // Through o: against o's bf16 layer on the bf16 output, beside the output quantized per row.
    let got = g.download(&g.linear_prepared(&input, &o)?)?.to_f32_vec();
    let bf16 = g.download(&g.linear(&out, &o_bf16)?)?.to_f32_vec();
    let per_row = l2(&g.download(&g.linear(&out, &o)?)?.to_f32_vec(), &bf16);
    c.push(
        "fp8 attention o vs bf16 L2",
        &format!("{case} (per row {per_row:.2e})"),
        l2(&got, &bf16),
        (HIDDEN_VS_ROWS * per_row).min(FP8_REL_L2),
    );
    Ok(())
}

/// Rows exercising the quantizer's corners: zeros (the amax floor), a ramp through zero, values
/// across 30 binades (e4m3 subnormals and flush to zero after scaling), a constant row.
fn structured(cols: usize) -> Result<HostTensor> {
    let mut data = vec![0f32; cols];
    data.extend((0..cols).map(|c| c as f32 - (cols / 2) as f32));
    data.extend((0..cols).map(|c| {
        let sign = if c % 2 == 0 { 1.0 } else { -1.0 };
        sign * 2f32.powf(10.0 - 30.0 * c as f32 / cols as f32)
    }));
    data.extend(std::iter::repeat_n(0.75f32, cols));
    HostTensor::from_f32([4, cols], data)?.to_dtype(DType::BF16)
}

/// Runs every FP8 check on `gpu`'s device with inputs drawn from `seed`. Needs compute
/// capability 9.0 (the layers refuse to upload elsewhere, an error here).
pub fn fp8_checks(gpu: &CudaBackend, seed: u64) -> Result<Vec<CheckRow>> {
    let mut c = Checker::<Fp8>::new(gpu, seed);

    c.quantize("structured [4, 64]", &structured(64)?);
    // Rows held by one warp, by two, by six (5120 < K ≤ 6144) and by 14 (the 14B's FFN input).
    c.quantize_randn(&[(37, 96), (300, 1536), (33, 5128), (19, 13824)])?;
    // The norm's rows by one warp, by two (the 1.3B's 1536) and by five (the 14B's 5120).
    for (rows, cols) in [(37, 96), (300, 1536), (19, 5120)] {
        let result = norm_input(&mut c, rows, cols);
        c.record_error("fp8 layer_norm input", &format!("[{rows}, {cols}]"), result);
    }

    c.layers(&[
        (37, 96, 80, true, false),
        (5, 32, 16, false, false),
        (37, 96, 160, true, true),
        (300, 1536, 1536, true, false),
        // The 14B's longest reduction (ffn.2), where the FP8 MMA's fast accumulation sums most.
        (64, 13824, 256, true, false),
    ])?;
    // Residual layers into f32 and bf16 streams: odd rows, the DiT's o (gated and not) and the
    // 14B's ffn.2 reduction.
    c.residual_layers(&[
        ((37, 96, 80), true, DType::F32),
        ((37, 96, 80), true, DType::BF16),
        ((300, 1536, 1536), true, DType::F32),
        ((300, 1536, 1536), false, DType::BF16),
        ((300, 1536, 1536), true, DType::BF16),
        ((64, 13824, 256), true, DType::BF16),
    ]);

    // FFNs whose hidden rows the first GEMM writes in e4m3: small, the 1.3B's and the 14B's
    // widths, and a first layer too uneven for one scale (per-row fallback).
    for (rows, d, ffn, spread) in [
        (37, 96, 160, false),
        (300, 1536, 8960, false),
        (64, 5120, 13824, false),
        (37, 96, 160, true),
    ] {
        let result = hidden(&mut c, rows, d, ffn, spread);
        c.record_error("fp8 hidden", &format!("[{rows}, {d}] -> {ffn}"), result);
    }

    // The attention output in e4m3 for o: ragged and the 1.3B's 480p shape, dense and SageSLA,
    // both Sage kernels, and the cross-attention's over ragged and the text's 512 keys.
    let sage = |sla, portable| OutputOf::Sage { sla, portable };
    for (shape, of) in [
        ((1000, 3), sage(false, false)),
        ((1000, 3), sage(true, false)),
        ((1000, 3), sage(true, true)),
        ((32_760, 12), sage(false, false)),
        ((32_760, 12), sage(true, false)),
        ((32_760, 12), sage(true, true)),
        ((1000, 3), OutputOf::Flash { keys: 300 }),
        ((32_760, 12), OutputOf::Flash { keys: 512 }),
    ] {
        let result = attention_output(&mut c, shape, of);
        c.record_error("fp8 attention output", &format!("{shape:?} {of:?}"), result);
    }

    // A `-quant` checkpoint layer: dequantized, then requantized per output channel.
    let w = c.checkpoint_weights(-127.0)?;
    c.linear(9, &w, false);

    // A layer cuBLASLt's FP8 kernels cannot take (K not a multiple of 16) is refused at upload.
    let odd = c.weights(16, 40, true)?;
    let refused = c.gpu.upload_linear_quantizable(&odd).is_err();
    c.push(
        "fp8 upload refused",
        "[16, 40]: K % 16 != 0",
        if refused { 0.0 } else { f32::NAN },
        0.0,
    );

    // Wan2.1-1.3B at 480p: 21x30x52 tokens.
    c.wan_layers(32_760)?;
    Ok(c.finish())
}
