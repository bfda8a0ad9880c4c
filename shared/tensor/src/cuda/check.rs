//! The device check: every op of [`Backend`] on fresh random inputs, CUDA against the CPU oracle.
//!
//! Run it on a backend built with [`super::CudaOptions::poison_allocations`], so any output
//! element an op leaves unwritten is NaN and fails. Inputs are seeded normal samples (never
//! zeros), with odd sizes that are not multiples of the kernels' tiles.
//!
//! The error measure is [`compare::max_rel_err`], `max|gpu − cpu| / max|cpu|`. Tolerances, all
//! with f32 on both sides:
//!
//! - **0** (bit-exact): transfers (small ones, ones through the pinned staging ring, asynchronous
//!   downloads), reshape, slice, permute, concat, (un)patchify, interleave_phases (pure
//!   copies); add, mul, clamp (one correctly rounded operation per element on both sides);
//! - **1e-6**: gelu, silu, gated residual, lincomb, channel affine, rope (FMA contraction, and
//!   `expf`/`tanhf` within 2 ulp against Rust's libm);
//! - **1e-5**: norms, linear, attention, SLA, conv3d (summation order over up to 5120 terms; TF32
//!   GEMMs would show as ~1e-3).
//!
//! SLA block selections must match exactly.
//!
//! Convolutions run on cuDNN where it loads (FMA-only algorithms in f32), on the direct kernel
//! elsewhere, bf16 ones onto at most 8 channels on the narrow implicit-GEMM kernel; attention
//! with heads wider than 128 on cuBLASLt GEMMs around a softmax kernel.
//!
//! The **bf16** checks ([`op_checks`] runs them after the f32 ones) run a [`Precision::Bf16`]
//! backend on bf16 copies of the inputs against the CPU on the same bf16-rounded values, with
//! tolerance **1e-2**: the GPU rounds each output to bf16 (a relative step of 2⁻⁸ ≈ 3.9e-3) after
//! f32 arithmetic, linear layers also round their weights, and attention rounds the softmax
//! probabilities to bf16 before P·V, as every bf16 flash kernel does.

use std::sync::Arc;

use super::staging::SLOT_BYTES;
use super::{CudaBackend, LinearWeight as DeviceWeight, Precision};
use crate::{
    Backend, CpuBackend, DType, Error, HostBytes, HostData, HostTensor, LinearWeight,
    LinearWeights, Result, SlaParams, compare, rope::rope_tables, sla_block_map,
};

const EXACT: f32 = 0.0;
const ELEMENTWISE: f32 = 1e-6;
const REDUCTION: f32 = 1e-5;
const BF16: f32 = 1e-2;
/// The wide-head attention stores its scaled scores in bf16 before the softmax: a score s moves
/// by up to |s|·2⁻⁹, a probability by e^(|s|·2⁻⁹) − 1 ≈ 1.6 % at |s| = 8 (measured 1.12e-2 on an
/// H100, 2026-11-26, against 1e-2 for the kernels that keep scores in f32).
const BF16_SCORES: f32 = 2e-2;
/// Frames of more pixels than a full grid of the channel norm's warps covers taking two groups
/// of 8 rows (96 channels) each: 184,320 rows a frame, 3 frames 69,120 groups and 4 frames
/// 92,160, where an H100's or H200's 132 SMs × 32 blocks × 8 warps take 67,584 at a time, so
/// warps also loop.
const GRID_ROWS: [usize; 2] = [360, 512];

/// One op compared on one input set.
#[derive(Debug, Clone)]
pub struct CheckRow {
    pub op: &'static str,
    pub case: String,
    /// `max|gpu − cpu| / max|cpu|` (`‖gpu − ref‖₂ / ‖ref‖₂` for ops named `… L2`); NaN when the
    /// GPU output holds a NaN or the shapes differ.
    pub err: f32,
    pub tol: f32,
}

impl CheckRow {
    pub fn passed(&self) -> bool {
        self.err <= self.tol
    }
}

/// Seeded standard-normal samples: SplitMix64 and Box–Muller (no dependency for a test signal).
pub(super) struct Normal {
    state: u64,
}

impl Normal {
    pub(super) fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    pub(super) fn sample(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }

    pub(super) fn tensor(&mut self, shape: &[usize], std: f32) -> HostTensor {
        let n = shape.iter().product();
        let data = (0..n).map(|_| self.sample() * std).collect();
        HostTensor {
            shape: shape.to_vec(),
            data: HostData::F32(data),
        }
    }
}

struct Checker<'a> {
    gpu: &'a CudaBackend,
    cpu: CpuBackend,
    rng: Normal,
    rows: Vec<CheckRow>,
    /// The bf16 checks run attention on the portable mma.sync kernel.
    portable_attention: bool,
}

fn upload_all<B: Backend>(b: &B, inputs: &[HostTensor]) -> Result<Vec<B::Tensor>> {
    inputs.iter().map(|t| b.upload(t)).collect()
}

/// Runs `$body` (an expression over backend `$b` and uploaded inputs `$x`) on the CPU and on the
/// GPU backend `$gpu` and records the comparison. Inputs whose `$as_bf16` flag is set are rounded
/// to bf16 for both sides and handed to the GPU as bf16 tensors.
macro_rules! compare {
    ($c:expr, $gpu:expr, $op:expr, $case:expr, $tol:expr, $inputs:expr, $as_bf16:expr,
     |$b:ident, $x:ident| $body:expr) => {{
        let as_bf16: &[bool] = &$as_bf16;
        let inputs: Vec<HostTensor> = $inputs
            .into_iter()
            .zip(as_bf16)
            .map(|(t, &r)| if r { t.to_dtype(DType::BF16) } else { Ok(t) })
            .collect::<Result<_>>()?;
        let want = {
            let $b = &$c.cpu;
            let $x = upload_all($b, &inputs)?;
            let out = $body?;
            $b.download(&out)?
        };
        let got = {
            let gpu: CudaBackend = $gpu;
            let $b = &gpu;
            let $x = inputs
                .iter()
                .zip(as_bf16)
                .map(|(t, &r)| {
                    let d = $b.upload(t)?;
                    if r {
                        $b.to_dtype(&d, DType::BF16)
                    } else {
                        Ok(d)
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            let out = $body?;
            $b.download(&out)?
        };
        $c.record($op, $case, $tol, &got, &want);
    }};
}

/// [`compare!`] on the checker's f32 backend with f32 inputs.
macro_rules! check {
    ($c:expr, $op:expr, $case:expr, $tol:expr, $inputs:expr, |$b:ident, $x:ident| $body:expr) => {{
        let inputs: Vec<HostTensor> = $inputs;
        let as_bf16 = vec![false; inputs.len()];
        compare!(
            $c,
            $c.gpu.clone(),
            $op,
            $case,
            $tol,
            inputs,
            as_bf16,
            |$b, $x| $body
        )
    }};
}

/// [`compare!`] on a bf16 backend (running attention on the portable kernel when the checker
/// says so), tolerance [`BF16`].
macro_rules! check_bf16 {
    ($c:expr, $op:expr, $case:expr, $inputs:expr, $as_bf16:expr, |$b:ident, $x:ident| $body:expr) => {
        compare!(
            $c,
            $c.bf16_gpu(),
            $op,
            $case,
            BF16,
            $inputs,
            $as_bf16,
            |$b, $x| $body
        )
    };
}

impl Checker<'_> {
    fn bf16_gpu(&self) -> CudaBackend {
        let gpu = self.gpu.with_precision(Precision::Bf16);
        if self.portable_attention {
            gpu.with_portable_kernels()
        } else {
            gpu
        }
    }

    /// [`Checker::linear_weights`] rounded to bf16, so both backends multiply the same values.
    fn bf16_linear_weights(
        &mut self,
        out_f: usize,
        in_f: usize,
        bias: bool,
    ) -> Result<LinearWeights> {
        let mut w = self.linear_weights(out_f, in_f, bias);
        if let LinearWeight::Dense(t) = &w.weight {
            w.weight = LinearWeight::Dense(t.to_dtype(DType::BF16)?);
        }
        w.bias = w.bias.map(|b| b.to_dtype(DType::BF16)).transpose()?;
        Ok(w)
    }

    fn randn(&mut self, shape: &[usize]) -> HostTensor {
        self.rng.tensor(shape, 1.0)
    }

    fn record(
        &mut self,
        op: &'static str,
        case: impl Into<String>,
        tol: f32,
        got: &HostTensor,
        want: &HostTensor,
    ) {
        let err = if got.shape == want.shape {
            compare::max_rel_err(&got.to_f32_vec(), &want.to_f32_vec())
        } else {
            f32::NAN
        };
        self.rows.push(CheckRow {
            op,
            case: case.into(),
            err,
            tol,
        });
    }

    fn linear_weights(&mut self, out_f: usize, in_f: usize, bias: bool) -> LinearWeights {
        let w = self.rng.tensor(&[out_f, in_f], 1.0 / (in_f as f32).sqrt());
        LinearWeights {
            out_features: out_f,
            in_features: in_f,
            weight: LinearWeight::Dense(w),
            bias: bias.then(|| self.rng.tensor(&[out_f], 0.1)),
        }
    }

    fn transfers_and_layout(&mut self) -> Result<()> {
        let x = self.randn(&[5, 7, 9]);
        for dtype in [DType::F32, DType::BF16, DType::F16] {
            let t = x.to_dtype(dtype)?;
            check!(
                self,
                "upload/download",
                format!("[5, 7, 9] {dtype}"),
                EXACT,
                vec![t],
                |b, x| { Ok::<_, crate::Error>(x[0].clone()) }
            );
        }
        check!(
            self,
            "reshape",
            "[5, 7, 9] -> [35, 9]",
            EXACT,
            vec![x.clone()],
            |b, x| { b.reshape(&x[0], &[35, 9]) }
        );
        for (dim, start, len) in [(0, 1, 3), (1, 2, 4), (2, 5, 4)] {
            check!(
                self,
                "slice",
                format!("[5, 7, 9] dim {dim} {start}+{len}"),
                EXACT,
                vec![x.clone()],
                |b, x| { b.slice(&x[0], dim, start, len) }
            );
        }
        check!(
            self,
            "narrow",
            "[5, 7, 9] 2+2",
            EXACT,
            vec![x.clone()],
            |b, x| { b.narrow(&x[0], 2, 2) }
        );
        // Rows of 64 f32 start on 256-byte boundaries, so these narrows are views of x's memory:
        // read back, narrowed again, and read by a kernel at their offsets.
        let rows = self.randn(&[6, 64]);
        check!(
            self,
            "narrow",
            "[6, 64] 2+3 (view)",
            EXACT,
            vec![rows.clone()],
            |b, x| { b.narrow(&x[0], 2, 3) }
        );
        check!(
            self,
            "narrow",
            "[6, 64] 1+4, then 1+2 (view of a view)",
            EXACT,
            vec![rows.clone()],
            |b, x| { b.narrow(&b.narrow(&x[0], 1, 4)?, 1, 2) }
        );
        check!(
            self,
            "narrow",
            "[6, 64] rows 2+3 plus rows 1+3 (views into a kernel)",
            EXACT,
            vec![rows],
            |b, x| { b.add(&b.narrow(&x[0], 2, 3)?, &b.narrow(&x[0], 1, 3)?) }
        );
        for perm in [[2usize, 0, 1], [1, 0, 2], [0, 2, 1]] {
            check!(
                self,
                "permute",
                format!("[5, 7, 9] {perm:?}"),
                EXACT,
                vec![x.clone()],
                |b, x| { b.permute(&x[0], &perm) }
            );
        }
        let x4 = self.randn(&[3, 4, 5, 6]);
        check!(
            self,
            "permute",
            "[3, 4, 5, 6] [3, 1, 0, 2]",
            EXACT,
            vec![x4],
            |b, x| { b.permute(&x[0], &[3, 1, 0, 2]) }
        );
        // The VAE's permutes: a time upsample's interleave (rows and columns merged, 16-byte
        // units), channels-last frames to channel-first (frames, rows and columns merged).
        for (shape, perm) in [
            (vec![2, 3, 4, 2, 8], vec![0, 3, 1, 2, 4]),
            (vec![4, 5, 6, 3], vec![3, 0, 1, 2]),
            (vec![1, 5, 1, 7], vec![2, 1, 3, 0]),
        ] {
            check!(
                self,
                "permute",
                format!("{shape:?} {perm:?}"),
                EXACT,
                vec![self.randn(&shape)],
                |b, x| { b.permute(&x[0], &perm) }
            );
        }
        for dim in 0..3 {
            let mut shapes = [[5, 7, 9]; 3];
            shapes[1][dim] = 2;
            shapes[2][dim] = 4;
            let parts = shapes.iter().map(|s| self.randn(s)).collect();
            check!(
                self,
                "concat",
                format!("3 parts, dim {dim}"),
                EXACT,
                parts,
                |b, x| { b.concat(&[&x[0], &x[1], &x[2]], dim) }
            );
        }
        let video = self.randn(&[16, 3, 6, 10]);
        check!(
            self,
            "patchify",
            "[16, 3, 6, 10] / [1, 2, 2]",
            EXACT,
            vec![video.clone()],
            |b, x| { b.patchify(&x[0], [1, 2, 2]) }
        );
        check!(
            self,
            "patchify",
            "[16, 3, 6, 10] / [3, 3, 2]",
            EXACT,
            vec![video],
            |b, x| { b.patchify(&x[0], [3, 3, 2]) }
        );
        let tokens = self.randn(&[3 * 3 * 5, 64]);
        check!(
            self,
            "unpatchify",
            "[45, 64] -> [16, 3, 6, 10]",
            EXACT,
            vec![tokens],
            |b, x| { b.unpatchify(&x[0], [3, 3, 5], [1, 2, 2], 16) }
        );
        // Three channels a phase (elements), then eight (f32 16-byte units).
        for shape in [[3, 2, 5, 12], [2, 4, 3, 32]] {
            check!(
                self,
                "interleave_phases",
                format!("{shape:?}"),
                EXACT,
                vec![self.randn(&shape)],
                |b, x| { b.interleave_phases(&x[0]) }
            );
        }
        Ok(())
    }

    fn elementwise(&mut self) -> Result<()> {
        let x = self.randn(&[37, 129]);
        let row = self.randn(&[129]);
        let y = self.randn(&[37, 129]);
        check!(
            self,
            "gelu_tanh",
            "[37, 129]",
            ELEMENTWISE,
            vec![x.clone()],
            |b, x| b.gelu_tanh(&x[0])
        );
        check!(
            self,
            "silu",
            "[37, 129]",
            ELEMENTWISE,
            vec![x.clone()],
            |b, x| b.silu(&x[0])
        );
        check!(
            self,
            "add",
            "[37, 129] + [129]",
            EXACT,
            vec![x.clone(), row.clone()],
            |b, x| b.add(&x[0], &x[1])
        );
        check!(
            self,
            "add",
            "[37, 129] + [37, 129]",
            EXACT,
            vec![x.clone(), y.clone()],
            |b, x| b.add(&x[0], &x[1])
        );
        check!(
            self,
            "mul",
            "[37, 129] * [129]",
            EXACT,
            vec![x.clone(), row.clone()],
            |b, x| b.mul(&x[0], &x[1])
        );
        check!(
            self,
            "gated_residual",
            "[37, 129]",
            ELEMENTWISE,
            vec![x.clone(), y.clone(), row.clone()],
            |b, x| { b.gated_residual(&x[0], &x[1], &x[2]) }
        );
        check!(
            self,
            "clamp",
            "[37, 129] to [-0.5, 0.7]",
            EXACT,
            vec![x.clone()],
            |b, x| b.clamp(&x[0], -0.5, 0.7)
        );
        for terms in [3usize, 11] {
            let inputs: Vec<HostTensor> = (0..terms).map(|_| self.randn(&[37, 129])).collect();
            let coefs: Vec<f32> = (0..terms).map(|i| 0.5 - 0.13 * i as f32).collect();
            check!(
                self,
                "lincomb",
                format!("{terms} terms"),
                ELEMENTWISE,
                inputs,
                |b, x| {
                    let pairs: Vec<(f32, &_)> = coefs.iter().copied().zip(x.iter()).collect();
                    b.lincomb(&pairs)
                }
            );
        }
        let video = self.randn(&[3, 5, 7, 6]);
        let (scale, shift) = (self.randn(&[6]), self.randn(&[6]));
        check!(
            self,
            "channel_affine",
            "[3, 5, 7, 6]",
            ELEMENTWISE,
            vec![video.clone(), scale, shift],
            |b, x| { b.channel_affine(&x[0], &x[1], &x[2]) }
        );
        let gamma = self.randn(&[6]);
        check!(
            self,
            "channel_rms_norm",
            "[3, 5, 7, 6]",
            REDUCTION,
            vec![video.clone(), gamma.clone()],
            |b, x| { b.channel_rms_norm(&x[0], &x[1]) }
        );
        let past = self.randn(&[2, 5, 7, 6]);
        check!(
            self,
            "causal_rms_norm_silu",
            "[2, 5, 7, 6] cached + [3, 5, 7, 6]",
            REDUCTION,
            vec![past, video.clone(), gamma.clone()],
            |b, x| {
                b.causal_rms_norm_silu(Some(&x[0]), &x[1], &x[2], 6, 2)
                    .map(|(input, _)| input)
            }
        );
        // Rows wider than the channels (a convolution input padded with zero channels).
        let wide_past = self.randn(&[2, 5, 7, 8]);
        check!(
            self,
            "causal_rms_norm_silu",
            "[2, 5, 7, 8] cached + [3, 5, 7, 6], 8 wide",
            REDUCTION,
            vec![wide_past, video.clone(), gamma.clone()],
            |b, x| {
                b.causal_rms_norm_silu(Some(&x[0]), &x[1], &x[2], 8, 2)
                    .map(|(input, _)| input)
            }
        );
        check!(
            self,
            "causal_rms_norm_silu",
            "[3, 5, 7, 6], 8 wide, no cached frames",
            REDUCTION,
            vec![video, gamma],
            |b, x| {
                b.causal_rms_norm_silu(None, &x[0], &x[1], 8, 2)
                    .map(|(input, _)| input)
            }
        );
        Ok(())
    }

    fn norms(&mut self) -> Result<()> {
        // 100 columns take the one-block-a-row kernel, the others the rows-in-registers one (5120:
        // three warps a row).
        for cols in [100usize, 256, 1536, 5120] {
            let rows = 19;
            // A mean of twice the spread exercises the two-pass variance. (Much larger ratios make
            // the CPU side's sequential f32 row sum, not the kernel, the dominant error.)
            let mut x = self.randn(&[rows, cols]);
            if let HostData::F32(v) = &mut x.data {
                v.iter_mut().for_each(|v| *v = *v * 4.0 + 8.0);
            }
            let (w, b_, shift, scale) = (
                self.randn(&[cols]),
                self.randn(&[cols]),
                self.randn(&[cols]),
                self.randn(&[cols]),
            );
            let case = format!("[{rows}, {cols}]");
            check!(
                self,
                "layer_norm",
                case.clone(),
                REDUCTION,
                vec![x.clone()],
                |b, x| { b.layer_norm(&x[0], None, 1e-6) }
            );
            check!(
                self,
                "layer_norm affine",
                case.clone(),
                REDUCTION,
                vec![x.clone(), w.clone(), b_],
                |b, x| { b.layer_norm(&x[0], Some((&x[1], &x[2])), 1e-6) }
            );
            check!(
                self,
                "layer_norm_modulate",
                case.clone(),
                REDUCTION,
                vec![x.clone(), shift, scale],
                |b, x| { b.layer_norm_modulate(&x[0], &x[1], &x[2], 1e-6) }
            );
            check!(
                self,
                "rms_norm",
                case.clone(),
                REDUCTION,
                vec![x.clone(), w.clone()],
                |b, x| b.rms_norm(&x[0], &x[1], 1e-6)
            );
            self.residual_norms(&x, &w, &case)?;
        }
        Ok(())
    }

    /// The residual add fused into the norm after it, as a DiT block runs it: the sum, and the
    /// norm through a linear layer (how its prepared input is read), gated with the affine norm
    /// and ungated with the modulation.
    fn residual_norms(&mut self, x: &HostTensor, w: &HostTensor, case: &str) -> Result<()> {
        let cols = x.shape[1];
        let (y, gate, shift) = (
            self.randn(&x.shape),
            self.randn(&[cols]),
            self.randn(&[cols]),
        );
        let layer = self.linear_weights(24, cols, true);
        let inputs = vec![x.clone(), y, gate, w.clone(), shift];
        check!(
            self,
            "residual+layer_norm sum",
            format!("{case} gated"),
            ELEMENTWISE,
            inputs.clone(),
            |b, x| {
                let affine = Some((&x[3], &x[4]));
                Ok::<_, crate::Error>(
                    b.residual_layer_norm_input(&x[0], &x[1], Some(&x[2]), affine, 1e-6)?
                        .0,
                )
            }
        );
        check!(
            self,
            "residual+layer_norm -> linear",
            format!("{case} gated"),
            REDUCTION,
            inputs.clone(),
            |b, x| {
                let affine = Some((&x[3], &x[4]));
                let (_, h) =
                    b.residual_layer_norm_input(&x[0], &x[1], Some(&x[2]), affine, 1e-6)?;
                b.linear_prepared(&h, &b.upload_linear(&layer)?)
            }
        );
        check!(
            self,
            "residual+layer_norm_modulate -> linear",
            case.to_string(),
            REDUCTION,
            inputs,
            |b, x| {
                let (sum, h) =
                    b.residual_layer_norm_modulate_input(&x[0], &x[1], None, &x[4], &x[3], 1e-6)?;
                let out = b.linear_prepared(&h, &b.upload_linear(&layer)?)?;
                b.concat(&[&sum, &out], 1)
            }
        );
        Ok(())
    }

    fn linear(&mut self) -> Result<()> {
        for (rows, in_f, out_f, bias) in [
            (37usize, 96usize, 80usize, true),
            (5, 33, 7, false),
            (300, 1536, 1536, true),
            (64, 256, 384, true),
        ] {
            let w = self.linear_weights(out_f, in_f, bias);
            let x = self.randn(&[rows, in_f]);
            let case = format!(
                "[{rows}, {in_f}] -> {out_f}{}",
                if bias { " + bias" } else { "" }
            );
            check!(
                self,
                "linear",
                case.clone(),
                REDUCTION,
                vec![x.clone()],
                |b, x| { b.linear(&x[0], &b.upload_linear(&w)?) }
            );
            let residual = self.randn(&[rows, out_f]);
            check!(
                self,
                "linear_residual",
                case,
                REDUCTION,
                vec![x, residual],
                |b, x| { b.linear_residual(&x[0], &b.upload_linear(&w)?, &x[1], None) }
            );
        }
        // A W8A8 checkpoint layer, dequantized when placed.
        let (out_f, in_f) = (130usize, 200usize);
        let values: Vec<i8> = (0..out_f * in_f)
            .map(|_| (self.rng.sample() * 40.0).clamp(-127.0, 127.0) as i8)
            .collect();
        let (go, gi) = LinearWeights::quant_grid(out_f, in_f);
        let scales: Vec<f32> = (0..go * gi).map(|i| 0.01 + 0.002 * i as f32).collect();
        let w = LinearWeights {
            out_features: out_f,
            in_features: in_f,
            weight: LinearWeight::Int8Block { values, scales },
            bias: Some(self.rng.tensor(&[out_f], 0.1)),
        };
        let x = self.randn(&[9, in_f]);
        check!(
            self,
            "linear",
            "int8 block weight [9, 200] -> 130",
            REDUCTION,
            vec![x],
            |b, x| { b.linear(&x[0], &b.upload_linear(&w)?) }
        );
        Ok(())
    }

    fn attention(&mut self) -> Result<()> {
        let (len, heads, dh) = (50usize, 3usize, 128usize);
        let (cos, sin) = rope_tables([2, 5, 5], dh, 1e4)?;
        let x = self.randn(&[len, heads, dh]);
        check!(
            self,
            "rope",
            "[50, 3, 128]",
            ELEMENTWISE,
            vec![x, cos.clone(), sin.clone()],
            |b, x| { b.rope(&x[0], &x[1], &x[2]) }
        );
        let (xr, wr) = (self.randn(&[len, heads * dh]), self.randn(&[heads * dh]));
        check!(
            self,
            "rms_norm_rope",
            "[50, 384] as 3 heads",
            REDUCTION,
            vec![xr, wr, cos, sin],
            |b, x| { b.rms_norm_rope(&x[0], &x[1], 1e-6, &x[2], &x[3], 3) }
        );
        // Rows held by three warps (the 14B's 40 heads), and heads of 12 (Dh/2 not a multiple of
        // 4: the one-block-a-row kernel).
        for (grid, heads, dh) in [([1, 4, 5], 40usize, 128usize), ([2, 5, 5], 3, 12)] {
            let (cos, sin) = rope_tables(grid, dh, 1e4)?;
            let len = grid.iter().product::<usize>();
            let (xr, wr) = (self.randn(&[len, heads * dh]), self.randn(&[heads * dh]));
            check!(
                self,
                "rms_norm_rope",
                format!("[{len}, {}] as {heads} heads", heads * dh),
                REDUCTION,
                vec![xr, wr, cos, sin],
                |b, x| { b.rms_norm_rope(&x[0], &x[1], 1e-6, &x[2], &x[3], heads) }
            );
        }
        for (lq, lk, h, d) in [
            (50usize, 77usize, 3usize, 128usize),
            (1, 16, 2, 128),
            (33, 512, 2, 128),
            (40, 40, 4, 64),
        ] {
            let (q, k, v) = (
                self.randn(&[lq, h, d]),
                self.randn(&[lk, h, d]),
                self.randn(&[lk, h, d]),
            );
            check!(
                self,
                "attention",
                format!("q [{lq}, {h}, {d}], kv [{lk}]"),
                REDUCTION,
                vec![q, k, v],
                |b, x| { b.attention(&x[0], &x[1], &x[2]) }
            );
        }
        // T5 style: scale 1 and a relative-position bias.
        let (lq, lk, h, d) = (23usize, 23usize, 4usize, 64usize);
        let (q, k, v) = (
            self.randn(&[lq, h, d]),
            self.randn(&[lk, h, d]),
            self.randn(&[lk, h, d]),
        );
        let bias = self.randn(&[h, lq, lk]);
        check!(
            self,
            "attention + bias",
            format!("[{lq}, {h}, {d}], scale 1"),
            REDUCTION,
            vec![q, k, v, bias],
            |b, x| { b.attention_with(&x[0], &x[1], &x[2], 1.0, Some(&x[3])) }
        );
        // The same bias given per relative position, with more keys than queries.
        let (lq, lk) = (23usize, 37usize);
        let (q, k, v) = (
            self.randn(&[lq, h, d]),
            self.randn(&[lk, h, d]),
            self.randn(&[lk, h, d]),
        );
        let rel = self.randn(&[h, lq + lk - 1]);
        check!(
            self,
            "attention rel bias",
            format!("q [{lq}, {h}, {d}], kv [{lk}], scale 1"),
            REDUCTION,
            vec![q, k, v, rel],
            |b, x| { b.attention_rel_bias(&x[0], &x[1], &x[2], 1.0, &x[3]) }
        );
        Ok(())
    }

    fn sla(&mut self) -> Result<()> {
        let (len, heads, dh) = (300usize, 2usize, 128usize);
        let (q, k, v) = (
            self.randn(&[len, heads, dh]),
            self.randn(&[len, heads, dh]),
            self.randn(&[len, heads, dh]),
        );
        let proj = self.linear_weights(dh, dh, true);
        for (topk, block_q, block_k) in
            [(0.5, 64, 128), (0.3, 64, 64), (1.0, 128, 64), (0.1, 48, 80)]
        {
            let params = SlaParams {
                topk,
                block_q,
                block_k,
            };
            let case = format!("[{len}, {heads}, {dh}] topk {topk} blocks {block_q}/{block_k}");
            check!(
                self,
                "sla_attention",
                case.clone(),
                REDUCTION,
                vec![q.clone(), k.clone(), v.clone()],
                |b, x| { b.sla_attention(&x[0], &x[1], &x[2], &params, &b.upload_linear(&proj)?) }
            );
            let want = sla_block_map(&self.cpu.upload(&q)?, &self.cpu.upload(&k)?, &params)?;
            let got =
                self.gpu
                    .sla_block_map(&self.gpu.upload(&q)?, &self.gpu.upload(&k)?, &params)?;
            self.rows.push(CheckRow {
                op: "sla block map",
                case,
                err: if got == want { 0.0 } else { f32::NAN },
                tol: EXACT,
            });
        }
        Ok(())
    }

    /// Self-attention sizes past the kernels' limits are refused as too large, before any work
    /// (`check_self_attention_size`) and by the kernel itself, and the sizes at the limits pass.
    fn size_limits(&mut self) -> Result<()> {
        // The 8-bit kernels serve the bf16 path only.
        let gpu = self.gpu.with_precision(Precision::Bf16);
        let sage = gpu.sage_kernel().is_some();
        let (select_max, elements_max) = (1024 * 128, i32::MAX as usize / (12 * 128));
        let sparse = SlaParams::sage(0.1);
        let all = SlaParams::sage(1.0);
        let mut cases = vec![
            ("dense", elements_max, false, None, true),
            ("dense", elements_max + 1, false, None, false),
        ];
        if sage {
            cases.extend([
                ("sagesla topk 0.1", select_max, true, Some(&sparse), true),
                (
                    "sagesla topk 0.1",
                    select_max + 1,
                    true,
                    Some(&sparse),
                    false,
                ),
                ("sagesla topk 1", select_max + 1, true, Some(&all), true),
            ]);
        }
        for (mode, len, sage, sla, fits) in cases {
            let got = gpu.check_self_attention_size([len, 12, 128], sage, sla);
            let as_expected = match got {
                Ok(()) => fits,
                Err(e) => !fits && matches!(e, Error::TooLarge { .. }),
            };
            self.rows.push(CheckRow {
                op: "attention size",
                case: format!(
                    "{mode}, [{len}, 12, 128]: {}",
                    if fits { "fits" } else { "too large" }
                ),
                err: if as_expected { 0.0 } else { f32::NAN },
                tol: EXACT,
            });
        }
        if sage {
            // One head past the selection's limit: the kernel refuses it as too large as well.
            let len = select_max + 1;
            let x = gpu.upload(&self.randn(&[len, 1, 128]))?;
            let proj = gpu.upload_linear(&self.linear_weights(128, 128, true))?;
            let got = gpu.sage_attention(&x, &x, &x, Some((&sparse, &proj)));
            let refused = matches!(got, Err(Error::TooLarge { .. }));
            self.rows.push(CheckRow {
                op: "attention size",
                case: match got {
                    Err(e) if !refused => format!("sage_attention topk 0.1, [{len}, 1, 128]: {e}"),
                    _ => format!("sage_attention topk 0.1, [{len}, 1, 128]: too large"),
                },
                err: if refused { 0.0 } else { f32::NAN },
                tol: EXACT,
            });
        }
        Ok(())
    }

    fn conv(&mut self) -> Result<()> {
        let x = self.randn(&[4, 9, 11, 3]);
        for (kshape, stride, pad) in [
            (
                [5usize, 3, 3, 3, 3],
                [1usize, 1, 1],
                [[2usize, 0], [1, 1], [1, 1]],
            ),
            ([4, 1, 3, 3, 3], [1, 2, 2], [[0, 0], [0, 1], [0, 1]]),
            ([2, 3, 1, 1, 3], [2, 1, 1], [[0, 0], [0, 0], [0, 0]]),
        ] {
            let fan_in = (kshape[1] * kshape[2] * kshape[3] * kshape[4]) as f32;
            let w = self.rng.tensor(&kshape, fan_in.sqrt().recip());
            let bias = self.randn(&[kshape[0]]);
            let case = format!("w {kshape:?} stride {stride:?} pad {pad:?}");
            check!(
                self,
                "conv3d",
                case,
                REDUCTION,
                vec![x.clone(), w, bias],
                |b, x| { b.conv3d(&x[0], &x[1], Some(&x[2]), stride, pad) }
            );
        }
        let (w, bias) = (self.rng.tensor(&[5, 3, 3, 3, 3], 0.2), self.randn(&[5]));
        let residual = self.randn(&[4, 9, 11, 5]);
        check!(
            self,
            "conv3d_add",
            "w [5, 3, 3, 3, 3], causal pad, + residual [4, 9, 11, 5]",
            REDUCTION,
            vec![x, w, bias, residual],
            |b, x| {
                b.conv3d_add(
                    &x[0],
                    &x[1],
                    Some(&x[2]),
                    [1; 3],
                    [[2, 0], [1, 1], [1, 1]],
                    &x[3],
                )
            }
        );
        Ok(())
    }
}

impl Checker<'_> {
    /// Uploads through the pinned staging ring ([`super::staging`]): a tensor spanning several
    /// staging buffers and a partial last one (the f32 one more pieces than there are buffers, so
    /// buffers are refilled), downloaded again and compared exactly — f32 and bf16 as stored, f32
    /// rounded to bf16 on the way, and a bf16 linear weight read from mapped bytes. The inputs are
    /// finite and non-zero, so a zero error means equal bits; the poisoned pool turns any element
    /// the pieces miss into NaN.
    fn staged_uploads(&mut self) -> Result<()> {
        let bf16_per_slot = SLOT_BYTES / DType::BF16.size_in_bytes();
        let (rows, cols) = (2 * bf16_per_slot / 1024 + 7, 1024);
        let x = self.randn(&[rows, cols]);
        let x_bf16 = x.to_dtype(DType::BF16)?;
        let case = |what: &str| format!("[{rows}, {cols}] {what}");
        let f32_gpu = self.gpu.with_precision(Precision::F32);
        let bf16_gpu = self.gpu.with_precision(Precision::Bf16);
        let got = f32_gpu.download(&f32_gpu.upload(&x)?)?;
        self.record("staged upload", case("f32"), EXACT, &got, &x);
        let got = bf16_gpu.download(&bf16_gpu.upload_param(&x_bf16)?)?;
        self.record("staged upload", case("bf16"), EXACT, &got, &x_bf16);
        let got = bf16_gpu.download(&bf16_gpu.upload_param(&x)?)?;
        self.record("staged upload", case("f32 -> bf16"), EXACT, &got, &x_bf16);
        let bytes: Arc<dyn AsRef<[u8]> + Send + Sync> =
            Arc::new(x_bf16.tensor_bytes().bytes().to_vec());
        let len = (*bytes).as_ref().len();
        let w = LinearWeights {
            out_features: rows,
            in_features: cols,
            weight: LinearWeight::Mapped(HostBytes::new([rows, cols], DType::BF16, bytes, 0..len)?),
            bias: None,
        };
        for gpu in [&bf16_gpu, &f32_gpu] {
            let layer = gpu.upload_linear(&w)?;
            let DeviceWeight::Dense(weight) = &layer.weight else {
                return Err(crate::Error::invalid(
                    "staged upload",
                    "expected a dense layer",
                ));
            };
            let got = gpu.download(weight)?;
            let what = format!("mapped bf16 linear weight, {} backend", gpu.compute());
            self.record("staged upload", case(&what), EXACT, &got, &x_bf16);
        }
        Ok(())
    }

    /// Asynchronous downloads ([`Backend::download_async`]) against synchronous ones of the same
    /// tensors: f32 and bf16 (converted on the device), of several sizes, all queued behind
    /// milliseconds of GEMMs so that they are still in flight when waited for out of order, one
    /// of them dropped unwaited and its pinned buffer taken by the next download; and the last
    /// GEMM's output, queued right behind it, whose copy must wait for the GEMM (the output is
    /// poisoned before). The inputs are finite and non-zero, so a zero error means equal bits.
    fn async_downloads(&mut self) -> Result<()> {
        let shapes: [&[usize]; 5] = [
            &[5, 7, 9],
            &[3, 4, 61, 105],
            &[33, 1025],
            &[3, 1, 61, 105],
            &[2, 3],
        ];
        let mut tensors = Vec::new();
        for shape in shapes {
            tensors.push(self.gpu.upload(&self.randn(shape))?);
        }
        tensors[2] = self.gpu.to_dtype(&tensors[2], DType::BF16)?;
        let want = tensors
            .iter()
            .map(|t| self.gpu.download(t))
            .collect::<Result<Vec<_>>>()?;
        // Four f32 GEMMs of 34 GFLOP each ahead of the copies: milliseconds even at an H100's
        // f32 peak.
        let layer = self
            .gpu
            .upload_linear(&self.linear_weights(4096, 4096, false))?;
        let mut busy = self.gpu.upload(&self.randn(&[1024, 4096]))?;
        for _ in 0..4 {
            busy = self.gpu.linear(&busy, &layer)?;
        }
        let gpu = self.gpu;
        let last_gemm = gpu.download_async(&busy)?;
        let queue = |i: usize| gpu.download_async(&tensors[i]);
        let (a, b, c, d, e) = (queue(0)?, queue(1)?, queue(2)?, queue(3)?, queue(4)?);
        drop(b);
        let again = queue(1)?;
        for (i, pending) in [(3, d), (0, a), (1, again), (4, e), (2, c)] {
            let got = pending.wait()?;
            let case = format!("{:?} {}", shapes[i], tensors[i].dtype());
            self.record("download_async", case, EXACT, &got, &want[i]);
        }
        let got = last_gemm.wait()?;
        let want = gpu.download(&busy)?;
        self.record(
            "download_async",
            "[1024, 4096] f32, the output of the GEMM queued before it",
            EXACT,
            &got,
            &want,
        );
        Ok(())
    }

    /// The bf16 paths: GEMMs on bf16 weights, norms writing bf16, bf16 elementwise and layout ops,
    /// mixed f32/bf16 arithmetic and the tensor-core flash attention.
    fn bf16(&mut self) -> Result<()> {
        for (rows, in_f, out_f, bias) in [
            (37usize, 96usize, 80usize, true),
            (5, 33, 7, false),
            (300, 1536, 1536, true),
        ] {
            let w = self.bf16_linear_weights(out_f, in_f, bias)?;
            for x_bf16 in [true, false] {
                let x = self.randn(&[rows, in_f]);
                let case = format!(
                    "[{rows}, {in_f}] -> {out_f}, x {}",
                    if x_bf16 { "bf16" } else { "f32" }
                );
                check_bf16!(self, "bf16 linear", case, vec![x], [x_bf16], |b, x| {
                    b.linear(&x[0], &b.upload_linear(&w)?)
                });
            }
        }
        // cuBLASLt's GELU epilogue on the FFN's first layer.
        let w = self.bf16_linear_weights(160, 96, true)?;
        let x = self.randn(&[37, 96]);
        check_bf16!(
            self,
            "bf16 linear_gelu_tanh",
            "[37, 96] -> 160",
            vec![x],
            [true],
            |b, x| { b.linear_gelu_tanh(&x[0], &b.upload_linear(&w)?) }
        );
        // A residual layer added in the GEMM: into an f32 residual stream from bf16 weights (the
        // f32 accumulator kept), or into a bf16 one; the bias left to its own pass.
        for bias in [false, true] {
            let w = self.bf16_linear_weights(96, 160, bias)?;
            let (x, residual) = (self.randn(&[37, 160]), self.randn(&[37, 96]));
            for r_bf16 in [false, true] {
                let case = format!(
                    "[37, 160] -> 96{} into {}",
                    if bias { " + bias" } else { "" },
                    if r_bf16 { "bf16" } else { "f32" }
                );
                check_bf16!(
                    self,
                    "bf16 linear_residual",
                    case,
                    vec![x.clone(), residual.clone()],
                    [true, r_bf16],
                    |b, x| { b.linear_residual(&x[0], &b.upload_linear(&w)?, &x[1], None) }
                );
            }
        }
        let (gate, lin) = (
            self.bf16_linear_weights(160, 96, false)?,
            self.bf16_linear_weights(160, 96, true)?,
        );
        let x = self.randn(&[37, 96]);
        check_bf16!(
            self,
            "bf16 linear_gated_gelu",
            "[37, 96] -> 160",
            vec![x],
            [true],
            |b, x| {
                b.linear_gated_gelu(&x[0], &b.upload_linear(&gate)?, &b.upload_linear(&lin)?)
            }
        );
        let cols = 1536;
        let x = self.randn(&[19, cols]);
        let (shift, scale, w) = (
            self.randn(&[cols]),
            self.randn(&[cols]),
            self.randn(&[cols]),
        );
        for x_bf16 in [false, true] {
            let case = format!("[19, {cols}], x {}", if x_bf16 { "bf16" } else { "f32" });
            check_bf16!(
                self,
                "bf16 layer_norm_modulate",
                case.clone(),
                vec![x.clone(), shift.clone(), scale.clone()],
                [x_bf16, false, false],
                |b, x| { b.layer_norm_modulate(&x[0], &x[1], &x[2], 1e-6) }
            );
            check_bf16!(
                self,
                "bf16 layer_norm affine",
                case.clone(),
                vec![x.clone(), w.clone(), shift.clone()],
                [x_bf16, false, false],
                |b, x| { b.layer_norm(&x[0], Some((&x[1], &x[2])), 1e-6) }
            );
            check_bf16!(
                self,
                "bf16 rms_norm",
                case,
                vec![x.clone(), w.clone()],
                [x_bf16, false],
                |b, x| { b.rms_norm(&x[0], &x[1], 1e-6) }
            );
        }
        let (y, row) = (self.randn(&[19, cols]), self.randn(&[cols]));
        // The DiT's residual stream (f32) plus a bf16 branch, gated, then the modulated norm: the
        // sum beside the norm's output through a bf16 linear (how the DiT reads it).
        let layer = self.bf16_linear_weights(24, cols, true)?;
        check_bf16!(
            self,
            "bf16 residual+layer_norm_modulate",
            "[19, 1536], y bf16",
            vec![
                x.clone(),
                y.clone(),
                w.clone(),
                shift.clone(),
                scale.clone()
            ],
            [false, true, false, false, false],
            |b, x| {
                let (sum, h) = b.residual_layer_norm_modulate_input(
                    &x[0],
                    &x[1],
                    Some(&x[2]),
                    &x[3],
                    &x[4],
                    1e-6,
                )?;
                let out = b.linear_prepared(&h, &b.upload_linear(&layer)?)?;
                b.concat(&[&sum, &out], 1)
            }
        );
        check_bf16!(
            self,
            "bf16 gelu_tanh",
            "[19, 1536]",
            vec![x.clone()],
            [true],
            |b, x| b.gelu_tanh(&x[0])
        );
        check_bf16!(
            self,
            "bf16 silu",
            "[19, 1536]",
            vec![x.clone()],
            [true],
            |b, x| b.silu(&x[0])
        );
        check_bf16!(
            self,
            "bf16 add",
            "f32 [19, 1536] + bf16 [19, 1536]",
            vec![x.clone(), y.clone()],
            [false, true],
            |b, x| b.add(&x[0], &x[1])
        );
        check_bf16!(
            self,
            "bf16 mul",
            "bf16 [19, 1536] * bf16 [1536]",
            vec![x.clone(), row.clone()],
            [true, true],
            |b, x| b.mul(&x[0], &x[1])
        );
        check_bf16!(
            self,
            "bf16 gated_residual",
            "f32 x, bf16 y, f32 gate",
            vec![x.clone(), y.clone(), row.clone()],
            [false, true, false],
            |b, x| b.gated_residual(&x[0], &x[1], &x[2])
        );
        let t = self.randn(&[6, 7, 8]);
        check_bf16!(
            self,
            "bf16 permute",
            "[6, 7, 8] [2, 0, 1]",
            vec![t.clone()],
            [true],
            |b, x| b.permute(&x[0], &[2, 0, 1])
        );
        check_bf16!(
            self,
            "bf16 permute",
            "[2, 3, 4, 2, 16] [0, 3, 1, 2, 4]",
            vec![self.randn(&[2, 3, 4, 2, 16])],
            [true],
            |b, x| b.permute(&x[0], &[0, 3, 1, 2, 4])
        );
        check_bf16!(
            self,
            "bf16 slice",
            "[6, 7, 8] dim 1 2+3",
            vec![t.clone()],
            [true],
            |b, x| b.slice(&x[0], 1, 2, 3)
        );
        check_bf16!(
            self,
            "bf16 concat",
            "bf16 + f32 parts, dim 0",
            vec![t.clone(), t],
            [true, false],
            |b, x| b.concat(&[&x[0], &x[1]], 0)
        );
        let (cos, sin) = rope_tables([2, 5, 5], 128, 1e4)?;
        let (xq, wq) = (self.randn(&[50, 384]), self.randn(&[384]));
        check_bf16!(
            self,
            "bf16 rms_norm_rope",
            "[50, 384] as 3 heads",
            vec![xq, wq, cos.clone(), sin.clone()],
            [true, false, false, false],
            |b, x| b.rms_norm_rope(&x[0], &x[1], 1e-6, &x[2], &x[3], 3)
        );
        let q = self.randn(&[50, 3, 128]);
        check_bf16!(
            self,
            "bf16 rope",
            "[50, 3, 128]",
            vec![q, cos, sin],
            [true, false, false],
            |b, x| b.rope(&x[0], &x[1], &x[2])
        );

        // Flash attention: ragged query and key counts (tile edges at 128), the 512-token text
        // context, one query, a long sequence, sharper softmaxes (q scaled up), and keys past
        // the 2048 up to which Hopper runs the persistent kernel (so both wgmma kernels run, the
        // other with its few items split into pieces: 2100 and 2112 keys).
        for (lq, lk, h, q_std) in [
            (300usize, 300usize, 3usize, 1.0f32),
            (200, 77, 2, 1.0),
            (129, 512, 2, 1.0),
            (1, 16, 2, 1.0),
            (1000, 1000, 2, 1.0),
            (257, 640, 2, 4.0),
            (300, 2100, 2, 1.0),
            (130, 2112, 2, 1.0),
        ] {
            let (q, k, v) = (
                self.rng.tensor(&[lq, h, 128], q_std),
                self.randn(&[lk, h, 128]),
                self.randn(&[lk, h, 128]),
            );
            // The GPU's own kernel, then the portable mma.sync one (on Hopper, forced).
            for portable in [false, true] {
                self.portable_attention = portable;
                check_bf16!(
                    self,
                    if portable {
                        "bf16 attention mma"
                    } else {
                        "bf16 attention"
                    },
                    format!("q [{lq}, {h}, 128] x{q_std}, kv [{lk}]"),
                    vec![q.clone(), k.clone(), v.clone()],
                    [true, true, true],
                    |b, x| b.attention(&x[0], &x[1], &x[2])
                );
            }
            self.portable_attention = false;
        }
        // umT5's attention: head dim 64, scale 1 (sharp softmaxes: q scaled up), and a
        // relative-position bias with T5-sized values; ragged lengths around the 64-row tiles, a
        // 512-token prompt, a single token, more keys than queries.
        for (lq, lk, h, q_std) in [
            (77usize, 77usize, 4usize, 0.3f32),
            (512, 512, 2, 0.3),
            (1, 1, 3, 0.3),
            (100, 37, 3, 0.3),
            (65, 130, 2, 0.5),
        ] {
            let (q, k, v) = (
                self.rng.tensor(&[lq, h, 64], q_std),
                self.randn(&[lk, h, 64]),
                self.randn(&[lk, h, 64]),
            );
            let rel = self.rng.tensor(&[h, lq + lk - 1], 4.0);
            check_bf16!(
                self,
                "bf16 attention rel",
                format!("q [{lq}, {h}, 64] x{q_std}, kv [{lk}], rel x4"),
                vec![q, k, v, rel],
                [true, true, true, false],
                |b, x| b.attention_rel_bias(&x[0], &x[1], &x[2], 1.0, &x[3])
            );
        }
        // Head dim 64: no flash kernel, the f32 path on converted copies.
        let (q, k, v) = (
            self.randn(&[40, 4, 64]),
            self.randn(&[40, 4, 64]),
            self.randn(&[40, 4, 64]),
        );
        check_bf16!(
            self,
            "bf16 attention",
            "q [40, 4, 64] (f32 fallback)",
            vec![q, k, v],
            [true, true, true],
            |b, x| b.attention(&x[0], &x[1], &x[2])
        );
        self.bf16_video()
    }

    /// bf16 `conv3d_add` of `[x, w, bias, residual]` with 2 causal frames of zeros in front and
    /// 1 around in height and width: a VAE residual block's second convolution.
    fn bf16_causal_conv_add(
        &mut self,
        op: &'static str,
        case: &str,
        inputs: [HostTensor; 4],
    ) -> Result<()> {
        check_bf16!(self, op, case, inputs, [true, true, false, true], |b, x| b
            .conv3d_add(
                &x[0],
                &x[1],
                Some(&x[2]),
                [1; 3],
                [[2, 0], [1, 1], [1, 1]],
                &x[3]
            ));
        Ok(())
    }

    /// The time-folded causal convolution input and the frames it leaves for the next chunk, on
    /// the VAE's 96 channels (the kernel's path) and 16 (composed of other ops): the first chunk
    /// (zeros in front), one or two cached frames, one or four new frames, more cached frames
    /// than the taps use, and frames of more row groups than a full grid's warps take two at a
    /// time (`GRID_ROWS`).
    fn bf16_folded_norm(&mut self) -> Result<()> {
        for (c, cached, frames, [h, w]) in [
            (96, 0, 1, [5, 7]),
            (96, 2, 4, [5, 7]),
            (96, 1, 1, [5, 7]),
            (96, 2, 1, [5, 7]),
            (96, 3, 2, [5, 7]),
            (16, 2, 3, [5, 7]),
            (96, 2, 4, GRID_ROWS),
        ] {
            let x = self.randn(&[frames, h, w, c]);
            let gamma = self.randn(&[c]);
            let past = (cached > 0).then(|| self.randn(&[cached, h, w, c]));
            let case = format!("{cached} cached + [{frames}, {h}, {w}, {c}], 3 taps");
            for (part, pick) in [("input", 0usize), ("cached next", 1)] {
                let mut inputs = vec![x.clone(), gamma.clone()];
                inputs.extend(past.clone());
                let as_bf16: Vec<bool> = (0..inputs.len()).map(|i| i != 1).collect();
                check_bf16!(
                    self,
                    "bf16 causal_rms_norm_silu_folded",
                    format!("{case}: {part}"),
                    inputs,
                    as_bf16,
                    |b, x| {
                        b.causal_rms_norm_silu_folded(x.get(2), &x[0], &x[1], 3)
                            .map(|t| if pick == 0 { t.0 } else { t.1 })
                    }
                );
            }
        }
        Ok(())
    }

    /// bf16 convolutions onto at most 8 channels, which run on the narrow implicit-GEMM kernel:
    /// a row wider than a CTA's 64 pixels with a partial last tile, heights and frame counts
    /// that are not multiples of its 4, causal and cached-frame time padding, 1 to 8 outputs,
    /// single taps along an axis, with a bias and with a residual.
    fn bf16_narrow_conv(&mut self) -> Result<()> {
        let cases = [
            (
                [5usize, 7, 133, 96],
                [3usize, 3, 3, 3, 96],
                [[2usize, 0], [1, 1], [1, 1]],
            ),
            ([6, 9, 70, 32], [8, 3, 3, 3, 32], [[0, 0], [1, 1], [1, 1]]),
            ([3, 10, 65, 48], [1, 1, 3, 3, 48], [[0, 0], [1, 1], [1, 1]]),
            ([4, 5, 66, 16], [5, 3, 1, 1, 16], [[2, 0], [0, 0], [0, 0]]),
        ];
        for (xshape, kshape, pad) in cases {
            let fan_in = (kshape[1] * kshape[2] * kshape[3] * kshape[4]) as f32;
            let x = self.randn(&xshape);
            let w = self.rng.tensor(&kshape, fan_in.sqrt().recip());
            let bias = self.randn(&[kshape[0]]);
            check_bf16!(
                self,
                "bf16 conv3d (narrow)",
                format!("x {xshape:?} w {kshape:?} pad {pad:?}"),
                vec![x, w, bias],
                [true, true, false],
                |b, x| { b.conv3d(&x[0], &x[1], Some(&x[2]), [1; 3], pad) }
            );
        }
        let x = self.randn(&[5, 6, 67, 32]);
        let w = self
            .rng
            .tensor(&[3, 3, 3, 3, 32], (27.0f32 * 32.0).sqrt().recip());
        let (bias, residual) = (self.randn(&[3]), self.randn(&[5, 6, 67, 3]));
        self.bf16_causal_conv_add(
            "bf16 conv3d_add (narrow)",
            "x [5, 6, 67, 32] w [3, 3, 3, 3, 32], causal pad, + residual",
            [x, w, bias, residual],
        )?;
        Ok(())
    }

    /// The VAE's ops in bf16: cuDNN convolutions, channel norms (fused with SiLU), affine maps,
    /// the upsample's phase interleave, and attention with its 384-wide head on cuBLASLt.
    fn bf16_video(&mut self) -> Result<()> {
        let x = self.randn(&[3, 9, 11, 16]);
        for (kshape, stride, pad) in [
            (
                [24usize, 3, 3, 3, 16],
                [1usize, 1, 1],
                [[2usize, 0], [1, 1], [1, 1]],
            ),
            ([16, 1, 3, 3, 16], [1, 2, 2], [[0, 0], [0, 1], [0, 1]]),
            ([16, 3, 1, 1, 16], [2, 1, 1], [[0, 0], [0, 0], [0, 0]]),
            ([8, 1, 1, 1, 16], [1, 1, 1], [[0, 0], [0, 0], [0, 0]]),
            // An upsample's four phases: 2x2, one pixel of padding all round.
            ([32, 1, 2, 2, 16], [1, 1, 1], [[0, 0], [1, 1], [1, 1]]),
            // The VAE's head: three output channels.
            ([3, 3, 3, 3, 16], [1, 1, 1], [[2, 0], [1, 1], [1, 1]]),
        ] {
            let fan_in = (kshape[1] * kshape[2] * kshape[3] * kshape[4]) as f32;
            let w = self.rng.tensor(&kshape, fan_in.sqrt().recip());
            let bias = self.randn(&[kshape[0]]);
            let case = format!("w {kshape:?} stride {stride:?} pad {pad:?}");
            check_bf16!(
                self,
                "bf16 conv3d",
                case,
                vec![x.clone(), w, bias],
                [true, true, false],
                |b, x| { b.conv3d(&x[0], &x[1], Some(&x[2]), stride, pad) }
            );
        }
        let (w, bias) = (self.rng.tensor(&[24, 3, 3, 3, 16], 0.05), self.randn(&[24]));
        let residual = self.randn(&[3, 9, 11, 24]);
        self.bf16_causal_conv_add(
            "bf16 conv3d_add",
            "w [24, 3, 3, 3, 16], causal pad, + residual [3, 9, 11, 24]",
            [x.clone(), w, bias, residual],
        )?;
        self.bf16_narrow_conv()?;
        let (gamma, scale, shift) = (self.randn(&[16]), self.randn(&[16]), self.randn(&[16]));
        check_bf16!(
            self,
            "bf16 channel_rms_norm",
            "[3, 9, 11, 16]",
            vec![x.clone(), gamma.clone()],
            [true, false],
            |b, x| b.channel_rms_norm(&x[0], &x[1])
        );
        check_bf16!(
            self,
            "bf16 channel_rms_norm_silu",
            "[3, 9, 11, 16]",
            vec![x.clone(), gamma.clone()],
            [true, false],
            |b, x| b.channel_rms_norm_silu(&x[0], &x[1])
        );
        // The VAE decoder's widest rows.
        let (wide, wide_gamma) = (self.randn(&[2, 3, 5, 384]), self.randn(&[384]));
        check_bf16!(
            self,
            "bf16 channel_rms_norm_silu",
            "[2, 3, 5, 384]",
            vec![wide, wide_gamma],
            [true, false],
            |b, x| b.channel_rms_norm_silu(&x[0], &x[1])
        );
        let past = self.randn(&[1, 9, 11, 16]);
        check_bf16!(
            self,
            "bf16 causal_rms_norm_silu",
            "[1, 9, 11, 16] cached + [3, 9, 11, 16]",
            vec![past, x.clone(), gamma.clone()],
            [true, true, false],
            |b, x| b
                .causal_rms_norm_silu(Some(&x[0]), &x[1], &x[2], 16, 2)
                .map(|(input, _)| input)
        );
        // Rows wider than the channels; the VAE's channel counts (C = 24·n) take the kernel with
        // lanes sharing a row.
        for (c, width, [h, w]) in [
            (16, 64, [7, 13]),
            (96, 128, [7, 13]),
            (192, 192, [7, 13]),
            (24, 32, [7, 13]),
            (96, 96, GRID_ROWS),
        ] {
            let past = self.randn(&[2, h, w, width]);
            let (x, gamma) = (self.randn(&[3, h, w, c]), self.randn(&[c]));
            let case = format!("[2, {h}, {w}, {width}] cached + [3, {h}, {w}, {c}], {width} wide");
            check_bf16!(
                self,
                "bf16 causal_rms_norm_silu",
                &case,
                vec![past.clone(), x.clone(), gamma.clone()],
                [true, true, false],
                |b, x| b
                    .causal_rms_norm_silu(Some(&x[0]), &x[1], &x[2], width, 2)
                    .map(|(input, _)| input)
            );
            // The next chunk's cached frames, which the bf16 kernel stores as it writes them:
            // two of x's three frames, and, keeping more frames than x has, the copy after it.
            for keep in [2, 4] {
                check_bf16!(
                    self,
                    "bf16 causal_rms_norm_silu cached next",
                    &format!("{case}, keep {keep}"),
                    vec![past.clone(), x.clone(), gamma.clone()],
                    [true, true, false],
                    |b, x| b
                        .causal_rms_norm_silu(Some(&x[0]), &x[1], &x[2], width, keep)
                        .map(|(_, tail)| tail)
                );
            }
        }
        self.bf16_folded_norm()?;
        check_bf16!(
            self,
            "bf16 channel_affine",
            "bf16 [3, 9, 11, 16], f32 scale and shift",
            vec![x, scale, shift],
            [true, false, false],
            |b, x| b.channel_affine(&x[0], &x[1], &x[2])
        );
        check_bf16!(
            self,
            "bf16 interleave_phases",
            "[3, 10, 12, 64] -> [3, 18, 22, 16]",
            vec![self.randn(&[3, 10, 12, 64])],
            [true],
            |b, x| b.interleave_phases(&x[0])
        );
        // The VAE's middle attention: frames as heads, one head of all 384 channels.
        let (q, k, v) = (
            self.randn(&[300, 2, 384]),
            self.randn(&[300, 2, 384]),
            self.randn(&[300, 2, 384]),
        );
        compare!(
            self,
            self.bf16_gpu(),
            "bf16 attention",
            "q [300, 2, 384] (wide heads on cuBLASLt)",
            BF16_SCORES,
            vec![q.clone(), k.clone(), v.clone()],
            [true, true, true],
            |b, x| b.attention(&x[0], &x[1], &x[2])
        );
        check!(
            self,
            "attention",
            "q [300, 2, 384] (wide heads on cuBLASLt)",
            REDUCTION,
            vec![q, k, v],
            |b, x| b.attention(&x[0], &x[1], &x[2])
        );
        Ok(())
    }
}

/// Runs every op check with inputs drawn from `seed`.
pub fn op_checks(gpu: &CudaBackend, seed: u64) -> Result<Vec<CheckRow>> {
    let mut c = Checker {
        gpu,
        cpu: CpuBackend,
        rng: Normal::new(seed),
        rows: Vec::new(),
        portable_attention: false,
    };
    c.transfers_and_layout()?;
    c.staged_uploads()?;
    c.async_downloads()?;
    c.elementwise()?;
    c.norms()?;
    c.linear()?;
    c.attention()?;
    c.sla()?;
    c.size_limits()?;
    c.conv()?;
    c.bf16()?;
    c.rows
        .extend(super::check_seeded::seeded_checks(gpu, seed)?);
    gpu.synchronize()?;
    Ok(c.rows)
}

/// A plain-text table of check rows, one per line, failures marked.
pub fn format_table(rows: &[CheckRow]) -> String {
    let mut out = format!(
        "{:<22} {:<52} {:>10} {:>8}  result\n",
        "op", "case", "max rel", "tol"
    );
    for r in rows {
        out += &format!(
            "{:<22} {:<52} {:>10.2e} {:>8.0e}  {}\n",
            r.op,
            r.case,
            r.err,
            r.tol,
            if r.passed() { "ok" } else { "FAIL" }
        );
    }
    out
}
