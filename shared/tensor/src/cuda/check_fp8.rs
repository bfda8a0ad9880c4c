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
//! Shapes: small odd ones (rows not a multiple of any tile), the FFN's GELU epilogue, a `-quant`
//! checkpoint's int8 block weight requantized per channel, and Wan2.1-1.3B's block linears at 480p
//! (32760 tokens: q/k/v/o 1536 -> 1536, ffn.0 1536 -> 8960 with its GELU, ffn.2 8960 -> 1536).

use super::check::CheckRow;
use super::check_quant::{Checker, Format, Layer, l2, measure, quantizer_err};
use super::{CudaBackend, CudaLinear, Quant};
use crate::fp8::Fp8Rows;
use crate::{Backend, DType, HostTensor, Result, compare};

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
            Fp8Rows::quantize(&w32, out_f, in_f)?.dequantize(),
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
    // Rows held by one warp, by three (2048 < K ≤ 6144) and by seven (the 14B's FFN input).
    c.quantize_randn(&[(37, 96), (300, 1536), (33, 5128), (19, 13824)])?;
    // The norm's rows by one warp and by three (the 14B's 5120).
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
