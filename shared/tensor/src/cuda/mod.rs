//! The CUDA backend: NVRTC-compiled kernels from `kernels/*.cu`, GEMMs through cuBLASLt, a caching
//! allocator, one stream per backend.
//!
//! The CUDA libraries are opened at run time (cudarc's `dynamic-loading`): the crate builds and its
//! tests run on machines without CUDA, and [`CudaBackend::new`] returns an error, never a panic,
//! when the driver, NVRTC or cuBLASLt is missing or no GPU is present.
//!
//! **Precision** ([`Precision`]): tensors are f32 or bf16 ([`CudaTensor::dtype`]). With
//! [`Precision::F32`] every op computes and stores f32 (GEMMs with TF32 off), matching the CPU
//! reference to f32 rounding. With [`Precision::Bf16`] the ops that feed matrix units produce bf16
//! — linear layers (bf16 weights, f32 accumulation), norms, attention (the tensor-core flash
//! kernel on sm_90a) — while the rest keep their inputs' types: elementwise ops store the wider of
//! their inputs, so an f32 residual stream stays f32 while its branches are bf16, as the DiT wants.
//! Convolutions run on cuDNN in the backend's precision (the direct f32 kernel stands in when cuDNN
//! cannot be loaded), and the VAE's channel ops keep their inputs' types. Ops without a bf16
//! kernel (SLA, the sampler's arithmetic) read bf16 inputs through an f32 copy.
//!
//! **Quantization** ([`Quant`]): with [`Quant::Fp8`] on a bf16 backend, the linear layers a model
//! uploads through [`Backend::upload_linear_quantizable`] (the DiT blocks' projections and FFN)
//! hold FP8 e4m3 weights with one scale per output channel, quantize their input per token on the
//! fly (`kernels/quant.cu`) and multiply through cuBLASLt's FP8 GEMM into bf16; every other layer
//! stays bf16. With [`Quant::Int8`] they run TurboDiffusion's W8A8 scheme instead: int8 weights
//! and activations in 128×128 tiles with one f32 scale each (a `-quant` checkpoint's weights as
//! they are, others quantized at load), through GEMMs of our own (`kernels/int8_gemm.cu`: wgmma on
//! sm_90a, mma.sync elsewhere).
//!
//! Work is queued asynchronously on the backend's stream; [`Backend::download`] and
//! [`Backend::synchronize`] wait for it, [`Backend::download_async`] only queues a copy behind it
//! (`readback`). Launch errors surface at the launch, execution errors at the next synchronizing
//! call.

mod alloc;
mod attention;
pub mod check;
pub mod check_fp8;
pub mod check_int8;
mod check_quant;
mod check_seeded;
mod compile;
mod conv;
mod cudnn;
mod cudnn_plans;
mod device;
mod elementwise;
mod fold;
mod gemm;
mod input;
mod int8;
pub mod kernels;
mod layout;
mod norm;
mod nvml;
mod quant;
mod readback;
mod rows;
mod sage;
mod seeded;
mod split;
mod staging;
mod tma;

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use cudarc::driver::{CudaEvent, result as driver, sys::CUevent_flags};

pub use alloc::PoolStats;
pub use compile::{
    Compiled, KernelStats, arch_for, compile_module, compile_source, nvrtc_available, nvrtc_version,
};
pub use conv::ConvTimes;
pub use device::DeviceInfo;
pub use input::CudaLinearInput;
pub use int8::CudaInt8Blocks;
pub use quant::CudaFp8Rows;
pub use sage::SageSelection;

use alloc::DeviceBuffer;
use device::Device;
use gemm::{Fp8Out, LinearGemm, Operands, Pending};
use input::InputKind;
use quant::Lifetime;

use crate::backend::{ConvInput, fold_time_by_ops};
use crate::{
    Backend, DType, Error, HostTensor, LinearWeights, PendingDownload, Result, SlaParams,
    TensorBytes, shapes,
};

/// Turns a CUDA library error into the crate's error, naming the op.
pub(crate) trait Wrap<T> {
    fn w(self, op: &str) -> Result<T>;
}

impl<T, E: Display> Wrap<T> for std::result::Result<T, E> {
    fn w(self, op: &str) -> Result<T> {
        self.map_err(|e| Error::Backend {
            backend: "cuda",
            msg: format!("{op}: {e}"),
        })
    }
}

/// A dense row-major tensor in device memory: shape, element type and a buffer from the backend's
/// pool. Cheap to clone (the buffer is shared); ops never write into their inputs.
#[derive(Clone)]
pub struct CudaTensor {
    shape: Vec<usize>,
    dtype: DType,
    buf: Arc<DeviceBuffer>,
    /// Bytes into `buf` where the tensor starts: nonzero for the rows [`Backend::narrow`] gives
    /// as a view.
    offset: u64,
}

impl std::fmt::Debug for CudaTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaTensor{:?} {}", self.shape, self.dtype)
    }
}

impl CudaTensor {
    /// An f32 tensor with unspecified contents (NaN-filled when the backend poisons allocations).
    fn alloc(dev: &Device, shape: &[usize]) -> Result<Self> {
        Self::alloc_as(dev, shape, DType::F32)
    }

    /// A tensor of `dtype` with unspecified contents (NaN-filled when poisoning).
    fn alloc_as(dev: &Device, shape: &[usize], dtype: DType) -> Result<Self> {
        let n: usize = shape.iter().product();
        Ok(Self::whole(shape, dtype, dev.alloc(n, dtype)?))
    }

    /// A tensor that is the whole of `buf`.
    fn whole(shape: &[usize], dtype: DType, buf: DeviceBuffer) -> Self {
        Self {
            shape: shape.to_vec(),
            dtype,
            buf: Arc::new(buf),
            offset: 0,
        }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Size of the last dimension (the row length).
    fn cols(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }

    fn ptr(&self) -> u64 {
        self.buf.ptr() + self.offset
    }

    /// The same memory viewed with another shape of equal element count.
    fn reshaped(&self, shape: &[usize]) -> Result<Self> {
        shapes::reshape(&self.shape, shape)?;
        Ok(Self {
            shape: shape.to_vec(),
            ..self.clone()
        })
    }

    /// Rows `start..start + len` of the outermost dimension sharing this tensor's memory, where
    /// they start on a 256-byte boundary (the alignment of an allocation, which kernels' vector
    /// loads, TMA and cuBLASLt may rely on); `None` elsewhere.
    fn rows_view(&self, start: usize, len: usize) -> Result<Option<Self>> {
        let shape = shapes::slice(&self.shape, 0, start, len)?;
        let row_bytes = self.shape[1..].iter().product::<usize>() * self.dtype.size_in_bytes();
        let offset = self.offset + (start * row_bytes) as u64;
        Ok(offset.is_multiple_of(256).then(|| Self {
            shape,
            offset,
            ..self.clone()
        }))
    }
}

/// The kernels' code for an element type (`DT_F32` / `DT_BF16` of common.cuh).
fn dt_code(dtype: DType) -> i32 {
    match dtype {
        DType::BF16 => 1,
        DType::F32 | DType::F16 | DType::I8 => 0,
    }
}

/// The widest element type among `tensors`: f32 if any is f32.
fn widest(tensors: &[&CudaTensor]) -> DType {
    if tensors.iter().all(|t| t.dtype == DType::BF16) {
        DType::BF16
    } else {
        DType::F32
    }
}

impl Profiler {
    fn marks(&self) -> std::sync::MutexGuard<'_, Vec<Mark>> {
        self.marks.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A linear layer on the device: weight `[out, in]` in the backend's precision, in FP8 or in INT8
/// blocks (see [`Quant`]), optional bias `[out]` in the backend's precision (int8 W8A8 checkpoints
/// are dequantized when placed as dense or FP8 layers).
#[derive(Debug)]
pub struct CudaLinear {
    out_features: usize,
    in_features: usize,
    weight: LinearWeight,
    bias: Option<CudaTensor>,
}

#[derive(Debug)]
enum LinearWeight {
    Dense(CudaTensor),
    /// Quantized per output channel, or with one scale for the whole matrix where that keeps
    /// e4m3's relative precision (`uniform`, [`crate::fp8::UNIFORM_SPREAD`]); with `bound` (f32 `[2]`: the
    /// largest row norm of the dequantized weight, the largest |bias|), which bounds the layer's
    /// outputs for an input of known row norms ([`quant::hidden_scale`]).
    Fp8 {
        weight: CudaFp8Rows,
        bound: CudaTensor,
        uniform: bool,
    },
    /// TurboDiffusion's 128×128 int8 tiles.
    Int8(CudaInt8Blocks),
}

impl CudaLinear {
    /// A tensor of the layer's, for [`CudaBackend::check`]'s test that it lives on this backend.
    fn anchor(&self) -> &CudaTensor {
        match &self.weight {
            LinearWeight::Dense(w) => w,
            LinearWeight::Fp8 { weight: w, .. } => &w.scales,
            LinearWeight::Int8(w) => &w.scales,
        }
    }

    /// Whether a GELU after the layer runs in the GEMM's epilogue. The epilogue's GELU is an
    /// approximation of its own: the f32 reference path keeps the separate kernel, whose result
    /// matches the CPU to f32 rounding.
    fn gelu_in_epilogue(&self) -> bool {
        !matches!(&self.weight, LinearWeight::Dense(w) if w.dtype != DType::BF16)
    }

    /// Whether the weight is FP8.
    pub fn is_fp8(&self) -> bool {
        matches!(self.weight, LinearWeight::Fp8 { .. })
    }

    /// An FP8 layer whose weight has one scale ([`LinearWeight::Fp8`]'s `uniform`).
    fn is_uniform_fp8(&self) -> bool {
        matches!(self.weight, LinearWeight::Fp8 { uniform: true, .. })
    }

    /// Whether the weight is in INT8 blocks.
    pub fn is_int8(&self) -> bool {
        matches!(self.weight, LinearWeight::Int8(_))
    }
}

/// The element type of the tensors that feed matrix units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Precision {
    /// f32 everywhere: the reference numerics.
    #[default]
    F32,
    /// bf16 weights and GEMM/attention operands with f32 accumulation; f32 residuals.
    Bf16,
}

impl Precision {
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
        }
    }
}

/// How the linear layers a model marks quantizable ([`Backend::upload_linear_quantizable`]) store
/// their weights and multiply. Applies to [`Precision::Bf16`] backends; an f32 backend keeps the
/// reference numerics and ignores it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Quant {
    /// In the backend's precision, like every other layer.
    #[default]
    None,
    /// FP8 e4m3 weights (per-output-channel scales, quantized at load) and activations
    /// (per-token scales, quantized before each GEMM), bf16 bias and output: cuBLASLt's FP8 GEMM
    /// with outer-vector scaling, which needs compute capability 9.0 (H100/H200).
    Fp8,
    /// TurboDiffusion's W8A8: int8 weights and activations in 128×128 tiles with f32 scales
    /// (weights as a `-quant` checkpoint holds them or quantized at load, activations before each
    /// GEMM), int32 sums per 128-deep K block promoted into f32, bf16 bias and output
    /// (`kernels/int8_gemm.cu`: wgmma on H100/H200, mma.sync on every other supported GPU).
    /// Layers need in_features % 128 == 0 and out_features % 8 == 0.
    Int8,
}

/// Options for [`CudaBackend::with_options`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CudaOptions {
    /// Fill every allocation with NaN before handing it out, so unwritten output shows up in any
    /// comparison (device checks; costs one memset per allocation).
    pub poison_allocations: bool,
    pub precision: Precision,
    pub quant: Quant,
}

/// The CUDA backend for one GPU. Clones share the GPU state (stream, pool, kernels).
#[derive(Clone)]
pub struct CudaBackend {
    dev: Arc<Device>,
    precision: Precision,
    quant: Quant,
    /// Run attention and the INT8 GEMM on the portable mma.sync kernels even where the wgmma ones
    /// apply.
    portable: bool,
    profiler: Arc<Profiler>,
}

/// Device time of one op kind over a profiled stretch of work.
#[derive(Debug, Clone, PartialEq)]
pub struct OpTime {
    pub op: &'static str,
    pub calls: usize,
    pub total_ms: f64,
    /// The host's time inside the op's calls (checking, allocating, enqueueing): where it
    /// exceeds the device time, work queued behind it waits for the host.
    pub host_ms: f64,
}

/// One profiled op call: its kind, events before and after its work, and the host's ms in it.
type Mark = (&'static str, CudaEvent, CudaEvent, f64);

/// CUDA events around every op while enabled ([`CudaBackend::start_profile`]).
#[derive(Default)]
struct Profiler {
    enabled: AtomicBool,
    marks: Mutex<Vec<Mark>>,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaBackend({})", self.dev.info.name)
    }
}

/// An attention's name in profiles: self- and cross-attention differ by orders of magnitude in
/// cost, so they are profiled apart.
fn attention_label(q: &CudaTensor, k: &CudaTensor) -> &'static str {
    if q.shape().first() == k.shape().first() {
        "attention (self)"
    } else {
        "attention (cross)"
    }
}

/// A linear layer's name in profiles: by its weight's form, and the GELU of its epilogue.
fn linear_label(w: &CudaLinear, gelu: bool) -> &'static str {
    match (InputKind::of(w), gelu) {
        (InputKind::Dense, false) => "linear",
        (InputKind::Dense, true) => "linear+gelu",
        (InputKind::Fp8, false) => "linear fp8",
        (InputKind::Fp8, true) => "linear+gelu fp8",
        (InputKind::Int8, false) => "linear int8",
        (InputKind::Int8, true) => "linear+gelu int8",
    }
}

/// `x · wᵀ + b` through cuBLASLt, for `x: [.., in]`: in the weight's element type (`x` is
/// converted first when its type differs), or for an 8-bit layer on `x` quantized for it (on the
/// device's own INT8 kernel).
fn gemm_linear(dev: &Device, x: &CudaTensor, w: &CudaLinear) -> Result<CudaTensor> {
    gemm(dev, x, w, false, false)
}

/// [`gemm_linear`], followed by GELU (tanh) when `gelu`: in cuBLASLt's epilogue where it has
/// one, like the bias; an INT8 layer on the portable kernel when `portable`.
fn gemm(
    dev: &Device,
    x: &CudaTensor,
    w: &CudaLinear,
    gelu: bool,
    portable: bool,
) -> Result<CudaTensor> {
    let out = match &w.weight {
        LinearWeight::Dense(weight) => dense_linear(dev, x, w, weight, gelu, weight.dtype, None)?,
        LinearWeight::Fp8 { .. } | LinearWeight::Int8(_) => {
            let x = input::prepare(dev, x, InputKind::of(w))?;
            input::gemm(dev, &x, w, gelu, portable)?
        }
    };
    Ok(out)
}

/// `x · wᵀ + b` for an INT8 layer and block-quantized rows `x: [rows, in]`: `[rows, out]` bf16,
/// or with `add` added into its residual (times its gate) in the GEMM's epilogue; on the portable
/// kernel when `portable`.
fn gemm_int8(
    dev: &Device,
    x: &CudaInt8Blocks,
    w: &CudaLinear,
    add: Option<int8::Residual>,
    portable: bool,
) -> Result<CudaTensor> {
    let LinearWeight::Int8(weight) = &w.weight else {
        return Err(Error::invalid(
            "linear_int8",
            format!(
                "the layer [{}, {}] has no INT8 weight (upload it with Quant::Int8)",
                w.out_features, w.in_features
            ),
        ));
    };
    int8::gemm(dev, x, weight, w.bias.as_ref(), add, portable)
}

/// `x · wᵀ + b` (then GELU when `gelu`) for an FP8 layer and quantized rows `x: [rows, in]`:
/// `[rows, out]` bf16.
fn gemm_fp8(dev: &Device, x: &CudaFp8Rows, w: &CudaLinear, gelu: bool) -> Result<CudaTensor> {
    let weight = fp8_weight("linear_fp8", x, w)?;
    let out = CudaTensor::alloc_as(dev, &[x.rows, w.out_features], DType::BF16)?;
    let pending = dev.gemm.linear(
        &dev.stream,
        &fp8_gemm(x, weight, w, (out.ptr(), Fp8Out::Bf16), gelu),
    )?;
    finish(dev, out, w, pending)
}

/// The FP8 weight of layer `w` for quantized rows `x`, or an error (of `op`) naming what does not
/// fit.
fn fp8_weight<'w>(op: &'static str, x: &CudaFp8Rows, w: &'w CudaLinear) -> Result<&'w CudaFp8Rows> {
    let LinearWeight::Fp8 { weight, .. } = &w.weight else {
        return Err(Error::invalid(
            op,
            format!(
                "the layer [{}, {}] has no FP8 weight (upload it with Quant::Fp8)",
                w.out_features, w.in_features
            ),
        ));
    };
    if x.cols != w.in_features {
        return Err(Error::shape(
            op,
            format!("input features must be {}", w.in_features),
            &[x.rows, x.cols],
        ));
    }
    Ok(weight)
}

/// `residual + (x · wᵀ + b)·gate` (no gate: 1) for an FP8 layer and quantized rows `x: [rows, in]`,
/// the residual (`[.., out]`, `rows` rows, f32 or bf16) added in the GEMM's f32 accumulator and
/// the sum rounded once to the residual's type. The gate multiplies the weight's per-channel
/// scales and the bias (then bf16, the type cuBLASLt's FP8 GEMMs read a bias in), so the branch
/// is never rounded on its own, and the GEMM reads and writes the stream where a residual pass
/// after it would read the branch and the stream and write the stream again.
fn gemm_fp8_residual(
    dev: &Device,
    x: &CudaFp8Rows,
    w: &CudaLinear,
    residual: &CudaTensor,
    gate: Option<&CudaTensor>,
) -> Result<CudaTensor> {
    const OP: &str = "linear_residual";
    let weight = fp8_weight(OP, x, w)?;
    if residual.cols() != w.out_features || residual.numel() != x.rows * w.out_features {
        return Err(Error::shape(
            OP,
            format!("the residual must be [{}, {}]", x.rows, w.out_features),
            &residual.shape,
        ));
    }
    let out_type = match residual.dtype {
        DType::F32 => Fp8Out::F32,
        DType::BF16 => Fp8Out::Bf16,
        dtype @ (DType::F16 | DType::I8) => return Err(Error::DType { op: OP, dtype }),
    };
    let (scales, bias) = match gate {
        Some(g) => (
            elementwise::broadcast_as(dev, OP, kernels::MUL, &weight.scales, g, DType::F32)?,
            w.bias
                .as_ref()
                .map(|b| elementwise::broadcast_as(dev, OP, kernels::MUL, b, g, DType::BF16))
                .transpose()?,
        ),
        None => (weight.scales.clone(), w.bias.clone()),
    };
    let out = CudaTensor::alloc_as(dev, &residual.shape, residual.dtype)?;
    let op = LinearGemm {
        operands: Operands::Fp8 {
            x_scales: x.scales.ptr(),
            w_scales: scales.ptr(),
            out: out_type,
        },
        acc: Some(residual.ptr()),
        bias: bias.as_ref().map(CudaTensor::ptr),
        ..fp8_gemm(x, weight, w, (out.ptr(), out_type), false)
    };
    let pending = dev.gemm.linear(&dev.stream, &op)?;
    match bias.filter(|_| pending.bias) {
        Some(bias) => elementwise::broadcast(dev, OP, kernels::ADD, &out, &bias),
        None => Ok(out),
    }
}

/// Whether 8-bit layer `w`'s GEMM adds into `residual` (times `gate`): FP8 into a bf16 or f32
/// stream, INT8 into a bf16 one with an f32 gate.
fn quantized_residual_fits(
    w: &CudaLinear,
    residual: &CudaTensor,
    gate: Option<&CudaTensor>,
) -> bool {
    match w.weight {
        LinearWeight::Fp8 { .. } => matches!(residual.dtype, DType::F32 | DType::BF16),
        LinearWeight::Int8(_) => {
            residual.dtype == DType::BF16 && gate.is_none_or(|g| g.dtype == DType::F32)
        }
        LinearWeight::Dense(_) => false,
    }
}

/// The operands of a dense layer's GEMM from `weight`-typed weights to an `out`-typed output: the
/// weight's own type, or f32 from bf16 ([`Operands::Wide`]); none for any other pair.
fn dense_operands(weight: DType, out: DType) -> Option<Operands> {
    match (weight, out) {
        (w, o) if w == o => Some(Operands::Float(w)),
        (DType::BF16, DType::F32) => Some(Operands::Wide),
        (_, _) => None,
    }
}

/// `[acc +] x · wᵀ + b` (then GELU when `gelu`) for dense layer `w` (its weight `weight`), as a
/// new tensor of `out_dtype`: the weight's type, or f32 from bf16 weights ([`Operands::Wide`]).
/// `acc`, of the output's shape and type, is added in the GEMM's accumulator.
fn dense_linear(
    dev: &Device,
    x: &CudaTensor,
    w: &CudaLinear,
    weight: &CudaTensor,
    gelu: bool,
    out_dtype: DType,
    acc: Option<&CudaTensor>,
) -> Result<CudaTensor> {
    let shape = shapes::linear(&x.shape, w.in_features, w.out_features)?;
    let operands = dense_operands(weight.dtype, out_dtype).ok_or_else(|| {
        Error::invalid(
            "linear",
            format!(
                "no GEMM from {:?} weights to a {out_dtype:?} output",
                weight.dtype
            ),
        )
    })?;
    if let Some(acc) = acc
        && (acc.shape != shape || acc.dtype != out_dtype)
    {
        return Err(Error::shape(
            "linear",
            format!("the added matrix must be {shape:?} {out_dtype:?}"),
            &acc.shape,
        ));
    }
    let x = &converted(dev, x, weight.dtype)?;
    let out = CudaTensor::alloc_as(dev, &shape, out_dtype)?;
    let op = LinearGemm {
        operands,
        acc: acc.map(CudaTensor::ptr),
        ..dense_gemm(x, weight, w, &out, gelu)
    };
    let pending = dev.gemm.linear(&dev.stream, &op)?;
    finish(dev, out, w, pending)
}

/// The cuBLASLt GEMM of dense layer `w` (its weight `weight`) on `x`, already in the weight's
/// dtype, into `out` of the same dtype.
fn dense_gemm(
    x: &CudaTensor,
    weight: &CudaTensor,
    w: &CudaLinear,
    out: &CudaTensor,
    gelu: bool,
) -> LinearGemm {
    LinearGemm {
        operands: Operands::Float(weight.dtype),
        out: out.ptr(),
        acc: None,
        x: x.ptr(),
        w: weight.ptr(),
        bias: w.bias.as_ref().map(CudaTensor::ptr),
        gelu,
        rows: x.numel() / w.in_features.max(1),
        n: w.out_features,
        k: w.in_features,
    }
}

/// The cuBLASLt GEMM of FP8 layer `w` (its weight `weight`) on quantized rows `x` into `out`, of
/// type `out_type`.
fn fp8_gemm(
    x: &CudaFp8Rows,
    weight: &CudaFp8Rows,
    w: &CudaLinear,
    (out, out_type): (cudarc::driver::sys::CUdeviceptr, Fp8Out),
    gelu: bool,
) -> LinearGemm {
    LinearGemm {
        operands: Operands::Fp8 {
            x_scales: x.scales.ptr(),
            w_scales: weight.scales.ptr(),
            out: out_type,
        },
        out,
        acc: None,
        x: x.values.ptr(),
        w: weight.values.ptr(),
        bias: w.bias.as_ref().map(CudaTensor::ptr),
        gelu,
        rows: x.rows,
        n: w.out_features,
        k: w.in_features,
    }
}

/// The GEMM output `out` of layer `w` with the epilogue steps cuBLASLt could not fuse applied.
fn finish(dev: &Device, out: CudaTensor, w: &CudaLinear, pending: Pending) -> Result<CudaTensor> {
    let out = match w.bias.as_ref().filter(|_| pending.bias) {
        Some(bias) => elementwise::broadcast(dev, "linear", kernels::ADD, &out, bias)?,
        None => out,
    };
    if pending.gelu {
        elementwise::unary(dev, kernels::GELU_TANH, &out)
    } else {
        Ok(out)
    }
}

/// `t` as `dtype`: the tensor itself when it already has that type, else a converted copy.
fn converted(dev: &Device, t: &CudaTensor, dtype: DType) -> Result<CudaTensor> {
    if t.dtype == dtype {
        Ok(t.clone())
    } else {
        elementwise::cast(dev, t, dtype)
    }
}

impl CudaBackend {
    /// The backend on GPU `ordinal`, or an error naming what is missing (library, device).
    pub fn new(ordinal: usize) -> Result<Self> {
        Self::with_options(ordinal, CudaOptions::default())
    }

    pub fn with_options(ordinal: usize, options: CudaOptions) -> Result<Self> {
        Ok(Self {
            dev: Arc::new(Device::new(ordinal, options.poison_allocations)?),
            precision: options.precision,
            quant: options.quant,
            portable: false,
            profiler: Arc::default(),
        })
    }

    /// The same GPU state (stream, pool, kernels) with another precision: tensors move freely
    /// between the two.
    pub fn with_precision(&self, precision: Precision) -> Self {
        Self {
            precision,
            ..self.clone()
        }
    }

    /// The same GPU state with another quantization of the layers models upload through
    /// [`Backend::upload_linear_quantizable`] (it applies to layers uploaded from now on).
    pub fn with_quant(&self, quant: Quant) -> Self {
        Self {
            quant,
            ..self.clone()
        }
    }

    /// The same GPU state, running attention and the INT8 GEMM on the portable mma.sync kernels
    /// (the ones GPUs other than H100/H200 use) even on Hopper: for checking and timing them there.
    pub fn with_portable_kernels(&self) -> Self {
        Self {
            portable: true,
            ..self.clone()
        }
    }

    /// Starts recording the device time of every op (all clones of this backend), dropping
    /// earlier records. Costs two events per op: profile a separate run, not a timed one.
    pub fn start_profile(&self) {
        self.profiler.marks().clear();
        self.profiler.enabled.store(true, Ordering::SeqCst);
    }

    /// Stops recording, waits for the recorded work and returns the device (and host) time per op
    /// kind, most expensive on the device first.
    pub fn finish_profile(&self) -> Result<Vec<OpTime>> {
        self.profiler.enabled.store(false, Ordering::SeqCst);
        self.dev.stream.synchronize().w("profile")?;
        let marks = std::mem::take(&mut *self.profiler.marks());
        let mut times: Vec<OpTime> = Vec::new();
        for (op, start, end, host_ms) in marks {
            let ms = f64::from(start.elapsed_ms(&end).w("profile")?);
            match times.iter_mut().find(|t| t.op == op) {
                Some(t) => {
                    t.calls += 1;
                    t.total_ms += ms;
                    t.host_ms += host_ms;
                }
                None => times.push(OpTime {
                    op,
                    calls: 1,
                    total_ms: ms,
                    host_ms,
                }),
            }
        }
        times.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
        Ok(times)
    }

    /// The 8-bit attention kernel this backend runs: they serve the bf16 path; f32 precision and
    /// GPUs without FP8 tensor cores compute the Sage modes exactly.
    pub(super) fn sage_kernel(&self) -> Option<kernels::Kernel> {
        sage::sage_kernel(&self.dev, self.portable).filter(|_| self.precision == Precision::Bf16)
    }

    /// Runs `f`, between two recorded events when profiling.
    fn timed<T>(&self, op: &'static str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        if !self.profiler.enabled.load(Ordering::Relaxed) {
            return f();
        }
        let event = || -> Result<CudaEvent> {
            let e = self
                .dev
                .stream
                .context()
                .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
                .w("profile")?;
            e.record(&self.dev.stream).w("profile")?;
            Ok(e)
        };
        let start = event()?;
        let host = std::time::Instant::now();
        let out = f()?;
        let host_ms = host.elapsed().as_secs_f64() * 1e3;
        let end = event()?;
        self.profiler.marks().push((op, start, end, host_ms));
        Ok(out)
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    pub fn quant(&self) -> Quant {
        self.quant
    }

    /// `x: [.., K]` (f32 or bf16, K a multiple of 8) quantized to FP8 per row of its last
    /// dimension, as an FP8 layer quantizes its input.
    pub fn quantize_fp8(&self, x: &CudaTensor) -> Result<CudaFp8Rows> {
        self.timed("quantize fp8", || {
            self.check("quantize_fp8", &[x])?;
            quant::quantize_rows(&self.dev, x, Lifetime::Activation)
        })
    }

    /// The GEMM of an FP8 layer on already quantized rows `x: [rows, in]` -> bf16 `[rows, out]`:
    /// [`Backend::linear`] without the quantization of its input.
    pub fn linear_fp8(&self, x: &CudaFp8Rows, w: &CudaLinear) -> Result<CudaTensor> {
        self.timed("linear fp8", || {
            self.check("linear_fp8", &[&x.scales, w.anchor()])?;
            gemm_fp8(&self.dev, x, w, false)
        })
    }

    /// `x: [.., K]` (f32 or bf16, K a multiple of 128) quantized to INT8 in 128×128 tiles, as an
    /// INT8 layer quantizes its input.
    pub fn quantize_int8(&self, x: &CudaTensor) -> Result<CudaInt8Blocks> {
        self.timed("quantize int8", || {
            self.check("quantize_int8", &[x])?;
            int8::quantize(&self.dev, x, Lifetime::Activation)
        })
    }

    /// The GEMM of an INT8 layer on already quantized rows `x: [rows, in]` -> bf16 `[rows, out]`
    /// (bias included): [`Backend::linear`] without the quantization of its input.
    pub fn linear_int8(&self, x: &CudaInt8Blocks, w: &CudaLinear) -> Result<CudaTensor> {
        self.timed("linear int8", || {
            self.check("linear_int8", &[&x.scales, w.anchor()])?;
            gemm_int8(&self.dev, x, w, None, self.portable)
        })
    }

    /// The symbol of the INT8 GEMM kernel this backend runs (`int8_gemm_sm90` on H100/H200,
    /// `int8_gemm_bf16` elsewhere and with [`Self::with_portable_kernels`]).
    pub fn int8_gemm_kernel(&self) -> &'static str {
        int8::gemm_kernel(&self.dev, self.portable).symbol
    }

    /// INT8 blocks copied back to the host.
    pub fn download_int8(&self, x: &CudaInt8Blocks) -> Result<crate::int8::Int8Blocks> {
        self.check("download_int8", &[&x.scales])?;
        int8::download(&self.dev, x)
    }

    /// FP8 rows copied back to the host.
    pub fn download_fp8(&self, x: &CudaFp8Rows) -> Result<crate::fp8::Fp8Rows> {
        self.check("download_fp8", &[&x.scales])?;
        quant::download(&self.dev, x)
    }

    /// `x · wᵀ + b`, then GELU (tanh) when `gelu`; an 8-bit layer's input quantization is
    /// profiled as an op of its own.
    fn linear_op(&self, x: &CudaTensor, w: &CudaLinear, gelu: bool) -> Result<CudaTensor> {
        self.linear_input_op(&self.prepare_input(x, InputKind::of(w))?, w, gelu)
    }

    /// `x` prepared for layers of `kind`, profiled as the quantization it is.
    fn prepare_input(&self, x: &CudaTensor, kind: InputKind) -> Result<CudaLinearInput> {
        self.check("linear_input", &[x])?;
        let label = match kind {
            // No device work: the input is the tensor.
            InputKind::Dense => return input::prepare(&self.dev, x, kind),
            InputKind::Fp8 => "quantize fp8",
            InputKind::Int8 => "quantize int8",
        };
        self.timed(label, || input::prepare(&self.dev, x, kind))
    }

    /// [`Backend::linear_prepared`], then GELU (tanh) when `gelu`.
    fn linear_input_op(
        &self,
        x: &CudaLinearInput,
        w: &CudaLinear,
        gelu: bool,
    ) -> Result<CudaTensor> {
        self.timed(linear_label(w, gelu), || {
            self.check("linear", &[x.anchor(), w.anchor()])?;
            input::gemm(&self.dev, x, w, gelu, self.portable)
        })
    }

    /// A Sage attention call's operands from `q`, `k`, `v` (any float type, converted to bf16):
    /// statistics (with the linear branch's φ(K)ᵀV), quantization, block selection, linear branch
    /// (its largest value tracked when `lin_amax`), each profiled as a stage. `None` for an empty
    /// sequence or no heads.
    fn sage_operands(
        &self,
        q: &CudaTensor,
        k: &CudaTensor,
        v: &CudaTensor,
        sla: Option<(&SlaParams, &CudaLinear)>,
        lin_amax: bool,
    ) -> Result<Option<sage::Operands>> {
        self.check("sage_attention", &[q, k, v])?;
        if let Some((_, proj_l)) = sla {
            self.check("sage_attention", &[proj_l.anchor()])?;
        }
        let (q, k, v) = self.timed("sage cast", || {
            let bf16 = |t: &CudaTensor| converted(&self.dev, t, DType::BF16);
            Ok((bf16(q)?, bf16(k)?, bf16(v)?))
        })?;
        let (len, heads, keep) = sage::check(&q, &k, &v, sla)?;
        if len == 0 || heads == 0 {
            return Ok(None);
        }
        let proj_l = sla.map(|(_, proj_l)| proj_l);
        let (stats, kvw) =
            self.timed("sage stats", || sage::statistics(&self.dev, &k, &v, proj_l))?;
        let x = self.timed("sage quantize", || {
            sage::quantize(&self.dev, &q, &k, &v, stats, (len, heads))
        })?;
        let lut = if keep < len.div_ceil(sage::SAGE_BLOCK_K) {
            Some((
                self.timed("sage select", || sage::select(&self.dev, &x, keep))?,
                keep,
            ))
        } else {
            None
        };
        let mut amax = None;
        let lin = proj_l
            .zip(kvw)
            .map(|(proj_l, kvw)| {
                self.timed("sage linear out", || {
                    if lin_amax {
                        amax = Some(self.dev.alloc_zeroed(4)?);
                    }
                    sage::linear_branch(&self.dev, &q, &x, &kvw, proj_l, amax.as_ref())
                })
            })
            .transpose()?;
        Ok(Some(sage::Operands {
            x,
            lut,
            lin,
            lin_amax: amax,
        }))
    }

    /// `gelu_tanh(x · wᵀ + b)` written by the GEMM as e4m3 rows for FP8 layer `next`, under the
    /// bound of [`quant::hidden_scale`] instead of each row's amax, which would take a pass over
    /// the output. cuBLASLt writes e4m3 only with one scale per operand, so `x` must be rows
    /// under one scale (a bounded norm's, [`Backend::layer_norm_modulate_input_for`]) and `w`
    /// uniform; `None` otherwise, or where cuBLASLt has no such GEMM.
    fn fp8_hidden(
        &self,
        x: &CudaLinearInput,
        w: &CudaLinear,
        next: &CudaLinear,
    ) -> Result<Option<CudaLinearInput>> {
        let (Some(rows), LinearWeight::Fp8 { bound, .. }) = (x.fp8_rows(), &w.weight) else {
            return Ok(None);
        };
        let Some(x_common) = rows.common.as_ref() else {
            return Ok(None);
        };
        // `next` being FP8, its in_features (the hidden width) are a multiple of 16: the e4m3
        // rows are 16-byte aligned, as cuBLASLt needs.
        if !w.is_uniform_fp8() || !next.is_fp8() {
            return Ok(None);
        }
        let weight = fp8_weight("linear_gelu_tanh_input", rows, w)?;
        let shape = shapes::linear(x.shape(), w.in_features, w.out_features)?;
        let mut hidden =
            CudaFp8Rows::alloc(&self.dev, rows.rows, w.out_features, Lifetime::Activation)?;
        let out_scale = CudaTensor::alloc_as(&self.dev, &[1], DType::F32)?;
        let common = CudaTensor::alloc_as(&self.dev, &[2], DType::F32)?;
        self.timed("fp8 hidden scale", || {
            quant::hidden_scale(&self.dev, x_common, bound, &hidden, (&out_scale, &common))
        })?;
        // One scale per operand: each scale vector's first value, which all its rows share.
        let scale = out_scale.ptr();
        let op = fp8_gemm(
            rows,
            weight,
            w,
            (hidden.values.ptr(), Fp8Out::E4m3 { scale }),
            true,
        );
        // Where cuBLASLt has no such GEMM the scales above go unread (never on sm_90, cuBLAS 13).
        let ran = self.timed(linear_label(w, true), || {
            self.check("linear_gelu_tanh_input", &[x.anchor(), w.anchor()])?;
            self.dev.gemm.linear_whole(&self.dev.stream, &op)
        })?;
        if !ran {
            return Ok(None);
        }
        hidden.common = Some(common);
        Ok(Some(CudaLinearInput::fp8(&shape, hidden)))
    }

    /// The form the backend's quantizable layers ([`Backend::upload_linear_quantizable`]) read
    /// their inputs in.
    fn quantizable_input(&self) -> InputKind {
        match (self.quant, self.precision) {
            (Quant::Fp8, Precision::Bf16) => InputKind::Fp8,
            (Quant::Int8, Precision::Bf16) => InputKind::Int8,
            (Quant::None, _) | (Quant::Fp8 | Quant::Int8, Precision::F32) => InputKind::Dense,
        }
    }

    /// A LayerNorm (`params`) of `x`, or of the residual sum `x + y·gate`, as the input of the
    /// quantizable layers (for FP8 layers quantized in the norm's pass), with the rows it
    /// normalized (x itself without a residual).
    fn layer_norm_input_op(
        &self,
        op: &'static str,
        x: &CudaTensor,
        residual: Option<norm::Residual>,
        params: &norm::NormParams,
        next: Option<&CudaLinear>,
    ) -> Result<(CudaTensor, CudaLinearInput)> {
        if let Some(r) = &residual {
            self.check(op, &[r.y])?;
            if let Some(g) = r.gate {
                self.check(op, &[g])?;
            }
        }
        let (dev, round) = (&self.dev, self.compute());
        match self.quantizable_input() {
            InputKind::Fp8 => self.timed(op, || {
                // One scale for the rows where `next` can write its output in e4m3 from them.
                let bounded = next.is_some_and(CudaLinear::is_uniform_fp8);
                let (rows, q) = norm::layer_norm_fp8(dev, op, x, residual, params, round, bounded)?;
                Ok((rows, CudaLinearInput::fp8(x.shape(), q)))
            }),
            kind @ (InputKind::Dense | InputKind::Int8) => {
                let (rows, normed) =
                    self.timed(op, || norm::layer_norm(dev, op, x, residual, params, round))?;
                Ok((rows, self.prepare_input(&normed, kind)?))
            }
        }
    }

    /// An FP8 layer: the weight quantized per output channel on the device from its bf16
    /// checkpoint values (f32 for other types, dequantized int8 for `-quant` checkpoints), the
    /// bias in bf16.
    fn upload_linear_fp8(&self, w: &LinearWeights) -> Result<CudaLinear> {
        shapes::linear_weights(w)?;
        let (major, minor) = self.dev.info.compute_capability;
        if major != 9 {
            return Err(Error::invalid(
                "upload_linear",
                format!(
                    "FP8 linears use cuBLASLt's outer-vector scaling, documented for compute \
                     capability 9.0 (H100/H200) only; {} is {major}.{minor}",
                    self.dev.info.name
                ),
            ));
        }
        let (n, k) = (w.out_features, w.in_features);
        if !k.is_multiple_of(16) || !n.is_multiple_of(8) {
            return Err(Error::invalid(
                "upload_linear",
                format!(
                    "an FP8 layer needs in_features % 16 == 0 and out_features % 8 == 0 \
                     (cuBLASLt's 16-byte FP8 rows and bf16 output columns), got [{n}, {k}]"
                ),
            ));
        }
        let source = self.dense_weight(w, quantizer_input)?;
        let mut weight = quant::quantize_rows(&self.dev, &source, Lifetime::Weight)?;
        // As the host's `Fp8Rows::quantize_weight`: one scale where the rows allow it.
        let scales = self.download(&weight.scales)?.to_f32_vec();
        let uniform_scale = crate::fp8::uniform_scale(&scales);
        if let Some(scale) = uniform_scale {
            let common = self.upload(&HostTensor::from_f32([1], vec![scale])?)?;
            weight =
                quant::quantize_rows_with(&self.dev, &source, Lifetime::Weight, Some(&common))?;
        }
        let uniform = uniform_scale.is_some();
        let bias = self.upload_bias(w)?;
        let bound = quant::weight_bound(&self.dev, &weight, bias.as_ref())?;
        Ok(CudaLinear {
            out_features: n,
            in_features: k,
            weight: LinearWeight::Fp8 {
                weight,
                bound,
                uniform,
            },
            bias,
        })
    }

    /// An INT8 layer: a `-quant` checkpoint's int8 weight and scales as they are, any other
    /// weight quantized on the device from its bf16 values (f32 for other types) with the
    /// activations' quantizer, as upstream's `modify_model.py` does offline; the bias in bf16.
    fn upload_linear_int8(&self, w: &LinearWeights) -> Result<CudaLinear> {
        shapes::linear_weights(w)?;
        let (n, k) = (w.out_features, w.in_features);
        if let Some(why) = int8::unsupported(n, k) {
            return Err(Error::invalid("upload_linear", why));
        }
        let weight = match &w.weight {
            crate::LinearWeight::Int8Block { values, scales } => {
                int8::upload(&self.dev, [n, k], values, scales)?
            }
            crate::LinearWeight::Dense(_)
            | crate::LinearWeight::Mapped(_)
            | crate::LinearWeight::Seeded(_) => int8::quantize(
                &self.dev,
                &self.dense_weight(w, quantizer_input)?,
                Lifetime::Weight,
            )?,
        };
        Ok(CudaLinear {
            out_features: n,
            in_features: k,
            weight: LinearWeight::Int8(weight),
            bias: self.upload_bias(w)?,
        })
    }

    /// The layer's bias `[out]` in the backend's precision.
    fn upload_bias(&self, w: &LinearWeights) -> Result<Option<CudaTensor>> {
        w.bias
            .as_ref()
            .map(|b| {
                self.upload_weight(b.tensor_bytes())?
                    .reshaped(&[w.out_features])
            })
            .transpose()
    }

    /// [`Backend::conv3d`], plus `residual` when given ([`Backend::conv3d_add`]), timed as `op`.
    #[allow(clippy::too_many_arguments)]
    fn convolution(
        &self,
        op: &'static str,
        x: &CudaTensor,
        weight: &CudaTensor,
        bias: Option<&CudaTensor>,
        stride: [usize; 3],
        pad: [[usize; 2]; 3],
        residual: Option<&CudaTensor>,
    ) -> Result<CudaTensor> {
        self.timed(op, || {
            self.check(op, &[x, weight])?;
            for t in bias.iter().chain(residual.iter()) {
                self.check(op, &[t])?;
            }
            let dtype = self.compute();
            conv::conv3d(&self.dev, x, weight, bias, stride, pad, residual, dtype)
        })
    }

    /// `t` converted to `dtype` (the tensor itself when it already has that type).
    pub fn to_dtype(&self, t: &CudaTensor, dtype: DType) -> Result<CudaTensor> {
        self.check("to_dtype", &[t])?;
        converted(&self.dev, t, dtype)
    }

    /// Device times (ms, median of `iters`) of one bf16 convolution of `x: [F, H, W, Cin]` by
    /// `w: [Cout, kt, kh, kw, Cin]` with symmetric zero `pad` and unit stride, the operands'
    /// values arbitrary: on cuDNN (`None` without cuDNN or an algorithm for the problem) and on
    /// the narrow kernel (`None` where it does not apply).
    pub fn time_conv3d(
        &self,
        x: [usize; 4],
        w: [usize; 5],
        pad: [usize; 3],
        iters: usize,
    ) -> Result<ConvTimes> {
        shapes::conv3d(&x, &w, None, [1; 3], pad.map(|p| [p, p]))?;
        let p = cudnn::Problem {
            dtype: DType::BF16,
            x,
            w,
            stride: [1; 3],
            pad,
        };
        Ok(ConvTimes {
            cudnn: conv::time_cudnn(&self.dev, &p, iters)?,
            narrow: conv::time_narrow(&self.dev, &p, iters)?,
        })
    }

    /// Convolution problems seen so far: (run on cuDNN, left to the direct kernel because cuDNN
    /// had no algorithm). Both 0 without cuDNN.
    pub fn conv_plans(&self) -> (usize, usize) {
        self.dev.cudnn().map_or((0, 0), |c| c.plan_counts())
    }

    /// What runs `conv3d`: `"cudnn"`, or `"direct"` (the f32 kernel) when cuDNN cannot be loaded.
    pub fn conv_engine(&self) -> &'static str {
        if self.dev.cudnn().is_some() {
            "cudnn"
        } else {
            "direct"
        }
    }

    pub fn info(&self) -> &DeviceInfo {
        &self.dev.info
    }

    pub fn pool_stats(&self) -> PoolStats {
        self.dev.pool.stats()
    }

    /// Bytes this backend could still allocate: the driver's free memory plus the pool's cached
    /// blocks (other processes on the GPU count against the former).
    pub fn free_memory(&self) -> Result<usize> {
        self.dev
            .stream
            .context()
            .bind_to_thread()
            .w("free_memory")?;
        let (free, _total) = cudarc::driver::result::mem_get_info().w("free_memory")?;
        Ok(free + self.dev.pool.stats().cached_bytes)
    }

    /// Returns cached free blocks to the driver.
    pub fn trim_pool(&self) -> Result<()> {
        self.dev.pool.trim()
    }

    pub fn kernel_stats(&self) -> KernelStats {
        self.dev.kernels.stats()
    }

    /// Compiles (or loads from the disk cache) every kernel module now, so no op pays NVRTC time
    /// later: call before reporting a service ready.
    pub fn warm_up(&self) -> Result<()> {
        self.dev.kernels.load_all()
    }

    /// The median ms of layer `w`'s GEMM on `x` (converted to a dense layer's dtype, or quantized
    /// for an FP8 one) under each of the first `count` algorithms cuBLASLt's heuristic offers for
    /// it, in the heuristic's order: the first is the one [`Backend::linear`] runs. INT8 layers run
    /// a kernel of this backend's own and have none.
    pub fn linear_candidates_ms(
        &self,
        x: &CudaTensor,
        w: &CudaLinear,
        gelu: bool,
        count: usize,
    ) -> Result<Vec<f64>> {
        self.check("linear_candidates_ms", &[x, w.anchor()])?;
        let shape = shapes::linear(&x.shape, w.in_features, w.out_features)?;
        let dev = &self.dev;
        let mut time = |f: &mut dyn FnMut() -> Result<()>| Ok(dev.time(2, 10, f)?.0);
        match &w.weight {
            LinearWeight::Dense(weight) => {
                let x = &converted(dev, x, weight.dtype)?;
                let out = CudaTensor::alloc_as(dev, &shape, weight.dtype)?;
                let op = dense_gemm(x, weight, w, &out, gelu);
                dev.gemm.time_candidates(&dev.stream, &op, count, &mut time)
            }
            LinearWeight::Fp8 { weight, .. } => {
                let x = &quant::quantize_rows(dev, x, Lifetime::Activation)?;
                let out = CudaTensor::alloc_as(dev, &[x.rows, w.out_features], DType::BF16)?;
                let op = fp8_gemm(x, weight, w, (out.ptr(), Fp8Out::Bf16), gelu);
                dev.gemm.time_candidates(&dev.stream, &op, count, &mut time)
            }
            LinearWeight::Int8(_) => Err(Error::invalid(
                "linear_candidates_ms",
                "an INT8 layer runs this backend's own GEMM kernel, not cuBLASLt's",
            )),
        }
    }

    /// Median and minimum device time of `f` in ms over `iters` runs after `warmup` runs, measured
    /// with CUDA events on the backend's stream.
    pub fn time_ms(
        &self,
        warmup: usize,
        iters: usize,
        f: impl FnMut() -> Result<()>,
    ) -> Result<(f64, f64)> {
        self.dev.time(warmup, iters, f)
    }

    /// Energy the board has used since the driver loaded (NVML), in millijoules; `None` without
    /// NVML or an energy counter.
    pub fn energy_mj(&self) -> Option<u64> {
        self.dev.nvml()?.energy_mj()
    }

    /// The power limit the board enforces (NVML), in watts.
    pub fn power_limit_w(&self) -> Option<f64> {
        self.dev.nvml()?.power_limit_w()
    }

    /// The key blocks SLA selects, `[head][query block] -> ascending key block indices`: the
    /// counterpart of [`crate::sla_block_map`] for comparing the two backends' selections.
    pub fn sla_block_map(
        &self,
        q: &CudaTensor,
        k: &CudaTensor,
        params: &SlaParams,
    ) -> Result<Vec<Vec<Vec<usize>>>> {
        self.check("sla_block_map", &[q, k])?;
        attention::sla_block_map(&self.dev, &self.f32(q)?, &self.f32(k)?, params)
    }

    /// The key blocks SageSLA's select kernel keeps for `q`, `k`, `v` under `params`, with the
    /// pooled means it chose them from (what [`Backend::sage_attention`] computes on its way).
    pub fn sage_selection(
        &self,
        q: &CudaTensor,
        k: &CudaTensor,
        v: &CudaTensor,
        params: &SlaParams,
    ) -> Result<sage::SageSelection> {
        self.check("sage_selection", &[q, k, v])?;
        let bf16 = |t: &CudaTensor| converted(&self.dev, t, DType::BF16);
        sage::selection(&self.dev, &bf16(q)?, &bf16(k)?, &bf16(v)?, params)
    }

    /// Host-side preconditions shared by every op: f32 or bf16 tensors from this backend's pool.
    fn check(&self, op: &'static str, tensors: &[&CudaTensor]) -> Result<()> {
        for t in tensors {
            if !matches!(t.dtype, DType::F32 | DType::BF16) {
                return Err(Error::DType { op, dtype: t.dtype });
            }
            if !Arc::ptr_eq(t.buf.pool(), &self.dev.pool) {
                return Err(Error::invalid(
                    op,
                    "tensor belongs to another CUDA backend (device or stream)",
                ));
            }
        }
        Ok(())
    }

    /// `t` as f32, for the ops without a bf16 kernel.
    fn f32(&self, t: &CudaTensor) -> Result<CudaTensor> {
        converted(&self.dev, t, DType::F32)
    }

    /// The element type norms and other GEMM-feeding ops produce.
    fn compute(&self) -> DType {
        self.precision.dtype()
    }

    /// An affine LayerNorm's parameters, checked to live on this backend.
    fn affine_params<'a>(
        &self,
        op: &'static str,
        x: &CudaTensor,
        affine: Option<(&'a CudaTensor, &'a CudaTensor)>,
        eps: f32,
    ) -> Result<norm::NormParams<'a>> {
        self.check(op, &[x])?;
        if let Some((w, b)) = affine {
            self.check(op, &[w, b])?;
        }
        Ok(norm::NormParams {
            mul_add: affine,
            mul_offset: 0.0,
            eps,
        })
    }

    /// The DiT modulation `LN(x)·(1 + scale) + shift` as LayerNorm parameters.
    fn modulation_params<'a>(
        &self,
        x: &CudaTensor,
        shift: &'a CudaTensor,
        scale: &'a CudaTensor,
        eps: f32,
    ) -> Result<norm::NormParams<'a>> {
        self.check("layer_norm_modulate", &[x, shift, scale])?;
        Ok(norm::NormParams {
            mul_add: Some((scale, shift)),
            mul_offset: 1.0,
            eps,
        })
    }

    /// A weight tensor in the backend's precision on the device (bf16 checkpoint values go up
    /// as they are, with no f32 round trip).
    fn upload_weight(&self, t: TensorBytes<'_>) -> Result<CudaTensor> {
        self.upload_as(t, self.compute())
    }

    /// `w`'s weight `[out, in]` on the device as `to(stored type)`: uploaded as stored,
    /// dequantized to f32 on the host for the int8 layout, or generated on the device for seeded
    /// values (stored as bf16).
    fn dense_weight(&self, w: &LinearWeights, to: impl Fn(DType) -> DType) -> Result<CudaTensor> {
        let shape = [w.out_features, w.in_features];
        match &w.weight {
            crate::LinearWeight::Dense(t) => self.upload_as(t.tensor_bytes(), to(t.dtype())),
            crate::LinearWeight::Mapped(b) => self.upload_as(b.tensor_bytes(), to(b.dtype())),
            crate::LinearWeight::Seeded(values) => {
                seeded::generate(&self.dev, values, &shape, to(DType::BF16))
            }
            crate::LinearWeight::Int8Block { .. } => {
                let t = HostTensor::from_f32(shape, w.dense_f32())?;
                self.upload_as(t.tensor_bytes(), to(DType::F32))
            }
        }
    }

    /// `t` as a new device tensor of `dtype`, converted on the host when its type differs;
    /// allocated exactly: uploads are weights and inputs, which live long or are few.
    fn upload_as(&self, t: TensorBytes<'_>, dtype: DType) -> Result<CudaTensor> {
        let numel: usize = t.shape().iter().product();
        if numel != t.numel() {
            return Err(Error::ElementCount {
                len: t.numel(),
                shape: t.shape().to_vec(),
            });
        }
        let out = CudaTensor::whole(t.shape(), dtype, self.dev.alloc_exact(numel, dtype)?);
        self.dev.upload(out.ptr(), t.dtype(), t.bytes(), dtype)?;
        Ok(out)
    }
}

/// The element type a quantizer reads a weight stored as `stored` in: bf16 values as they are,
/// other types as f32.
fn quantizer_input(stored: DType) -> DType {
    match stored {
        DType::BF16 => DType::BF16,
        DType::F32 | DType::F16 | DType::I8 => DType::F32,
    }
}

impl Backend for CudaBackend {
    type Tensor = CudaTensor;
    type Linear = CudaLinear;
    type LinearInput = CudaLinearInput;

    fn name(&self) -> &'static str {
        "cuda"
    }

    fn shape<'a>(&self, t: &'a CudaTensor) -> &'a [usize] {
        &t.shape
    }

    fn upload(&self, t: &HostTensor) -> Result<CudaTensor> {
        self.timed("upload", || {
            if t.dtype() == DType::I8 {
                return Err(Error::DType {
                    op: "upload",
                    dtype: DType::I8,
                });
            }
            self.upload_as(t.tensor_bytes(), DType::F32)
        })
    }

    fn download(&self, t: &CudaTensor) -> Result<HostTensor> {
        self.timed("download", || {
            self.check("download", &[t])?;
            let t = &self.f32(t)?;
            let mut data = vec![0f32; t.numel()];
            if !data.is_empty() {
                self.dev.stream.context().bind_to_thread().w("download")?;
                // SAFETY: the buffer holds `data.len()` f32 values; the copy is queued behind the work
                // that produces them, and `data` outlives the synchronize below.
                unsafe {
                    driver::memcpy_dtoh_async(&mut data, t.ptr(), self.dev.stream.cu_stream())
                }
                .w("download")?;
            }
            self.dev.stream.synchronize().w("download")?;
            HostTensor::from_f32(t.shape.clone(), data)
        })
    }

    fn download_async(&self, t: &CudaTensor) -> Result<PendingDownload> {
        self.timed("download", || {
            self.check("download", &[t])?;
            readback::queue(&self.dev, self.f32(t)?)
        })
    }

    fn reshape(&self, t: &CudaTensor, shape: &[usize]) -> Result<CudaTensor> {
        self.check("reshape", &[t])?;
        t.reshaped(shape)
    }

    fn slice(&self, t: &CudaTensor, dim: usize, start: usize, len: usize) -> Result<CudaTensor> {
        self.timed("slice", || {
            self.check("slice", &[t])?;
            layout::slice(&self.dev, t, dim, start, len)
        })
    }

    fn narrow(&self, t: &CudaTensor, start: usize, len: usize) -> Result<CudaTensor> {
        self.check("narrow", &[t])?;
        match t.rows_view(start, len)? {
            Some(view) => Ok(view),
            None => self.slice(t, 0, start, len),
        }
    }

    fn permute(&self, t: &CudaTensor, perm: &[usize]) -> Result<CudaTensor> {
        self.timed("permute", || {
            self.check("permute", &[t])?;
            layout::permute(&self.dev, t, perm)
        })
    }

    fn concat(&self, parts: &[&CudaTensor], dim: usize) -> Result<CudaTensor> {
        self.timed("concat", || {
            self.check("concat", parts)?;
            let dtype = widest(parts);
            let parts = parts
                .iter()
                .map(|p| converted(&self.dev, p, dtype))
                .collect::<Result<Vec<_>>>()?;
            layout::concat(&self.dev, &parts.iter().collect::<Vec<_>>(), dim)
        })
    }

    fn upload_linear(&self, w: &LinearWeights) -> Result<CudaLinear> {
        shapes::linear_weights(w)?;
        let weight = self.dense_weight(w, |_| self.compute())?;
        Ok(CudaLinear {
            out_features: w.out_features,
            in_features: w.in_features,
            weight: LinearWeight::Dense(weight),
            bias: self.upload_bias(w)?,
        })
    }

    fn upload_linear_quantizable(&self, w: &LinearWeights) -> Result<CudaLinear> {
        match self.quantizable_input() {
            InputKind::Fp8 => self.upload_linear_fp8(w),
            InputKind::Int8 => self.upload_linear_int8(w),
            InputKind::Dense => self.upload_linear(w),
        }
    }

    fn upload_param(&self, t: &HostTensor) -> Result<CudaTensor> {
        self.timed("upload", || self.upload_weight(t.tensor_bytes()))
    }

    fn synchronize(&self) -> Result<()> {
        self.dev.stream.synchronize().w("synchronize")
    }

    fn warm_up_gemm_rows<E: From<Error>>(
        &self,
        max: usize,
        mut run: impl FnMut(usize) -> std::result::Result<(), E>,
    ) -> std::result::Result<Vec<usize>, E> {
        if max == 0 {
            return Ok(Vec::new());
        }
        // The longest input first, which tells the model's GEMMs.
        let (ran, gemms) = gemm::recording(|| run(max));
        ran?;
        let start = std::time::Instant::now();
        let rows = self.dev.gemm.warm_up_rows(&gemms, max)?;
        tracing::debug!(
            max,
            ?rows,
            ms = start.elapsed().as_secs_f64() * 1e3,
            "GEMM warm-up rows"
        );
        let mut ran = vec![max];
        for n in rows.into_iter().filter(|&n| n != max) {
            run(n)?;
            ran.push(n);
        }
        Ok(ran)
    }

    fn linear_gelu_tanh(&self, x: &CudaTensor, w: &CudaLinear) -> Result<CudaTensor> {
        if w.gelu_in_epilogue() {
            self.linear_op(x, w, true)
        } else {
            self.gelu_tanh(&self.linear(x, w)?)
        }
    }

    fn linear(&self, x: &CudaTensor, w: &CudaLinear) -> Result<CudaTensor> {
        self.linear_op(x, w, false)
    }

    fn linear_residual(
        &self,
        x: &CudaTensor,
        w: &CudaLinear,
        residual: &CudaTensor,
        gate: Option<&CudaTensor>,
    ) -> Result<CudaTensor> {
        let x = self.prepare_input(x, InputKind::of(w))?;
        self.linear_residual_prepared(&x, w, residual, gate)
    }

    fn linear_residual_prepared(
        &self,
        x: &CudaLinearInput,
        w: &CudaLinear,
        residual: &CudaTensor,
        gate: Option<&CudaTensor>,
    ) -> Result<CudaTensor> {
        match (&w.weight, x.dense()) {
            (LinearWeight::Fp8 { .. } | LinearWeight::Int8(_), _)
                if quantized_residual_fits(w, residual, gate) =>
            {
                let label = if w.is_fp8() {
                    "linear fp8+residual"
                } else {
                    "linear int8+residual"
                };
                self.timed(label, || {
                    let mut anchors = vec![x.anchor(), w.anchor(), residual];
                    anchors.extend(gate);
                    self.check("linear_residual", &anchors)?;
                    input::gemm_residual(&self.dev, x, w, residual, gate, self.portable)
                })
            }
            (LinearWeight::Dense(weight), Some(x))
                if gate.is_none() && dense_operands(weight.dtype, residual.dtype).is_some() =>
            {
                self.timed(linear_label(w, false), || {
                    self.check("linear_residual", &[x, w.anchor(), residual])?;
                    dense_linear(
                        &self.dev,
                        x,
                        w,
                        weight,
                        false,
                        residual.dtype,
                        Some(residual),
                    )
                })
            }
            (LinearWeight::Dense(_) | LinearWeight::Fp8 { .. } | LinearWeight::Int8(_), _) => {
                self.residual(residual, &self.linear_prepared(x, w)?, gate)
            }
        }
    }

    fn residual_in_gemm(&self, w: &CudaLinear, gated: bool) -> bool {
        // cuBLASLt scales a dense GEMM's output by one alpha, where an FP8 one takes a scale per
        // output channel that the gate folds into; the INT8 kernel's epilogue applies the gate.
        match w.weight {
            LinearWeight::Fp8 { .. } | LinearWeight::Int8(_) => true,
            LinearWeight::Dense(_) => !gated,
        }
    }

    fn linear_gated_gelu(
        &self,
        x: &CudaTensor,
        gate: &CudaLinear,
        lin: &CudaLinear,
    ) -> Result<CudaTensor> {
        let (LinearWeight::Dense(gw), LinearWeight::Dense(lw)) = (&gate.weight, &lin.weight) else {
            return self.mul(&self.linear_gelu_tanh(x, gate)?, &self.linear(x, lin)?);
        };
        self.timed("linear gated gelu", || {
            self.check("linear_gated_gelu", &[x, gate.anchor(), lin.anchor()])?;
            let wide = |w, weight: &CudaTensor, gelu| {
                let dtype = if weight.dtype == DType::BF16 {
                    DType::F32
                } else {
                    weight.dtype
                };
                dense_linear(&self.dev, x, w, weight, gelu, dtype, None)
            };
            let (g, l) = (wide(gate, gw, true)?, wide(lin, lw, false)?);
            let op = "linear_gated_gelu";
            elementwise::broadcast_as(&self.dev, op, kernels::MUL, &g, &l, gw.dtype)
        })
    }

    fn linear_input(&self, x: &CudaTensor) -> Result<CudaLinearInput> {
        self.prepare_input(x, self.quantizable_input())
    }

    fn linear_prepared(&self, x: &CudaLinearInput, w: &CudaLinear) -> Result<CudaTensor> {
        self.linear_input_op(x, w, false)
    }

    fn linear_gelu_tanh_prepared(&self, x: &CudaLinearInput, w: &CudaLinear) -> Result<CudaTensor> {
        if w.gelu_in_epilogue() {
            self.linear_input_op(x, w, true)
        } else {
            self.gelu_tanh(&self.linear_input_op(x, w, false)?)
        }
    }

    fn linear_gelu_tanh_input(
        &self,
        x: &CudaLinearInput,
        w: &CudaLinear,
        next: &CudaLinear,
    ) -> Result<CudaLinearInput> {
        if let Some(hidden) = self.fp8_hidden(x, w, next)? {
            return Ok(hidden);
        }
        self.prepare_input(&self.linear_gelu_tanh_prepared(x, w)?, InputKind::of(next))
    }

    fn layer_norm(
        &self,
        x: &CudaTensor,
        affine: Option<(&CudaTensor, &CudaTensor)>,
        eps: f32,
    ) -> Result<CudaTensor> {
        let params = self.affine_params("layer_norm", x, affine, eps)?;
        self.timed("layer_norm", || {
            Ok(norm::layer_norm(&self.dev, "layer_norm", x, None, &params, self.compute())?.1)
        })
    }

    fn layer_norm_modulate(
        &self,
        x: &CudaTensor,
        shift: &CudaTensor,
        scale: &CudaTensor,
        eps: f32,
    ) -> Result<CudaTensor> {
        let params = self.modulation_params(x, shift, scale, eps)?;
        self.timed("layer_norm_modulate", || {
            Ok(norm::layer_norm(
                &self.dev,
                "layer_norm_modulate",
                x,
                None,
                &params,
                self.compute(),
            )?
            .1)
        })
    }

    fn layer_norm_input(
        &self,
        x: &CudaTensor,
        affine: Option<(&CudaTensor, &CudaTensor)>,
        eps: f32,
    ) -> Result<CudaLinearInput> {
        let params = self.affine_params("layer_norm", x, affine, eps)?;
        Ok(self
            .layer_norm_input_op("layer_norm", x, None, &params, None)?
            .1)
    }

    fn layer_norm_modulate_input(
        &self,
        x: &CudaTensor,
        shift: &CudaTensor,
        scale: &CudaTensor,
        eps: f32,
    ) -> Result<CudaLinearInput> {
        let params = self.modulation_params(x, shift, scale, eps)?;
        Ok(self
            .layer_norm_input_op("layer_norm_modulate", x, None, &params, None)?
            .1)
    }

    fn layer_norm_modulate_input_for(
        &self,
        x: &CudaTensor,
        shift: &CudaTensor,
        scale: &CudaTensor,
        eps: f32,
        next: &CudaLinear,
    ) -> Result<CudaLinearInput> {
        let params = self.modulation_params(x, shift, scale, eps)?;
        Ok(self
            .layer_norm_input_op("layer_norm_modulate", x, None, &params, Some(next))?
            .1)
    }

    fn residual_layer_norm_input(
        &self,
        x: &CudaTensor,
        y: &CudaTensor,
        gate: Option<&CudaTensor>,
        affine: Option<(&CudaTensor, &CudaTensor)>,
        eps: f32,
    ) -> Result<(CudaTensor, CudaLinearInput)> {
        let params = self.affine_params("residual+layer_norm", x, affine, eps)?;
        self.layer_norm_input_op(
            "residual+layer_norm",
            x,
            Some(norm::Residual { y, gate }),
            &params,
            None,
        )
    }

    fn residual_layer_norm_modulate_input(
        &self,
        x: &CudaTensor,
        y: &CudaTensor,
        gate: Option<&CudaTensor>,
        shift: &CudaTensor,
        scale: &CudaTensor,
        eps: f32,
    ) -> Result<(CudaTensor, CudaLinearInput)> {
        let params = self.modulation_params(x, shift, scale, eps)?;
        self.layer_norm_input_op(
            "residual+layer_norm_modulate",
            x,
            Some(norm::Residual { y, gate }),
            &params,
            None,
        )
    }

    fn rms_norm(&self, x: &CudaTensor, weight: &CudaTensor, eps: f32) -> Result<CudaTensor> {
        self.timed("rms_norm", || {
            self.check("rms_norm", &[x, weight])?;
            norm::rms_norm(&self.dev, x, weight, eps, self.compute())
        })
    }

    fn rms_norm_rope(
        &self,
        x: &CudaTensor,
        weight: &CudaTensor,
        eps: f32,
        cos: &CudaTensor,
        sin: &CudaTensor,
        heads: usize,
    ) -> Result<CudaTensor> {
        self.timed("rms_norm_rope", || {
            self.check("rms_norm_rope", &[x, weight, cos, sin])?;
            norm::rms_norm_rope(
                &self.dev,
                x,
                weight,
                eps,
                &self.f32(cos)?,
                &self.f32(sin)?,
                heads,
                self.compute(),
            )
        })
    }

    fn rope(&self, x: &CudaTensor, cos: &CudaTensor, sin: &CudaTensor) -> Result<CudaTensor> {
        self.timed("rope", || {
            self.check("rope", &[x, cos, sin])?;
            attention::rope(&self.dev, x, &self.f32(cos)?, &self.f32(sin)?)
        })
    }

    fn attention_with(
        &self,
        q: &CudaTensor,
        k: &CudaTensor,
        v: &CudaTensor,
        scale: f32,
        bias: Option<&CudaTensor>,
    ) -> Result<CudaTensor> {
        self.timed(attention_label(q, k), || {
            self.check("attention", &[q, k, v])?;
            if let Some(b) = bias {
                self.check("attention", &[b])?;
            }
            if bias.is_none()
                && let Some(kernel) = attention::flash_kernel(&self.dev, q, k, v, self.portable)
            {
                return attention::flash_attention(&self.dev, kernel, q, k, v, scale, None);
            }
            if bias.is_none() && !attention::fits_kernel(q) {
                return attention::wide_attention(&self.dev, q, k, v, scale);
            }
            let bias = bias.map(|b| self.f32(b)).transpose()?;
            attention::attention_with(
                &self.dev,
                &self.f32(q)?,
                &self.f32(k)?,
                &self.f32(v)?,
                scale,
                bias.as_ref(),
            )
        })
    }

    fn attention_input(
        &self,
        q: &CudaTensor,
        k: &CudaTensor,
        v: &CudaTensor,
        next: &CudaLinear,
    ) -> Result<CudaLinearInput> {
        let persistent = attention::flash_kernel(&self.dev, q, k, v, self.portable)
            == Some(kernels::FLASH_ATTENTION_PERSISTENT);
        if !(persistent && next.is_fp8()) {
            return crate::backend::attention_rows(self, "attention", &self.attention(q, k, v)?);
        }
        let rows = self.timed(attention_label(q, k), || {
            self.check("attention", &[q, k, v])?;
            let dh = q.shape().last().copied().unwrap_or(1);
            let scale = crate::backend::softmax_scale(dh);
            attention::flash_attention_e4m3(&self.dev, q, k, v, scale)
        })?;
        Ok(CudaLinearInput::fp8(&[rows.rows(), rows.cols()], rows))
    }

    fn attention_rel_bias(
        &self,
        q: &CudaTensor,
        k: &CudaTensor,
        v: &CudaTensor,
        scale: f32,
        rel: &CudaTensor,
    ) -> Result<CudaTensor> {
        self.check("attention_rel_bias", &[q, k, v, rel])?;
        if !attention::rel_flash_available(&self.dev, q, k, v) {
            return crate::backend::expanded_rel_attention(self, q, k, v, scale, rel);
        }
        self.timed("attention (rel bias)", || {
            let rel = self.f32(rel)?;
            let kernel = kernels::FLASH_ATTENTION_REL_MMA;
            attention::flash_attention(&self.dev, kernel, q, k, v, scale, Some(&rel))
        })
    }

    fn check_self_attention_size(
        &self,
        shape: [usize; 3],
        sage: bool,
        sla: Option<&SlaParams>,
    ) -> Result<()> {
        let [len, ..] = attention::dims3("attention", &shape)?;
        if let Some(params) = sla.filter(|_| sage && self.sage_kernel().is_some()) {
            sage::sage_blocks(params, len.div_ceil(sage::SAGE_BLOCK_K), len)?;
        }
        Ok(())
    }

    fn sla_attention(
        &self,
        q: &CudaTensor,
        k: &CudaTensor,
        v: &CudaTensor,
        params: &SlaParams,
        proj_l: &CudaLinear,
    ) -> Result<CudaTensor> {
        self.timed("sla_attention", || {
            self.check("sla_attention", &[q, k, v, proj_l.anchor()])?;
            let (q, k, v) = (self.f32(q)?, self.f32(k)?, self.f32(v)?);
            attention::sla_attention(&self.dev, &q, &k, &v, params, proj_l)
        })
    }

    fn sage_attention(
        &self,
        q: &CudaTensor,
        k: &CudaTensor,
        v: &CudaTensor,
        sla: Option<(&SlaParams, &CudaLinear)>,
    ) -> Result<CudaTensor> {
        let Some(kernel) = self.sage_kernel() else {
            return crate::backend::exact_sage_attention(self, q, k, v, sla);
        };
        let Some(ops) = self.sage_operands(q, k, v, sla, false)? else {
            return CudaTensor::alloc_as(&self.dev, q.shape(), DType::BF16);
        };
        let out = CudaTensor::alloc_as(&self.dev, q.shape(), DType::BF16)?;
        self.timed("sage attention", || {
            sage::attend(&self.dev, kernel, &ops, sage::AttentionOut::Bf16(&out))
        })?;
        Ok(out)
    }

    fn sage_attention_input(
        &self,
        q: &CudaTensor,
        k: &CudaTensor,
        v: &CudaTensor,
        sla: Option<(&SlaParams, &CudaLinear)>,
        next: &CudaLinear,
    ) -> Result<CudaLinearInput> {
        let kernel = self.sage_kernel().filter(|_| next.is_fp8());
        let ops = match kernel {
            Some(_) => self.sage_operands(q, k, v, sla, true)?,
            None => None,
        };
        let (Some(kernel), Some(ops)) = (kernel, ops) else {
            return crate::backend::sage_attention_rows(self, q, k, v, sla);
        };
        let (rows, to8) = self.timed("sage out scale", || sage::output_scale(&self.dev, &ops))?;
        self.timed("sage attention", || {
            let out = sage::AttentionOut::E4m3 {
                rows: &rows,
                to8: &to8,
            };
            sage::attend(&self.dev, kernel, &ops, out)
        })?;
        Ok(CudaLinearInput::fp8(&[rows.rows(), rows.cols()], rows))
    }

    fn gelu_tanh(&self, x: &CudaTensor) -> Result<CudaTensor> {
        self.timed("gelu_tanh", || {
            self.check("gelu_tanh", &[x])?;
            elementwise::unary(&self.dev, kernels::GELU_TANH, x)
        })
    }

    fn silu(&self, x: &CudaTensor) -> Result<CudaTensor> {
        self.timed("silu", || {
            self.check("silu", &[x])?;
            elementwise::unary(&self.dev, kernels::SILU, x)
        })
    }

    fn add(&self, a: &CudaTensor, b: &CudaTensor) -> Result<CudaTensor> {
        self.timed("add", || {
            self.check("add", &[a, b])?;
            elementwise::broadcast(&self.dev, "add", kernels::ADD, a, b)
        })
    }

    fn mul(&self, a: &CudaTensor, b: &CudaTensor) -> Result<CudaTensor> {
        self.timed("mul", || {
            self.check("mul", &[a, b])?;
            elementwise::broadcast(&self.dev, "mul", kernels::MUL, a, b)
        })
    }

    fn gated_residual(
        &self,
        x: &CudaTensor,
        y: &CudaTensor,
        gate: &CudaTensor,
    ) -> Result<CudaTensor> {
        self.timed("gated_residual", || {
            self.check("gated_residual", &[x, y, gate])?;
            elementwise::gated_residual(&self.dev, x, y, gate)
        })
    }

    fn lincomb(&self, terms: &[(f32, &CudaTensor)]) -> Result<CudaTensor> {
        self.timed("lincomb", || {
            let tensors: Vec<&CudaTensor> = terms.iter().map(|(_, t)| *t).collect();
            self.check("lincomb", &tensors)?;
            let f32s = tensors
                .iter()
                .map(|t| self.f32(t))
                .collect::<Result<Vec<_>>>()?;
            let terms: Vec<(f32, &CudaTensor)> = terms.iter().map(|(c, _)| *c).zip(&f32s).collect();
            elementwise::lincomb(&self.dev, &terms)
        })
    }

    fn clamp(&self, x: &CudaTensor, lo: f32, hi: f32) -> Result<CudaTensor> {
        self.timed("clamp", || {
            self.check("clamp", &[x])?;
            elementwise::clamp(&self.dev, &self.f32(x)?, lo, hi)
        })
    }

    fn conv3d(
        &self,
        x: &CudaTensor,
        weight: &CudaTensor,
        bias: Option<&CudaTensor>,
        stride: [usize; 3],
        pad: [[usize; 2]; 3],
    ) -> Result<CudaTensor> {
        self.convolution("conv3d", x, weight, bias, stride, pad, None)
    }

    fn conv3d_add(
        &self,
        x: &CudaTensor,
        weight: &CudaTensor,
        bias: Option<&CudaTensor>,
        stride: [usize; 3],
        pad: [[usize; 2]; 3],
        residual: &CudaTensor,
    ) -> Result<CudaTensor> {
        self.convolution("conv3d_add", x, weight, bias, stride, pad, Some(residual))
    }

    fn interleave_phases(&self, x: &CudaTensor) -> Result<CudaTensor> {
        self.timed("interleave_phases", || {
            self.check("interleave_phases", &[x])?;
            layout::interleave_phases(&self.dev, x)
        })
    }

    fn channel_rms_norm(&self, x: &CudaTensor, gamma: &CudaTensor) -> Result<CudaTensor> {
        self.timed("channel_rms_norm", || {
            self.check("channel_rms_norm", &[x, gamma])?;
            norm::channel_rms_norm(&self.dev, x, gamma, false, self.compute())
        })
    }

    fn channel_rms_norm_silu(&self, x: &CudaTensor, gamma: &CudaTensor) -> Result<CudaTensor> {
        self.timed("channel_rms_norm_silu", || {
            self.check("channel_rms_norm_silu", &[x, gamma])?;
            norm::channel_rms_norm(&self.dev, x, gamma, true, self.compute())
        })
    }

    /// bf16 inputs of convolutions to at least 64 channels from a channel count that is not a
    /// multiple of 64: cuDNN 9 on an H100 runs the VAE's full-resolution 96 → 96 convolution in
    /// 3.4 ms as is, 1.9 ms from 128 zero-padded channels and 1.5–1.6 ms with its three time
    /// taps folded into 288 channels, which the folded norm writes for 24·n channels; folding
    /// does not pay at 192 or 384 channels (bench/results/2026-11-26-vae.md,
    /// 2026-11-28-vae-convs.md).
    fn conv_input(&self, cin: usize, cout: usize, taps: usize) -> ConvInput {
        if self.precision != Precision::Bf16 || cout < 64 || cin.is_multiple_of(64) {
            ConvInput::Width(cin)
        } else if taps == 3 && norm::folds_channels(cin) {
            ConvInput::FoldTime
        } else {
            ConvInput::Width(cin.next_multiple_of(64))
        }
    }

    fn causal_rms_norm_silu(
        &self,
        past: Option<&CudaTensor>,
        x: &CudaTensor,
        gamma: &CudaTensor,
        width: usize,
        keep: usize,
    ) -> Result<(CudaTensor, CudaTensor)> {
        let (out, kept) = self.timed("causal_rms_norm_silu", || {
            self.check("causal_rms_norm_silu", &[x, gamma])?;
            let mut rows = x.shape().to_vec();
            if let Some(c) = rows.last_mut() {
                *c = width;
            }
            let past = past
                .map(|p| {
                    self.check("causal_rms_norm_silu", &[p])?;
                    converted(&self.dev, p, self.compute())
                })
                .transpose()?;
            let shape = match &past {
                Some(p) => shapes::concat(&[p.shape(), &rows], 0)?,
                None => rows,
            };
            let out = CudaTensor::alloc_as(&self.dev, &shape, self.compute())?;
            let n = past.as_ref().map_or(0, CudaTensor::numel);
            if let Some(p) = &past {
                layout::copy2d(&self.dev, &out, 0, n, p, 0, n, 1, n)?;
            }
            // The next chunk's cached frames, stored by the norm as it writes them where they
            // are all x's; otherwise (or where the norm's kernel cannot) copied afterwards.
            let frames = x.shape().first().copied().unwrap_or(0);
            let kept = (keep > 0 && frames >= keep)
                .then(|| {
                    let mut kept = shape.clone();
                    kept[0] = keep;
                    CudaTensor::alloc_as(&self.dev, &kept, self.compute())
                })
                .transpose()?;
            let stored =
                norm::channel_rms_norm_into(&self.dev, &out, n, x, gamma, true, kept.as_ref())?;
            Ok((out, kept.filter(|_| stored)))
        })?;
        // The copy, where the norm did not store them, is profiled as the slice it is.
        let tail = match kept {
            Some(tail) => tail,
            None => crate::backend::last_frames(self, &out, keep)?,
        };
        Ok((out, tail))
    }

    fn causal_rms_norm_silu_folded(
        &self,
        past: Option<&CudaTensor>,
        x: &CudaTensor,
        gamma: &CudaTensor,
        taps: usize,
    ) -> Result<(CudaTensor, CudaTensor)> {
        const OP: &str = "causal_rms_norm_silu_folded";
        self.check(OP, &[x, gamma])?;
        if let Some(p) = past {
            self.check(OP, &[p])?;
        }
        if self.compute() == DType::BF16 {
            let x = converted(&self.dev, x, DType::BF16)?;
            let past = past
                .map(|p| converted(&self.dev, p, DType::BF16))
                .transpose()?;
            if fold::applies(past.as_ref(), &x, taps) {
                return self.timed(OP, || {
                    fold::fold_time(&self.dev, past.as_ref(), &x, gamma, taps)
                });
            }
        }
        // Composed of ops that are timed on their own.
        fold_time_by_ops(self, past, x, gamma, taps)
    }

    fn channel_affine(
        &self,
        x: &CudaTensor,
        scale: &CudaTensor,
        shift: &CudaTensor,
    ) -> Result<CudaTensor> {
        self.timed("channel_affine", || {
            self.check("channel_affine", &[x, scale, shift])?;
            elementwise::channel_affine(&self.dev, x, scale, shift)
        })
    }

    fn patchify(&self, x: &CudaTensor, patch: [usize; 3]) -> Result<CudaTensor> {
        self.timed("patchify", || {
            self.check("patchify", &[x])?;
            layout::patchify(&self.dev, &self.f32(x)?, patch)
        })
    }

    fn unpatchify(
        &self,
        x: &CudaTensor,
        grid: [usize; 3],
        patch: [usize; 3],
        channels: usize,
    ) -> Result<CudaTensor> {
        self.timed("unpatchify", || {
            self.check("unpatchify", &[x])?;
            layout::unpatchify(&self.dev, &self.f32(x)?, grid, patch, channels)
        })
    }
}
