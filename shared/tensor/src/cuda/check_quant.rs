//! What the device checks of the quantized linears ([`super::check_fp8`], [`super::check_int8`])
//! share: the seeded inputs, the rows, one layer run quantized and in bf16 on the GPU and in f32 on
//! the CPU, and the order the shapes are checked in. Each format keeps its quantizer comparison,
//! its reference GEMM and its gates.

use std::marker::PhantomData;

use super::check::{CheckRow, Normal};
use super::{CudaBackend, CudaLinear, CudaTensor, Precision, Quant};
use crate::{Backend, CpuBackend, DType, HostTensor, LinearWeight, LinearWeights, Result, compare};

/// What a format brings to the shared checks.
pub(super) trait Format: Sized {
    /// The backend's quantization.
    const QUANT: Quant;
    /// The ops of the rows a quantizer check, a layer check and the final synchronize fail as.
    const QUANTIZE: &'static str;
    const LINEAR: &'static str;
    const SYNCHRONIZE: &'static str;
    /// How a layer case names a `-quant` checkpoint's weight.
    const INT8_WEIGHT: &'static str;
    /// `(check, message)` of the error when the backend placed a layer in another form.
    const MISPLACED: (&'static str, &'static str);
    /// The ops of the residual-layer rows ([`Checker::residual_layers`]): a failed case, the
    /// comparison with the CPU on the quantized values, the one with the composed path.
    const RESIDUAL: [&'static str; 3];

    /// Whether `layer` is in this format.
    fn placed(layer: &CudaLinear) -> bool;

    /// `x: [rows, cols]` quantized by the host quantizer and dequantized: the values the GPU's
    /// GEMM multiplies.
    fn quantized(x: &[f32], rows: usize, cols: usize) -> Result<Vec<f32>>;

    /// A layer's weight `[rows, cols]` as the format quantizes weights, dequantized.
    fn quantized_weight(w: &[f32], rows: usize, cols: usize) -> Result<Vec<f32>> {
        Self::quantized(w, rows, cols)
    }

    /// `x: [rows, cols]` quantized on the GPU against the host quantizer.
    fn try_quantize(c: &mut Checker<Self>, case: &str, x: &HostTensor) -> Result<()>;

    /// The comparisons of one layer.
    fn try_linear(c: &mut Checker<Self>, l: &Layer) -> Result<()>;
}

/// One layer check: `w` on fresh inputs `[rows, in]`, with its GELU epilogue if `gelu`.
pub(super) struct Layer<'a> {
    pub rows: usize,
    pub w: &'a LinearWeights,
    pub gelu: bool,
    /// The rows' case name.
    pub case: String,
}

/// A quantized layer shape: `(rows, in, out, bias, gelu)`.
pub(super) type LayerShape = (usize, usize, usize, bool, bool);

/// A residual layer case ([`Checker::residual_layers`]): `(rows, in, out)`, gated, the stream's
/// type.
pub(super) type ResidualCase = ((usize, usize, usize), bool, DType);

/// Max rel of the branch a quantized layer adds into the residual stream in its GEMM (output −
/// stream) against the CPU's f32 linear on the quantized values, times the gate: FP8's fast
/// accumulation (8.0e-3 at K = 13824, 1.01e-2 at K = 8960, check_fp8.rs) and, into a bf16 stream
/// of spread 1, the sum's rounding (2⁻⁹ of values up to ~4, ~4e-3 of the branch's maximum);
/// INT8 sums exactly and leaves the rounding.
const RESIDUAL_SIM: f32 = 2e-2;

/// Rel L2 gate of that branch against the same layer's bf16 output added by the residual kernel:
/// the composed path rounds the branch to bf16 (2⁻⁹ relative at most, ~1.1e-3 RMS) and, into a
/// bf16 stream, the sum a second time; an FP8 layer's composed GEMM is another kernel, whose fast
/// accumulation sums in another order. H100: 1.6e-3 – 4.8e-3 for FP8
/// (bench/results/2026-11-28-residual-gemm.md).
const COMPOSED_L2: f32 = 1e-2;

pub(super) struct Checker<F> {
    /// The backend under test, at bf16 with the format's [`Quant`].
    pub gpu: CudaBackend,
    /// Appended to the layer checks' case names: which kernel `gpu` runs, where it has a choice.
    pub kernel: &'static str,
    pub cpu: CpuBackend,
    pub rng: Normal,
    rows: Vec<CheckRow>,
    format: PhantomData<F>,
}

/// The outputs of one layer on the GPU.
pub(super) struct GpuOutputs {
    /// The layer's input, seeded and rounded to bf16.
    pub x: HostTensor,
    /// The quantized layer's output.
    pub got: Vec<f32>,
    /// The bf16 layer's output, the path quantization replaces.
    pub bf16: Vec<f32>,
}

/// `linear` or `linear_gelu_tanh` of `x` through `w` on any backend.
pub(super) fn apply<B: Backend>(
    b: &B,
    x: &B::Tensor,
    w: &B::Linear,
    gelu: bool,
) -> Result<B::Tensor> {
    if gelu {
        b.linear_gelu_tanh(x, w)
    } else {
        b.linear(x, w)
    }
}

/// `f(a, b)`, or NaN when the lengths differ.
pub(super) fn measure(f: impl Fn(&[f32], &[f32]) -> f32, a: &[f32], b: &[f32]) -> f32 {
    if a.len() == b.len() {
        f(a, b)
    } else {
        f32::NAN
    }
}

pub(super) fn l2(a: &[f32], b: &[f32]) -> f32 {
    measure(|a, b| compare::rel_l2(a, b) as f32, a, b)
}

/// The error of a device quantizer against the host one: 0 when equal, NaN when a scale differs,
/// else `values`' error (the values dequantized differ).
pub(super) fn quantizer_err(equal: bool, scales_equal: bool, values: impl FnOnce() -> f32) -> f32 {
    if equal {
        0.0
    } else if !scales_equal {
        f32::NAN
    } else {
        values()
    }
}

/// The case name of a layer check; `int8_weight` names a `-quant` checkpoint's weight.
fn layer_case(rows: usize, w: &LinearWeights, gelu: bool, int8_weight: &str) -> String {
    let (out_f, in_f) = (w.out_features, w.in_features);
    format!(
        "[{rows}, {in_f}] -> {out_f}{}{}{}",
        if w.bias.is_some() { " + bias" } else { "" },
        if gelu { ", gelu" } else { "" },
        if let LinearWeight::Int8Block { .. } = w.weight {
            int8_weight
        } else {
            ""
        }
    )
}

impl<F: Format> Checker<F> {
    /// A checker of `gpu`'s device at bf16 in format `F`, inputs drawn from `seed`.
    pub fn new(gpu: &CudaBackend, seed: u64) -> Self {
        Self {
            gpu: gpu.with_precision(Precision::Bf16).with_quant(F::QUANT),
            kernel: "",
            cpu: CpuBackend,
            rng: Normal::new(seed),
            rows: Vec::new(),
            format: PhantomData,
        }
    }

    /// The quantizer check of `x`; an error is a failed row.
    pub fn quantize(&mut self, case: &str, x: &HostTensor) {
        let result = F::try_quantize(self, case, x);
        self.record_error(F::QUANTIZE, case, result);
    }

    /// The layer check of `w` on fresh inputs `[rows, in]`; an error is a failed row.
    pub fn linear(&mut self, rows: usize, w: &LinearWeights, gelu: bool) {
        let case = layer_case(rows, w, gelu, F::INT8_WEIGHT) + self.kernel;
        let l = Layer {
            rows,
            w,
            gelu,
            case,
        };
        let result = F::try_linear(self, &l);
        self.record_error(F::LINEAR, &l.case, result);
    }

    pub fn push(&mut self, op: &'static str, case: &str, err: f32, tol: f32) {
        self.rows.push(CheckRow {
            op,
            case: case.to_string(),
            err,
            tol,
        });
    }

    /// Records `result`'s error (a launch, cuBLASLt or CUDA failure) as a failed row, so one
    /// broken case leaves the others' results.
    pub fn record_error(&mut self, op: &'static str, case: &str, result: Result<()>) {
        if let Err(e) = result {
            self.push(op, &format!("{case}: {e}"), f32::NAN, 0.0);
        }
    }

    /// Seeded weights `[out, in]` rounded to bf16, as a bf16 checkpoint holds them.
    pub fn weights(&mut self, out_f: usize, in_f: usize, bias: bool) -> Result<LinearWeights> {
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

    /// A `-quant` checkpoint layer `[136, 256]` with a bias: seeded int8 values clamped to
    /// `[min, 127]`, block scales on a ramp.
    pub fn checkpoint_weights(&mut self, min: f32) -> Result<LinearWeights> {
        let (out_f, in_f) = (136usize, 256usize);
        let values: Vec<i8> = (0..out_f * in_f)
            .map(|_| (self.rng.sample() * 40.0).clamp(min, 127.0) as i8)
            .collect();
        let (go, gi) = LinearWeights::quant_grid(out_f, in_f);
        let scales: Vec<f32> = (0..go * gi).map(|i| 0.001 + 0.0002 * i as f32).collect();
        Ok(LinearWeights {
            out_features: out_f,
            in_features: in_f,
            weight: LinearWeight::Int8Block { values, scales },
            bias: Some(self.rng.tensor(&[out_f], 0.1).to_dtype(DType::BF16)?),
        })
    }

    /// The quantizer checks of seeded `[rows, cols]` inputs, as bf16 then as f32.
    pub fn quantize_randn(&mut self, shapes: &[(usize, usize)]) -> Result<()> {
        for &(rows, cols) in shapes {
            let x = self.rng.tensor(&[rows, cols], 1.0);
            let case = format!("randn [{rows}, {cols}]");
            self.quantize(&case, &x.to_dtype(DType::BF16)?);
            self.quantize(&case, &x);
        }
        Ok(())
    }

    /// The layer checks of seeded layers of each shape.
    pub fn layers(&mut self, shapes: &[LayerShape]) -> Result<()> {
        for &(rows, in_f, out_f, bias, gelu) in shapes {
            let w = self.weights(out_f, in_f, bias)?;
            self.linear(rows, &w, gelu);
        }
        Ok(())
    }

    /// The layer checks of Wan2.1-1.3B's block linears at `tokens` rows: q/k/v/o 1536 -> 1536,
    /// ffn.0 1536 -> 8960 with its GELU, ffn.2 8960 -> 1536.
    pub fn wan_layers(&mut self, tokens: usize) -> Result<()> {
        let (d, f) = (1536usize, 8960usize);
        self.layers(&[
            (tokens, d, d, true, false),
            (tokens, d, f, true, true),
            (tokens, f, d, true, false),
        ])
    }

    /// Runs `l` on the GPU, in format `F` (an error if the backend placed it otherwise) and in
    /// bf16. `input` sees the device input while the quantized layer is live.
    pub fn gpu_outputs<T>(
        &mut self,
        &Layer { rows, w, gelu, .. }: &Layer,
        input: impl FnOnce(&CudaBackend, &CudaTensor) -> Result<T>,
    ) -> Result<(GpuOutputs, T)> {
        let x = self
            .rng
            .tensor(&[rows, w.in_features], 1.0)
            .to_dtype(DType::BF16)?;
        let b = &self.gpu;
        let xd = b.to_dtype(&b.upload(&x)?, DType::BF16)?;
        let layer = b.upload_linear_quantizable(w)?;
        if !F::placed(&layer) {
            let (check, misplaced) = F::MISPLACED;
            return Err(crate::Error::invalid(check, misplaced));
        }
        let got = b.download(&apply(b, &xd, &layer, gelu)?)?.to_f32_vec();
        let seen = input(b, &xd)?;
        drop(layer);
        let dense = b.upload_linear(w)?;
        let bf16 = b.download(&apply(b, &xd, &dense, gelu)?)?.to_f32_vec();
        drop((dense, xd));
        Ok((GpuOutputs { x, got, bf16 }, seen))
    }

    /// The residual-layer check of each case; an error is a failed row.
    pub fn residual_layers(&mut self, cases: &[ResidualCase]) {
        for &(shape, gated, stream) in cases {
            let (rows, in_f, out_f) = shape;
            let case = format!(
                "[{rows}, {in_f}] -> {out_f} + bias{}, {stream:?} stream{}",
                if gated { ", gated" } else { "" },
                self.kernel
            );
            let result = self.linear_residual(shape, gated, stream, &case);
            self.record_error(F::RESIDUAL[0], &case, result);
        }
    }

    /// [`Backend::linear_residual`] of a seeded layer `[out_f, in_f]` with a bias on `rows` rows,
    /// gated (a seeded f32 gate, as the DiT's modulation) or not, into residual rows of
    /// `stream`'s type: f32 rows of mean 8 and spread 4, or bf16 rows of spread 1 (the bf16 DiT's
    /// stream, whose sum rounds to bf16: spread 1 keeps that rounding, 2⁻⁹ of the sum, near the
    /// branch's own). The branch (output − residual) against the CPU's f32 linear on the host
    /// quantizer's values, times the gate, at [`RESIDUAL_SIM`]; and against the GPU's composed
    /// path at [`COMPOSED_L2`].
    fn linear_residual(
        &mut self,
        (rows, in_f, out_f): (usize, usize, usize),
        gated: bool,
        stream: DType,
        case: &str,
    ) -> Result<()> {
        let w = self.weights(out_f, in_f, true)?;
        let x = self.rng.tensor(&[rows, in_f], 1.0).to_dtype(DType::BF16)?;
        let r = if stream == DType::F32 {
            let r = self.rng.tensor(&[rows, out_f], 4.0).to_f32_vec();
            HostTensor::from_f32([rows, out_f], r.iter().map(|v| v + 8.0).collect())?
        } else {
            self.rng.tensor(&[rows, out_f], 1.0).to_dtype(stream)?
        };
        let gate = self.rng.tensor(&[out_f], 1.0);
        let g = &self.gpu;
        let layer = g.upload_linear_quantizable(&w)?;
        if !F::placed(&layer) {
            let (check, misplaced) = F::MISPLACED;
            return Err(crate::Error::invalid(check, misplaced));
        }
        let xd = g.to_dtype(&g.upload(&x)?, DType::BF16)?;
        let rd = g.to_dtype(&g.upload(&r)?, stream)?;
        let gd = g.upload(&gate)?;
        let gate_d = gated.then_some(&gd);
        let fused = g.download(&g.linear_residual(&xd, &layer, &rd, gate_d)?)?;
        let composed = g.download(&g.residual(&rd, &g.linear(&xd, &layer)?, gate_d)?)?;
        let r = r.to_f32_vec();
        let branch = |t: HostTensor| -> Vec<f32> {
            t.to_f32_vec().iter().zip(&r).map(|(v, r)| v - r).collect()
        };
        let (fused, composed) = (branch(fused), branch(composed));

        let l = Layer {
            rows,
            w: &w,
            gelu: false,
            case: case.to_string(),
        };
        let sim = self.cpu_linear(
            &l,
            F::quantized(&x.to_f32_vec(), rows, in_f)?,
            F::quantized_weight(&w.dense_f32(), out_f, in_f)?,
        )?;
        let gate = gate.to_f32_vec();
        let sim: Vec<f32> = sim
            .iter()
            .enumerate()
            .map(|(i, v)| if gated { v * gate[i % out_f] } else { *v })
            .collect();
        let [_, vs_sim, vs_composed] = F::RESIDUAL;
        self.push(
            vs_sim,
            case,
            measure(compare::max_rel_err, &fused, &sim),
            RESIDUAL_SIM,
        );
        self.push(vs_composed, case, l2(&fused, &composed), COMPOSED_L2);
        Ok(())
    }

    /// The CPU's f32 linear of `x: [n, in]` through `l`'s shape, bias and epilogue with `weight`
    /// as its weight.
    pub fn cpu_linear(
        &self,
        &Layer { w, gelu, .. }: &Layer,
        x: Vec<f32>,
        weight: Vec<f32>,
    ) -> Result<Vec<f32>> {
        let (out_f, in_f) = (w.out_features, w.in_features);
        let c = &self.cpu;
        let layer = c.upload_linear(&LinearWeights {
            out_features: out_f,
            in_features: in_f,
            weight: LinearWeight::Dense(HostTensor::from_f32([out_f, in_f], weight)?),
            bias: w.bias.clone(),
        })?;
        let n = x.len() / in_f;
        let x = c.upload(&HostTensor::from_f32([n, in_f], x)?)?;
        Ok(c.download(&apply(c, &x, &layer, gelu)?)?.to_f32_vec())
    }

    /// The end of the checks: a synchronize error as a failed row, and the rows.
    pub fn finish(mut self) -> Vec<CheckRow> {
        let synced = self.gpu.synchronize();
        self.record_error(F::SYNCHRONIZE, "after the checks", synced);
        self.rows
    }
}
