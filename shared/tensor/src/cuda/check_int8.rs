//! The device checks of the INT8 W8A8 linears ([`Quant::Int8`]), on a backend that poisons its
//! allocations.
//!
//! Inputs are seeded normal samples rounded to bf16: `x ~ N(0, 1)`, `W ~ N(0, 1/K)`, bias
//! `~ N(0, 0.1²)`. Checks:
//!
//! - **`int8 quantize`**: the block quantizer equals the host one ([`crate::int8`]) bit for bit
//!   (error 0), on random rows (row counts not a multiple of 128), structured rows (a zero tile,
//!   a ramp, values across 30 binades, a constant) and both input types;
//! - **`int8 gemm vs host`**: the layer's GEMM on the GPU's quantized input against
//!   [`crate::int8::gemm`] on the same int8 values and scales, which repeats the kernel's f32
//!   operations: max rel ≤ [`HOST`] = 2⁻⁸ (the bf16 output's rounding), and **`int8 gemm bits`**,
//!   the fraction of outputs whose bf16 differs from the host value rounded to bf16, gated at 0;
//!   for the Wan shapes on the first and the last (partial) 128-row tile, the CPU being slow;
//! - **`int8 linear vs f32 L2`** / **`vs bf16 L2`**: rel L2 against the CPU's f32 linear on the
//!   unquantized values (same rows) and against the GPU's bf16 linear: what INT8 costs, gated at
//!   [`INT8_REL_L2`], with the format's own floor (the host GEMM vs f32) printed as `sim`;
//! - **`int8 linear residual`**: a layer adding its gated output into a bf16 residual stream in
//!   the GEMM's epilogue, against the CPU on the quantized values and the GPU's composed path
//!   (check_quant.rs).
//!
//! Shapes: small ones with row tails, a GELU layer, a `-quant` checkpoint's int8 block weight kept
//! as is, N not a multiple of 128, refusals (K % 128, N % 8), and Wan2.1-1.3B's block linears at
//! `tokens` tokens (32760 at 480p).

use super::check::CheckRow;
use super::check_quant::{Checker, Format, Layer, l2, measure, quantizer_err};
use super::{CudaBackend, CudaLinear, Quant};
use crate::int8::{Int8Blocks, gemm};
use crate::{Backend, DType, HostTensor, LinearWeight, QUANT_BLOCK, Result, compare};

/// Max rel of the GPU GEMM against the host one on the same quantized values: the bf16 output's
/// rounding, half an ulp (2⁻⁹) of values up to the maximum, with a factor 2 of margin.
const HOST: f32 = 1.0 / 256.0;

/// Rel L2 gate against the unquantized f32 and bf16 linears: issue 6's per-layer gate. On random
/// Gaussian data a 128×128 tile's amax is ~4.5σ, so the step is ~0.035σ and rounding adds
/// 0.035/√12 ≈ 1 % RMS per operand, ≈ 1.4 % on the output (the printed `sim` floor): unlike FP8's
/// ~3.7 %, INT8 blocks meet 3e-2 even on random data.
pub const INT8_REL_L2: f32 = 3e-2;

/// Fraction of `got` (bf16 values) differing from `want` rounded to bf16.
fn bits_differ(got: &[f32], want: &[f32]) -> f32 {
    measure(
        |g, w| {
            let bad = g
                .iter()
                .zip(w)
                .filter(|(g, w)| half::bf16::from_f32(**g) != half::bf16::from_f32(**w))
                .count();
            bad as f32 / g.len().max(1) as f32
        },
        got,
        want,
    )
}

/// The INT8 side of the shared checks.
struct Int8;

impl Format for Int8 {
    const QUANT: Quant = Quant::Int8;
    const QUANTIZE: &'static str = "int8 quantize";
    const LINEAR: &'static str = "int8 linear";
    const SYNCHRONIZE: &'static str = "int8 synchronize";
    const INT8_WEIGHT: &'static str = ", int8 checkpoint weight";
    const MISPLACED: (&'static str, &'static str) = (
        "int8 check",
        "upload_linear_quantizable placed another layer on an INT8 backend",
    );

    const RESIDUAL: [&'static str; 3] = [
        "int8 linear residual",
        "int8 linear residual vs sim",
        "int8 linear residual vs composed L2",
    ];

    fn placed(layer: &CudaLinear) -> bool {
        layer.is_int8()
    }

    fn quantized(x: &[f32], rows: usize, cols: usize) -> Result<Vec<f32>> {
        Ok(Int8Blocks::quantize(x, rows, cols)?.dequantize())
    }

    fn try_quantize(c: &mut Checker<Self>, case: &str, x: &HostTensor) -> Result<()> {
        let (rows, cols) = (x.shape[0], x.shape[1]);
        let b = &c.gpu;
        let d = b.to_dtype(&b.upload(x)?, x.dtype())?;
        let got = b.download_int8(&b.quantize_int8(&d)?)?;
        let want = Int8Blocks::quantize(&x.to_f32_vec(), rows, cols)?;
        let err = quantizer_err(got == want, got.scales == want.scales, || {
            compare::max_rel_err(&got.dequantize(), &want.dequantize()).max(f32::MIN_POSITIVE)
        });
        c.push(Self::QUANTIZE, &format!("{case} {}", x.dtype()), err, 0.0);
        Ok(())
    }

    /// The GEMM against the host one and the L2 rows of the module doc.
    fn try_linear(c: &mut Checker<Self>, l: &Layer) -> Result<()> {
        let &Layer {
            rows,
            w,
            gelu,
            ref case,
        } = l;
        let (out_f, in_f) = (w.out_features, w.in_features);
        let (gpu, xq) = c.gpu_outputs(l, |b, xd| b.download_int8(&b.quantize_int8(xd)?))?;

        // The host side on the first and the last row tile (all rows for small cases).
        let tiles = rows.div_ceil(QUANT_BLOCK);
        let picked: Vec<usize> = if tiles <= 2 {
            (0..tiles).collect()
        } else {
            vec![0, tiles - 1]
        };
        let row_range = |t: usize| t * QUANT_BLOCK..rows.min((t + 1) * QUANT_BLOCK);
        let pick = |v: &[f32], width: usize| -> Vec<f32> {
            picked
                .iter()
                .flat_map(|&t| {
                    let r = row_range(t);
                    v[r.start * width..r.end * width].to_vec()
                })
                .collect()
        };
        let wq = match &w.weight {
            LinearWeight::Int8Block { values, scales } => Int8Blocks {
                rows: out_f,
                cols: in_f,
                values: values.clone(),
                scales: scales.clone(),
            },
            LinearWeight::Dense(_) | LinearWeight::Mapped(_) | LinearWeight::Seeded(_) => {
                Int8Blocks::quantize(&w.dense_f32(), out_f, in_f)?
            }
        };
        let bias = w.bias.as_ref().map(HostTensor::to_f32_vec);
        let mut host = Vec::new();
        for &t in &picked {
            host.extend(gemm(&xq.row_blocks(t, 1)?, &wq, bias.as_deref())?);
        }
        let host = if gelu {
            let cpu = &c.cpu;
            let t = cpu.upload(&HostTensor::from_f32([host.len() / out_f, out_f], host)?)?;
            cpu.download(&cpu.gelu_tanh(&t)?)?.to_f32_vec()
        } else {
            host
        };
        let reference = c.cpu_linear(l, pick(&gpu.x.to_f32_vec(), in_f), w.dense_f32())?;
        let got_picked = pick(&gpu.got, out_f);
        let floor = l2(&host, &reference);
        c.push(
            "int8 gemm vs host",
            case,
            measure(compare::max_rel_err, &got_picked, &host),
            if gelu { 1e-2 } else { HOST },
        );
        if !gelu {
            c.push("int8 gemm bits", case, bits_differ(&got_picked, &host), 0.0);
        }
        c.push(
            "int8 linear vs f32 L2",
            &format!("{case} (sim {floor:.1e})"),
            l2(&got_picked, &reference),
            INT8_REL_L2,
        );
        c.push(
            "int8 linear vs bf16 L2",
            case,
            l2(&gpu.got, &gpu.bf16),
            INT8_REL_L2,
        );
        Ok(())
    }
}

fn refused(c: &mut Checker<Int8>, case: &str, out_f: usize, in_f: usize) -> Result<()> {
    let w = c.weights(out_f, in_f, true)?;
    let err = match c.gpu.upload_linear_quantizable(&w) {
        Err(e) if e.to_string().contains("multiple of") => 0.0,
        _ => f32::NAN,
    };
    c.push("int8 upload refused", case, err, 0.0);
    Ok(())
}

/// Rows `[130, 256]`: tile (0, 0) a ramp and values across 30 binades, tile (0, 1) zeros (the
/// amax floor), the two-row tail tile constant and alternating.
fn structured() -> Result<HostTensor> {
    let (rows, cols) = (130usize, 256usize);
    let data = (0..rows * cols)
        .map(|i| {
            let (r, c) = (i / cols, i % cols);
            match (r / 128, c / 128) {
                (0, 0) if r % 2 == 0 => c as f32 - 64.0,
                (0, 0) => {
                    let sign = if c % 2 == 0 { 1.0 } else { -1.0 };
                    sign * 2f32.powf(10.0 - 30.0 * c as f32 / 128.0)
                }
                (0, 1) => 0.0,
                (_, 0) => 0.75,
                _ => (if c % 2 == 0 { 1.0 } else { -1.0 }) * (r as f32 + 0.5),
            }
        })
        .collect();
    HostTensor::from_f32([rows, cols], data)?.to_dtype(DType::BF16)
}

/// Runs every INT8 check on `gpu`'s device; the Wan-shape cases at `tokens` rows. Where the GPU's
/// GEMM is not the portable mma.sync one (H100/H200), the layer checks run on both.
pub fn int8_checks(gpu: &CudaBackend, seed: u64, tokens: usize) -> Result<Vec<CheckRow>> {
    let mut c = Checker::<Int8>::new(gpu, seed);

    c.quantize("structured [130, 256]", &structured()?);
    c.quantize_randn(&[(37, 128), (300, 1536)])?;

    // Upstream's kernel would leave zeros for these; here they are refused at upload.
    refused(&mut c, "[16, 96]: K % 128 != 0", 16, 96)?;
    refused(&mut c, "[20, 128]: N % 8 != 0", 20, 128)?;

    layer_checks(&mut c, tokens)?;
    let mut rows = c.finish();
    let portable = gpu.with_portable_kernels();
    if portable.int8_gemm_kernel() != gpu.int8_gemm_kernel() {
        let mut c = Checker::<Int8>::new(&portable, seed);
        c.kernel = " (mma.sync)";
        layer_checks(&mut c, tokens)?;
        rows.extend(c.finish());
    }
    Ok(rows)
}

/// The GEMM checks: small shapes with row and column tails (K from one to twelve 128-deep steps,
/// odd and even counts), layers adding into a residual stream, a `-quant` checkpoint weight and
/// Wan2.1-1.3B's block linears.
fn layer_checks(c: &mut Checker<Int8>, tokens: usize) -> Result<()> {
    c.layers(&[
        (37, 128, 80, true, false),
        (5, 256, 16, false, false),
        (37, 256, 160, true, true),
        (300, 384, 136, true, false),
        (300, 1536, 1536, true, false),
        (1000, 640, 392, true, false),
    ])?;
    // Layers adding into the bf16 DiT's residual stream in the epilogue: row and column tails,
    // the DiT's o (gated and not), the 14B's ffn.2 reduction.
    c.residual_layers(&[
        ((37, 128, 80), true, DType::BF16),
        ((300, 384, 136), true, DType::BF16),
        ((300, 1536, 1536), false, DType::BF16),
        ((300, 1536, 1536), true, DType::BF16),
        ((64, 13824, 256), true, DType::BF16),
    ]);
    // A `-quant` checkpoint layer, kept as its int8 values and scales.
    let w = c.checkpoint_weights(-128.0)?;
    c.linear(9, &w, false);
    c.wan_layers(tokens)
}
