//! The device checks of the FP8 linear layers ([`Quant::Fp8`], compute capability 9.0).
//!
//! Inputs are seeded normal samples rounded to bf16, as a bf16 checkpoint and the bf16 DiT's
//! activations hold them: `x ~ N(0, 1)`, `W ~ N(0, 1/K)`, bias `~ N(0, 0.1²)`. Every layer shape
//! is compared three ways, on a backend that poisons its allocations:
//!
//! - **`vs sim`**, the implementation gate: the CPU's f32 linear on exactly the values the host
//!   quantizer ([`crate::fp8`]) produces from the same inputs, so only the GPU's summation order
//!   and its bf16 output rounding (2⁻⁹ relative) remain: max rel ≤ [`SIM`] = 1e-2, the bf16
//!   checks' tolerance. A scale applied per token where it belongs per channel, a transposed
//!   operand or an unwritten output fails this by orders of magnitude;
//! - **`vs f32 L2`**: rel L2 against the CPU's f32 linear on the unquantized values: what FP8
//!   costs, gated at [`FP8_REL_L2`];
//! - **`vs bf16 L2`**: rel L2 against the GPU's bf16 linear, the path FP8 replaces, same gate.
//!
//! And the quantization kernel itself must equal the host quantizer bit for bit (`fp8 quantize`,
//! error 0), on random rows, structured rows (zeros, a ramp, values across 30 binades) and both
//! input types.
//!
//! Shapes: small odd ones (rows not a multiple of any tile), the FFN's GELU epilogue, a `-quant`
//! checkpoint's int8 block weight requantized per channel, and Wan2.1-1.3B's block linears at 480p
//! (32760 tokens: q/k/v/o 1536 -> 1536, ffn.0 1536 -> 8960 with its GELU, ffn.2 8960 -> 1536).

use super::check::{CheckRow, Normal};
use super::{CudaBackend, Precision, Quant};
use crate::fp8::Fp8Rows;
use crate::{Backend, CpuBackend, DType, HostTensor, LinearWeight, LinearWeights, Result, compare};

/// Max rel of the FP8 GPU linear against the CPU on the same quantized values.
const SIM: f32 = 1e-2;

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

struct Checker {
    fp8: CudaBackend,
    cpu: CpuBackend,
    rng: Normal,
    rows: Vec<CheckRow>,
}

/// `linear` or `linear_gelu_tanh` of `x` through `w` on any backend.
fn apply<B: Backend>(b: &B, x: &B::Tensor, w: &B::Linear, gelu: bool) -> Result<B::Tensor> {
    if gelu {
        b.linear_gelu_tanh(x, w)
    } else {
        b.linear(x, w)
    }
}

impl Checker {
    fn push(&mut self, op: &'static str, case: &str, err: f32, tol: f32) {
        self.rows.push(CheckRow {
            op,
            case: case.to_string(),
            err,
            tol,
        });
    }

    /// Records `result`'s error (a launch, cuBLASLt or CUDA failure) as a failed row, so one
    /// broken case leaves the others' results.
    fn record_error(&mut self, op: &'static str, case: &str, result: Result<()>) {
        if let Err(e) = result {
            self.push(op, &format!("{case}: {e}"), f32::NAN, 0.0);
        }
    }

    /// `x: [rows, cols]` quantized on the GPU, from a bf16 tensor when `x` is bf16, against the
    /// host quantizer.
    fn quantize(&mut self, case: &str, x: &HostTensor) {
        let result = self.try_quantize(case, x);
        self.record_error("fp8 quantize", case, result);
    }

    fn try_quantize(&mut self, case: &str, x: &HostTensor) -> Result<()> {
        let (rows, cols) = (x.shape[0], x.shape[1]);
        let as_bf16 = x.dtype() == DType::BF16;
        let d = self.fp8.upload(x)?;
        let d = if as_bf16 {
            self.fp8.to_dtype(&d, DType::BF16)?
        } else {
            d
        };
        let got = self.fp8.download_fp8(&self.fp8.quantize_fp8(&d)?)?;
        let want = Fp8Rows::quantize(&x.to_f32_vec(), rows, cols)?;
        let err = if got == want {
            0.0
        } else if got.scales != want.scales {
            f32::NAN
        } else {
            compare::max_rel_err(&got.dequantize(), &want.dequantize())
        };
        let input = if as_bf16 { "bf16" } else { "f32" };
        self.push("fp8 quantize", &format!("{case} {input}"), err, 0.0);
        Ok(())
    }

    /// The three comparisons of one layer on fresh inputs `[rows, in]`.
    fn linear(&mut self, rows: usize, w: &LinearWeights, gelu: bool) {
        let (out_f, in_f) = (w.out_features, w.in_features);
        let case = format!(
            "[{rows}, {in_f}] -> {out_f}{}{}{}",
            if w.bias.is_some() { " + bias" } else { "" },
            if gelu { ", gelu" } else { "" },
            if let LinearWeight::Int8Block { .. } = w.weight {
                ", int8 block weight"
            } else {
                ""
            }
        );
        let result = self.try_linear(rows, w, gelu, &case);
        self.record_error("fp8 linear", &case, result);
    }

    fn try_linear(&mut self, rows: usize, w: &LinearWeights, gelu: bool, case: &str) -> Result<()> {
        let (out_f, in_f) = (w.out_features, w.in_features);
        let x = self.rng.tensor(&[rows, in_f], 1.0).to_dtype(DType::BF16)?;
        let b = &self.fp8;
        let xd = b.to_dtype(&b.upload(&x)?, DType::BF16)?;
        let layer = b.upload_linear_quantizable(w)?;
        if !layer.is_fp8() {
            return Err(crate::Error::invalid(
                "fp8 check",
                "upload_linear_quantizable placed a dense layer on an FP8 backend",
            ));
        }
        let got = b.download(&apply(b, &xd, &layer, gelu)?)?.to_f32_vec();
        drop(layer);
        let dense = b.upload_linear(w)?;
        let bf16 = b.download(&apply(b, &xd, &dense, gelu)?)?.to_f32_vec();
        drop((dense, xd));

        let cpu = |x: Vec<f32>, weight: Vec<f32>| -> Result<Vec<f32>> {
            let c = &self.cpu;
            let layer = c.upload_linear(&LinearWeights {
                out_features: out_f,
                in_features: in_f,
                weight: LinearWeight::Dense(HostTensor::from_f32([out_f, in_f], weight)?),
                bias: w.bias.clone(),
            })?;
            let x = c.upload(&HostTensor::from_f32([rows, in_f], x)?)?;
            Ok(c.download(&apply(c, &x, &layer, gelu)?)?.to_f32_vec())
        };
        let (x32, w32) = (x.to_f32_vec(), w.dense_f32());
        let sim = cpu(
            Fp8Rows::quantize(&x32, rows, in_f)?.dequantize(),
            Fp8Rows::quantize(&w32, out_f, in_f)?.dequantize(),
        )?;
        let reference = cpu(x32, w32)?;

        let measure = |f: fn(&[f32], &[f32]) -> f32, a: &[f32], b: &[f32]| {
            if a.len() == b.len() {
                f(a, b)
            } else {
                f32::NAN
            }
        };
        let l2 = |a: &[f32], b: &[f32]| measure(|a, b| compare::rel_l2(a, b) as f32, a, b);
        let floor = l2(&sim, &reference);
        self.push(
            "fp8 linear vs sim",
            case,
            measure(compare::max_rel_err, &got, &sim),
            SIM,
        );
        self.push(
            "fp8 linear vs f32 L2",
            &format!("{case} (sim {floor:.1e})"),
            l2(&got, &reference),
            FP8_REL_L2,
        );
        self.push("fp8 linear vs bf16 L2", case, l2(&got, &bf16), FP8_REL_L2);
        Ok(())
    }

    /// Seeded weights `[out, in]` rounded to bf16, as a bf16 checkpoint holds them.
    fn weights(&mut self, out_f: usize, in_f: usize, bias: bool) -> Result<LinearWeights> {
        let w = self.rng.tensor(&[out_f, in_f], 1.0 / (in_f as f32).sqrt());
        Ok(LinearWeights {
            out_features: out_f,
            in_features: in_f,
            weight: LinearWeight::Dense(w.to_dtype(DType::BF16)?),
            bias: bias
                .then(|| self.rng.tensor(&[out_f], 0.1).to_dtype(DType::BF16))
                .transpose()?,
        })
    }
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
    let mut c = Checker {
        fp8: gpu.with_precision(Precision::Bf16).with_quant(Quant::Fp8),
        cpu: CpuBackend,
        rng: Normal::new(seed),
        rows: Vec::new(),
    };

    c.quantize("structured [4, 64]", &structured(64)?);
    // Rows held by one warp, by three (2048 < K ≤ 6144) and by seven (the 14B's FFN input).
    for (rows, cols) in [(37usize, 96usize), (300, 1536), (33, 5128), (19, 13824)] {
        let x = c.rng.tensor(&[rows, cols], 1.0);
        let case = format!("randn [{rows}, {cols}]");
        c.quantize(&case, &x.to_dtype(DType::BF16)?);
        c.quantize(&case, &x);
    }

    for (rows, in_f, out_f, bias, gelu) in [
        (37usize, 96usize, 80usize, true, false),
        (5, 32, 16, false, false),
        (37, 96, 160, true, true),
        (300, 1536, 1536, true, false),
    ] {
        let w = c.weights(out_f, in_f, bias)?;
        c.linear(rows, &w, gelu);
    }
    // A `-quant` checkpoint layer: dequantized, then requantized per output channel.
    let (out_f, in_f) = (136usize, 256usize);
    let values: Vec<i8> = (0..out_f * in_f)
        .map(|_| (c.rng.sample() * 40.0).clamp(-127.0, 127.0) as i8)
        .collect();
    let (go, gi) = LinearWeights::quant_grid(out_f, in_f);
    let scales: Vec<f32> = (0..go * gi).map(|i| 0.001 + 0.0002 * i as f32).collect();
    let w = LinearWeights {
        out_features: out_f,
        in_features: in_f,
        weight: LinearWeight::Int8Block { values, scales },
        bias: Some(c.rng.tensor(&[out_f], 0.1).to_dtype(DType::BF16)?),
    };
    c.linear(9, &w, false);

    // A layer cuBLASLt's FP8 kernels cannot take (K not a multiple of 16) is refused at upload.
    let odd = c.weights(16, 40, true)?;
    let refused = c.fp8.upload_linear_quantizable(&odd).is_err();
    c.push(
        "fp8 upload refused",
        "[16, 40]: K % 16 != 0",
        if refused { 0.0 } else { f32::NAN },
        0.0,
    );

    // Wan2.1-1.3B at 480p: 21x30x52 tokens.
    let (l, d, f) = (32_760usize, 1536usize, 8960usize);
    for (in_f, out_f, gelu) in [(d, d, false), (d, f, true), (f, d, false)] {
        let w = c.weights(out_f, in_f, true)?;
        c.linear(l, &w, gelu);
    }
    let synced = gpu.synchronize();
    c.record_error("fp8 synchronize", "after the checks", synced);
    Ok(c.rows)
}
