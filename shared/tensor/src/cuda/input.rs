//! The input of linear layers in the form their GEMM reads it: the activation tensor itself, or
//! its rows quantized for FP8 or INT8 layers. Prepared once, an input serves several layers (the
//! DiT's q, k and v read one normalized activation), and for FP8 layers the LayerNorm before them
//! can write it directly.

use super::device::Device;
use super::int8::{self, CudaInt8Blocks};
use super::quant::{self, CudaFp8Rows, Lifetime};
use super::{
    CudaLinear, CudaTensor, LinearWeight, Pending, finish, gemm_fp8, gemm_fp8_residual, gemm_int8,
};
use crate::{Error, Result, shapes};

/// The form a layer's GEMM reads its input in, given by the layer's weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum InputKind {
    Dense,
    /// Per-token FP8 e4m3 rows.
    Fp8,
    /// 128 × 128 INT8 tiles.
    Int8,
}

impl InputKind {
    pub fn of(w: &CudaLinear) -> Self {
        match w.weight {
            LinearWeight::Dense(_) => InputKind::Dense,
            LinearWeight::Fp8 { .. } => InputKind::Fp8,
            LinearWeight::Int8(_) => InputKind::Int8,
        }
    }

    fn name(self) -> &'static str {
        match self {
            InputKind::Dense => "unquantized",
            InputKind::Fp8 => "FP8",
            InputKind::Int8 => "INT8",
        }
    }
}

/// A prepared linear input ([`crate::Backend::linear_input`]). Cheap to clone.
#[derive(Debug, Clone)]
pub struct CudaLinearInput {
    /// The `[.., in]` shape of the activation it holds.
    shape: Vec<usize>,
    form: Form,
}

#[derive(Debug, Clone)]
enum Form {
    Dense(CudaTensor),
    Fp8(CudaFp8Rows),
    Int8(CudaInt8Blocks),
}

impl CudaLinearInput {
    /// FP8 rows of an activation of `shape` (written by a fused norm).
    pub(super) fn fp8(shape: &[usize], rows: CudaFp8Rows) -> Self {
        Self {
            shape: shape.to_vec(),
            form: Form::Fp8(rows),
        }
    }

    /// The FP8 rows of an input prepared for FP8 layers.
    pub(super) fn fp8_rows(&self) -> Option<&CudaFp8Rows> {
        match &self.form {
            Form::Fp8(q) => Some(q),
            Form::Dense(_) | Form::Int8(_) => None,
        }
    }

    /// The `[.., in]` shape of the activation.
    pub(super) fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The activation of an input prepared for unquantized layers.
    pub(super) fn dense(&self) -> Option<&CudaTensor> {
        match &self.form {
            Form::Dense(t) => Some(t),
            Form::Fp8(_) | Form::Int8(_) => None,
        }
    }

    fn kind(&self) -> InputKind {
        match self.form {
            Form::Dense(_) => InputKind::Dense,
            Form::Fp8(_) => InputKind::Fp8,
            Form::Int8(_) => InputKind::Int8,
        }
    }

    /// A tensor of the input's, for [`super::CudaBackend::check`].
    pub(super) fn anchor(&self) -> &CudaTensor {
        match &self.form {
            Form::Dense(t) => t,
            Form::Fp8(q) => &q.scales,
            Form::Int8(q) => &q.scales,
        }
    }
}

/// `x: [.., in]` in the form `kind` (quantized on the device for the 8-bit kinds).
pub(super) fn prepare(dev: &Device, x: &CudaTensor, kind: InputKind) -> Result<CudaLinearInput> {
    let form = match kind {
        InputKind::Dense => Form::Dense(x.clone()),
        InputKind::Fp8 => Form::Fp8(quant::quantize_rows(dev, x, Lifetime::Activation)?),
        InputKind::Int8 => Form::Int8(int8::quantize(dev, x, Lifetime::Activation)?),
    };
    Ok(CudaLinearInput {
        shape: x.shape().to_vec(),
        form,
    })
}

/// `x · wᵀ + b`, then GELU (tanh) when `gelu`, of a prepared input: `[.., out]`. An unquantized
/// input goes through any layer (quantized there); a quantized one only through its kind. INT8
/// layers on the portable kernel when `portable`.
pub(super) fn gemm(
    dev: &Device,
    x: &CudaLinearInput,
    w: &CudaLinear,
    gelu: bool,
    portable: bool,
) -> Result<CudaTensor> {
    let shape = shapes::linear(&x.shape, w.in_features, w.out_features)?;
    match &x.form {
        Form::Dense(t) => super::gemm(dev, t, w, gelu, portable),
        Form::Fp8(q) if InputKind::of(w) == InputKind::Fp8 => {
            gemm_fp8(dev, q, w, gelu)?.reshaped(&shape)
        }
        Form::Int8(q) if InputKind::of(w) == InputKind::Int8 => {
            let out = gemm_int8(dev, q, w, None, portable)?;
            finish(dev, out, w, Pending { bias: false, gelu })?.reshaped(&shape)
        }
        Form::Fp8(_) | Form::Int8(_) => Err(mismatch("linear", x, w)),
    }
}

/// `residual + (x · wᵀ + b)·gate` (no gate: 1) of an input quantized for 8-bit layer `w`, the
/// residual added in the GEMM (FP8: into a bf16 or f32 stream; INT8: a bf16 stream, an f32 gate).
pub(super) fn gemm_residual(
    dev: &Device,
    x: &CudaLinearInput,
    w: &CudaLinear,
    residual: &CudaTensor,
    gate: Option<&CudaTensor>,
    portable: bool,
) -> Result<CudaTensor> {
    match &x.form {
        Form::Fp8(q) if InputKind::of(w) == InputKind::Fp8 => {
            gemm_fp8_residual(dev, q, w, residual, gate)
        }
        Form::Int8(q) if InputKind::of(w) == InputKind::Int8 => {
            gemm_int8(dev, q, w, Some(int8::Residual { residual, gate }), portable)
        }
        Form::Dense(_) | Form::Fp8(_) | Form::Int8(_) => Err(mismatch("linear_residual", x, w)),
    }
}

/// The error of input `x` given to layer `w` of another kind.
fn mismatch(op: &'static str, x: &CudaLinearInput, w: &CudaLinear) -> Error {
    Error::invalid(
        op,
        format!(
            "the input was quantized for {} layers, the layer [{}, {}] is {}",
            x.kind().name(),
            w.out_features,
            w.in_features,
            InputKind::of(w).name()
        ),
    )
}
