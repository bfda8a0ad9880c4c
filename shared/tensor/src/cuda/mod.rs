//! The CUDA backend: NVRTC-compiled kernels from `kernels/*.cu`, GEMMs through cuBLASLt, a caching
//! allocator, one stream per backend.
//!
//! The CUDA libraries are opened at run time (cudarc's `dynamic-loading`): the crate builds and its
//! tests run on machines without CUDA, and [`CudaBackend::new`] returns an error, never a panic,
//! when the driver, NVRTC or cuBLASLt is missing or no GPU is present.
//!
//! **Precision of this first version**: activations are f32 ([`CudaTensor`] carries a dtype, always
//! [`DType::F32`] for now), GEMMs run in f32 with TF32 off ([`gemm`]), attention is a tiled f32
//! kernel with an online softmax. Results therefore match the CPU reference to f32 rounding; bf16
//! activations and bf16 tensor-core GEMM/attention are the next step and slot in as `*_bf16`
//! kernels selected by the tensor dtype.
//!
//! Work is queued asynchronously on the backend's stream; [`Backend::download`] and
//! [`Backend::synchronize`] wait for it. Launch errors surface at the launch, execution errors at
//! the next synchronizing call.

mod alloc;
mod attention;
pub mod check;
mod compile;
mod conv;
mod device;
mod elementwise;
mod gemm;
pub mod kernels;
mod layout;
mod norm;

use std::fmt::Display;
use std::sync::Arc;

use cudarc::driver::result as driver;

pub use alloc::PoolStats;
pub use compile::{
    Compiled, KernelStats, arch_for, compile_module, compile_source, nvrtc_available, nvrtc_version,
};
pub use device::DeviceInfo;

use alloc::DeviceBuffer;
use device::Device;

use crate::{Backend, DType, Error, HostTensor, LinearWeights, Result, SlaParams, shapes};

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
}

impl std::fmt::Debug for CudaTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaTensor{:?} {}", self.shape, self.dtype)
    }
}

impl CudaTensor {
    /// An f32 tensor with unspecified contents (NaN-filled when the backend poisons allocations).
    fn alloc(dev: &Device, shape: &[usize]) -> Result<Self> {
        let n: usize = shape.iter().product();
        Ok(Self {
            shape: shape.to_vec(),
            dtype: DType::F32,
            buf: Arc::new(dev.alloc_f32(n)?),
        })
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
        self.buf.ptr()
    }

    /// The same buffer viewed with another shape of equal element count.
    fn reshaped(&self, shape: &[usize]) -> Result<Self> {
        shapes::reshape(&self.shape, shape)?;
        Ok(Self {
            shape: shape.to_vec(),
            dtype: self.dtype,
            buf: self.buf.clone(),
        })
    }
}

/// A linear layer on the device: f32 weight `[out, in]` (int8 W8A8 checkpoints are dequantized
/// when placed) and optional f32 bias `[out]`.
#[derive(Debug)]
pub struct CudaLinear {
    out_features: usize,
    in_features: usize,
    weight: CudaTensor,
    bias: Option<CudaTensor>,
}

/// Options for [`CudaBackend::with_options`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CudaOptions {
    /// Fill every allocation with NaN before handing it out, so unwritten output shows up in any
    /// comparison (device checks; costs one memset per allocation).
    pub poison_allocations: bool,
}

/// The CUDA backend for one GPU. Clones share the GPU state (stream, pool, kernels).
#[derive(Clone)]
pub struct CudaBackend {
    dev: Arc<Device>,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaBackend({})", self.dev.info.name)
    }
}

/// `x · wᵀ + b` through cuBLASLt, for `x: [.., in]`.
fn gemm_linear(dev: &Device, x: &CudaTensor, w: &CudaLinear) -> Result<CudaTensor> {
    let shape = shapes::linear(&x.shape, w.in_features, w.out_features)?;
    let rows = x.numel() / w.in_features.max(1);
    let out = CudaTensor::alloc(dev, &shape)?;
    dev.gemm.linear_f32(
        &dev.stream,
        out.ptr(),
        x.ptr(),
        w.weight.ptr(),
        w.bias.as_ref().map(CudaTensor::ptr),
        rows,
        w.out_features,
        w.in_features,
    )?;
    Ok(out)
}

impl CudaBackend {
    /// The backend on GPU `ordinal`, or an error naming what is missing (library, device).
    pub fn new(ordinal: usize) -> Result<Self> {
        Self::with_options(ordinal, CudaOptions::default())
    }

    pub fn with_options(ordinal: usize, options: CudaOptions) -> Result<Self> {
        Ok(Self {
            dev: Arc::new(Device::new(ordinal, options.poison_allocations)?),
        })
    }

    pub fn info(&self) -> &DeviceInfo {
        &self.dev.info
    }

    pub fn pool_stats(&self) -> PoolStats {
        self.dev.pool.stats()
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

    /// The key blocks SLA selects, `[head][query block] -> ascending key block indices`: the
    /// counterpart of [`crate::sla_block_map`] for comparing the two backends' selections.
    pub fn sla_block_map(
        &self,
        q: &CudaTensor,
        k: &CudaTensor,
        params: &SlaParams,
    ) -> Result<Vec<Vec<Vec<usize>>>> {
        self.check("sla_block_map", &[q, k])?;
        attention::sla_block_map(&self.dev, q, k, params)
    }

    /// Host-side preconditions shared by every op: f32 tensors from this backend's pool.
    fn check(&self, op: &'static str, tensors: &[&CudaTensor]) -> Result<()> {
        for t in tensors {
            if t.dtype != DType::F32 {
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

    fn upload_f32(&self, shape: &[usize], data: &[f32]) -> Result<CudaTensor> {
        let t = CudaTensor::alloc(&self.dev, shape)?;
        if !data.is_empty() {
            self.dev.stream.context().bind_to_thread().w("upload")?;
            // SAFETY: the buffer holds at least `data.len()` f32 values; the copy is queued on the
            // stream that orders every use of the buffer, and a pageable source is staged before
            // the call returns, so `data` may be dropped afterwards.
            unsafe { driver::memcpy_htod_async(t.ptr(), data, self.dev.stream.cu_stream()) }
                .w("upload")?;
        }
        Ok(t)
    }
}

impl Backend for CudaBackend {
    type Tensor = CudaTensor;
    type Linear = CudaLinear;

    fn name(&self) -> &'static str {
        "cuda"
    }

    fn shape<'a>(&self, t: &'a CudaTensor) -> &'a [usize] {
        &t.shape
    }

    fn upload(&self, t: &HostTensor) -> Result<CudaTensor> {
        if t.dtype() == DType::I8 {
            return Err(Error::DType {
                op: "upload",
                dtype: DType::I8,
            });
        }
        self.upload_f32(&t.shape, &t.to_f32_vec())
    }

    fn download(&self, t: &CudaTensor) -> Result<HostTensor> {
        self.check("download", &[t])?;
        let mut data = vec![0f32; t.numel()];
        if !data.is_empty() {
            self.dev.stream.context().bind_to_thread().w("download")?;
            // SAFETY: the buffer holds `data.len()` f32 values; the copy is queued behind the work
            // that produces them, and `data` outlives the synchronize below.
            unsafe { driver::memcpy_dtoh_async(&mut data, t.ptr(), self.dev.stream.cu_stream()) }
                .w("download")?;
        }
        self.dev.stream.synchronize().w("download")?;
        HostTensor::from_f32(t.shape.clone(), data)
    }

    fn reshape(&self, t: &CudaTensor, shape: &[usize]) -> Result<CudaTensor> {
        self.check("reshape", &[t])?;
        t.reshaped(shape)
    }

    fn slice(&self, t: &CudaTensor, dim: usize, start: usize, len: usize) -> Result<CudaTensor> {
        self.check("slice", &[t])?;
        layout::slice(&self.dev, t, dim, start, len)
    }

    fn permute(&self, t: &CudaTensor, perm: &[usize]) -> Result<CudaTensor> {
        self.check("permute", &[t])?;
        layout::permute(&self.dev, t, perm)
    }

    fn concat(&self, parts: &[&CudaTensor], dim: usize) -> Result<CudaTensor> {
        self.check("concat", parts)?;
        layout::concat(&self.dev, parts, dim)
    }

    fn upload_linear(&self, w: &LinearWeights) -> Result<CudaLinear> {
        shapes::linear_weights(w)?;
        let weight = match &w.weight {
            crate::LinearWeight::Dense(t) => t.to_f32_vec(),
            crate::LinearWeight::Int8Block { .. } => w.dense_f32(),
        };
        let bias = match &w.bias {
            Some(b) => Some(self.upload_f32(&[w.out_features], &b.to_f32_vec())?),
            None => None,
        };
        Ok(CudaLinear {
            out_features: w.out_features,
            in_features: w.in_features,
            weight: self.upload_f32(&[w.out_features, w.in_features], &weight)?,
            bias,
        })
    }

    fn synchronize(&self) -> Result<()> {
        self.dev.stream.synchronize().w("synchronize")
    }

    fn linear(&self, x: &CudaTensor, w: &CudaLinear) -> Result<CudaTensor> {
        self.check("linear", &[x, &w.weight])?;
        gemm_linear(&self.dev, x, w)
    }

    fn layer_norm(
        &self,
        x: &CudaTensor,
        affine: Option<(&CudaTensor, &CudaTensor)>,
        eps: f32,
    ) -> Result<CudaTensor> {
        self.check("layer_norm", &[x])?;
        if let Some((w, b)) = affine {
            self.check("layer_norm", &[w, b])?;
        }
        norm::layer_norm(&self.dev, "layer_norm", x, affine, 0.0, eps)
    }

    fn layer_norm_modulate(
        &self,
        x: &CudaTensor,
        shift: &CudaTensor,
        scale: &CudaTensor,
        eps: f32,
    ) -> Result<CudaTensor> {
        self.check("layer_norm_modulate", &[x, shift, scale])?;
        norm::layer_norm(
            &self.dev,
            "layer_norm_modulate",
            x,
            Some((scale, shift)),
            1.0,
            eps,
        )
    }

    fn rms_norm(&self, x: &CudaTensor, weight: &CudaTensor, eps: f32) -> Result<CudaTensor> {
        self.check("rms_norm", &[x, weight])?;
        norm::rms_norm(&self.dev, x, weight, eps)
    }

    fn rope(&self, x: &CudaTensor, cos: &CudaTensor, sin: &CudaTensor) -> Result<CudaTensor> {
        self.check("rope", &[x, cos, sin])?;
        attention::rope(&self.dev, x, cos, sin)
    }

    fn attention_with(
        &self,
        q: &CudaTensor,
        k: &CudaTensor,
        v: &CudaTensor,
        scale: f32,
        bias: Option<&CudaTensor>,
    ) -> Result<CudaTensor> {
        self.check("attention", &[q, k, v])?;
        if let Some(b) = bias {
            self.check("attention", &[b])?;
        }
        attention::attention_with(&self.dev, q, k, v, scale, bias)
    }

    fn sla_attention(
        &self,
        q: &CudaTensor,
        k: &CudaTensor,
        v: &CudaTensor,
        params: &SlaParams,
        proj_l: &CudaLinear,
    ) -> Result<CudaTensor> {
        self.check("sla_attention", &[q, k, v, &proj_l.weight])?;
        attention::sla_attention(&self.dev, q, k, v, params, proj_l)
    }

    fn gelu_tanh(&self, x: &CudaTensor) -> Result<CudaTensor> {
        self.check("gelu_tanh", &[x])?;
        elementwise::unary(&self.dev, kernels::GELU_TANH, x)
    }

    fn silu(&self, x: &CudaTensor) -> Result<CudaTensor> {
        self.check("silu", &[x])?;
        elementwise::unary(&self.dev, kernels::SILU, x)
    }

    fn add(&self, a: &CudaTensor, b: &CudaTensor) -> Result<CudaTensor> {
        self.check("add", &[a, b])?;
        elementwise::broadcast(&self.dev, "add", kernels::ADD, a, b)
    }

    fn mul(&self, a: &CudaTensor, b: &CudaTensor) -> Result<CudaTensor> {
        self.check("mul", &[a, b])?;
        elementwise::broadcast(&self.dev, "mul", kernels::MUL, a, b)
    }

    fn gated_residual(
        &self,
        x: &CudaTensor,
        y: &CudaTensor,
        gate: &CudaTensor,
    ) -> Result<CudaTensor> {
        self.check("gated_residual", &[x, y, gate])?;
        elementwise::gated_residual(&self.dev, x, y, gate)
    }

    fn lincomb(&self, terms: &[(f32, &CudaTensor)]) -> Result<CudaTensor> {
        let tensors: Vec<&CudaTensor> = terms.iter().map(|(_, t)| *t).collect();
        self.check("lincomb", &tensors)?;
        elementwise::lincomb(&self.dev, terms)
    }

    fn clamp(&self, x: &CudaTensor, lo: f32, hi: f32) -> Result<CudaTensor> {
        self.check("clamp", &[x])?;
        elementwise::clamp(&self.dev, x, lo, hi)
    }

    fn conv3d(
        &self,
        x: &CudaTensor,
        weight: &CudaTensor,
        bias: Option<&CudaTensor>,
        stride: [usize; 3],
        pad: [[usize; 2]; 3],
    ) -> Result<CudaTensor> {
        self.check("conv3d", &[x, weight])?;
        if let Some(b) = bias {
            self.check("conv3d", &[b])?;
        }
        conv::conv3d(&self.dev, x, weight, bias, stride, pad)
    }

    fn upsample_nearest(&self, x: &CudaTensor, factor: [usize; 3]) -> Result<CudaTensor> {
        self.check("upsample_nearest", &[x])?;
        layout::upsample_nearest(&self.dev, x, factor)
    }

    fn channel_rms_norm(&self, x: &CudaTensor, gamma: &CudaTensor) -> Result<CudaTensor> {
        self.check("channel_rms_norm", &[x, gamma])?;
        norm::channel_rms_norm(&self.dev, x, gamma)
    }

    fn channel_affine(
        &self,
        x: &CudaTensor,
        scale: &CudaTensor,
        shift: &CudaTensor,
    ) -> Result<CudaTensor> {
        self.check("channel_affine", &[x, scale, shift])?;
        elementwise::channel_affine(&self.dev, x, scale, shift)
    }

    fn patchify(&self, x: &CudaTensor, patch: [usize; 3]) -> Result<CudaTensor> {
        self.check("patchify", &[x])?;
        layout::patchify(&self.dev, x, patch)
    }

    fn unpatchify(
        &self,
        x: &CudaTensor,
        grid: [usize; 3],
        patch: [usize; 3],
        channels: usize,
    ) -> Result<CudaTensor> {
        self.check("unpatchify", &[x])?;
        layout::unpatchify(&self.dev, x, grid, patch, channels)
    }
}
