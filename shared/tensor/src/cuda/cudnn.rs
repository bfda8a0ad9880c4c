//! 3-D convolutions through cuDNN's convolution API (`libcudnn.so.9`, opened at run time like the
//! other CUDA libraries).
//!
//! Operands are channels-last, as the backend's `conv3d` takes them: NDHWC activations (`x: [F,
//! H, W, Cin]`, N = 1) and a KTRSC filter (`[Cout, kt, kh, kw, Cin]`), the layout where cuDNN's
//! bf16 tensor-core kernels run (channel-first bf16 ran ~25x slower on the VAE's shapes,
//! bench/results/2026-11-26-vae.md). cuDNN takes symmetric zero padding only; the caller pads the
//! asymmetric rest explicitly.
//!
//! The first call of a problem (element type, shapes, stride, padding) times cuDNN's algorithms on
//! the real operands (`cudnnFindConvolutionForwardAlgorithmEx`) and keeps the fastest, so later
//! calls only enqueue; the choice is also saved on disk ([`super::cudnn_plans`]) for later
//! processes, which then only check its workspace size. bf16 operands accumulate in f32 on the tensor cores; f32 operands use FMA
//! math only (no TF32), so they match the CPU reference to f32 rounding.

use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use cudarc::cudnn::{result as dnn, sys};
use cudarc::driver::CudaStream;

use super::Wrap;
use super::alloc::{DeviceBuffer, Pool};
use super::compile::cache_dir;
use super::cudnn_plans::{Choice, PlanStore};
use crate::{DType, Error, Result};

use sys::cudnnConvolutionFwdAlgo_t::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM as IMPLICIT_PRECOMP_GEMM;
use sys::cudnnMathType_t::{CUDNN_FMA_MATH, CUDNN_TENSOR_OP_MATH};

/// Largest scratch an algorithm may use: cuDNN's explicit-GEMM algorithms want the whole im2col
/// matrix (gigabytes at the VAE's full-resolution shapes) and are never the fastest there.
const WORKSPACE_LIMIT: usize = 256 << 20;

/// Algorithms `Find` reports at most (cuDNN has 8 forward algorithms).
const MAX_ALGOS: usize = 8;

/// One convolution problem, as the plan cache tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Problem {
    pub dtype: DType,
    /// `[F, H, W, Cin]`.
    pub x: [usize; 4],
    /// `[Cout, kt, kh, kw, Cin]`.
    pub w: [usize; 5],
    pub stride: [usize; 3],
    /// Symmetric zero padding per (F, H, W).
    pub pad: [usize; 3],
}

impl Problem {
    /// `[Fo, Ho, Wo, Cout]`.
    pub fn out(&self) -> [usize; 4] {
        let o = |d: usize| (self.x[d] + 2 * self.pad[d] - self.w[d + 1]) / self.stride[d] + 1;
        [o(0), o(1), o(2), self.w[0]]
    }
}

/// The pointers of one convolution: `y = conv(x, w)`.
pub(crate) struct Operands {
    pub x: u64,
    pub w: u64,
    pub y: u64,
    /// `[Cout]` of the problem's element type, added in the convolution's epilogue when cuDNN
    /// can (see [`Cudnn::forward`]).
    pub bias: Option<u64>,
    /// A tensor of `y`'s shape and type added in the same epilogue.
    pub residual: Option<u64>,
}

struct Handle(sys::cudnnHandle_t);

// SAFETY: a cuDNN handle may be used from any thread as long as calls on it do not overlap; every
// use is under `Cudnn::plans`' lock.
unsafe impl Send for Handle {}
// SAFETY: as above.
unsafe impl Sync for Handle {}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: created by cudnnCreate and destroyed only here; a failure cannot be acted on.
        let _ = unsafe { dnn::destroy_handle(self.0) };
    }
}

/// A problem's descriptors and chosen algorithm.
struct Plan {
    x: sys::cudnnTensorDescriptor_t,
    w: sys::cudnnFilterDescriptor_t,
    conv: sys::cudnnConvolutionDescriptor_t,
    y: sys::cudnnTensorDescriptor_t,
    /// `[1, Cout, 1, 1, 1]`: the bias of the fused call.
    bias: sys::cudnnTensorDescriptor_t,
    algo: sys::cudnnConvolutionFwdAlgo_t,
    workspace: usize,
    /// Cleared when cuDNN refuses the fused convolution + bias for this problem.
    fuse_bias: AtomicBool,
}

// SAFETY: descriptors are plain host structures, used only under `Cudnn::plans`' lock.
unsafe impl Send for Plan {}
// SAFETY: as above.
unsafe impl Sync for Plan {}

impl Drop for Plan {
    fn drop(&mut self) {
        // SAFETY: each descriptor was created by its cudnnCreate* call and is destroyed once; null
        // ones (a plan that failed half-way) are skipped.
        unsafe {
            if !self.x.is_null() {
                let _ = dnn::destroy_tensor_descriptor(self.x);
            }
            if !self.y.is_null() {
                let _ = dnn::destroy_tensor_descriptor(self.y);
            }
            if !self.bias.is_null() {
                let _ = dnn::destroy_tensor_descriptor(self.bias);
            }
            if !self.w.is_null() {
                let _ = dnn::destroy_filter_descriptor(self.w);
            }
            if !self.conv.is_null() {
                let _ = dnn::destroy_convolution_descriptor(self.conv);
            }
        }
    }
}

/// cuDNN on the backend's stream with its per-problem plans; `None` entries are problems cuDNN
/// has no algorithm for, which the caller computes with the direct kernel.
/// The identity activation of the fused convolution + bias call.
struct Identity(sys::cudnnActivationDescriptor_t);

// SAFETY: a plain host structure, only read after creation.
unsafe impl Send for Identity {}
// SAFETY: as above.
unsafe impl Sync for Identity {}

impl Drop for Identity {
    fn drop(&mut self) {
        // SAFETY: created by cudnnCreateActivationDescriptor, destroyed once.
        let _ = unsafe { sys::cudnnDestroyActivationDescriptor(self.0) };
    }
}

pub(crate) struct Cudnn {
    handle: Handle,
    identity: Identity,
    store: PlanStore,
    plans: Mutex<HashMap<Problem, Option<Arc<Plan>>>>,
}

fn dnn_type(dtype: DType) -> sys::cudnnDataType_t {
    match dtype {
        DType::BF16 => sys::cudnnDataType_t::CUDNN_DATA_BFLOAT16,
        DType::F32 | DType::F16 | DType::I8 => sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
    }
}

/// Whether `m` allows tensor cores (TF32 for f32 operands).
fn tensor_op(m: sys::cudnnMathType_t) -> bool {
    matches!(
        m,
        CUDNN_TENSOR_OP_MATH | sys::cudnnMathType_t::CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION
    )
}

fn ints<const N: usize>(v: [usize; N]) -> Result<[c_int; N]> {
    let mut out = [0; N];
    for (o, x) in out.iter_mut().zip(v) {
        *o = c_int::try_from(x)
            .map_err(|_| Error::invalid("conv3d", format!("extent {x} too large for cuDNN")))?;
    }
    Ok(out)
}

/// Strides of `[N, C, D, H, W]` stored channels-last (NDHWC).
fn channels_last([_, c, d, h, w]: [c_int; 5]) -> [c_int; 5] {
    [c * d * h * w, 1, h * w * c, w * c, c]
}

impl Cudnn {
    /// cuDNN bound to `stream`, or `None` with one log line saying why: the backend then runs
    /// convolutions on its direct kernel.
    pub fn load(stream: &CudaStream, gpu: &str) -> Option<Self> {
        // SAFETY: only tries to dlopen libcudnn under cudarc's candidate names.
        if !unsafe { sys::is_culib_present() } {
            tracing::info!(
                "cuDNN not found (libcudnn.so.9 on the library path): conv3d runs on the \
                 direct kernel"
            );
            return None;
        }
        match Self::create(stream, gpu) {
            Ok(c) => {
                tracing::info!(version = dnn::get_version(), "conv3d runs on cuDNN");
                Some(c)
            }
            Err(e) => {
                tracing::warn!("cuDNN unusable ({e}): conv3d runs on the direct kernel");
                None
            }
        }
    }

    fn create(stream: &CudaStream, gpu: &str) -> Result<Self> {
        stream.context().bind_to_thread().w("cudnn")?;
        let handle = Handle(dnn::create_handle().w("cudnnCreate")?);
        // SAFETY: a live handle and the backend's live stream (the same CUstream object cuDNN's
        // runtime-API type names).
        unsafe { dnn::set_stream(handle.0, stream.cu_stream() as sys::cudaStream_t) }
            .w("cudnnSetStream")?;
        let identity = Identity(dnn::create_activation_descriptor().w("cudnn descriptor")?);
        // SAFETY: a live activation descriptor.
        unsafe {
            dnn::set_activation_descriptor(
                identity.0,
                sys::cudnnActivationMode_t::CUDNN_ACTIVATION_IDENTITY,
                sys::cudnnNanPropagation_t::CUDNN_PROPAGATE_NAN,
                0.0,
            )
        }
        .w("cudnnSetActivationDescriptor")?;
        Ok(Self {
            handle,
            identity,
            store: PlanStore::open(cache_dir(), dnn::get_version(), gpu),
            plans: Mutex::new(HashMap::new()),
        })
    }

    /// Problems planned so far: (with a cuDNN algorithm, left to the direct kernel).
    pub fn plan_counts(&self) -> (usize, usize) {
        let plans = self.plans.lock().unwrap_or_else(PoisonError::into_inner);
        let planned = plans.values().filter(|p| p.is_some()).count();
        (planned, plans.len() - planned)
    }

    /// Enqueues `y = conv(x, w)` for `p`, plus `ops.bias` and `ops.residual` in the same kernel
    /// where cuDNN fuses them: `Some(true)` when they were added, `Some(false)` when the caller
    /// must add them, `None` when cuDNN has no algorithm for `p` (the caller falls back).
    /// Operands must hold `p`'s element counts of `p.dtype` and live on `pool`'s stream.
    pub fn forward(&self, pool: &Arc<Pool>, p: &Problem, ops: &Operands) -> Result<Option<bool>> {
        let mut plans = self.plans.lock().unwrap_or_else(PoisonError::into_inner);
        let plan = match plans.get(p) {
            Some(plan) => plan.clone(),
            None => {
                // Out of memory is the caller's error, not a reason to give the problem up.
                let scratch = pool.alloc(WORKSPACE_LIMIT)?;
                let plan = match self.plan(&scratch, p, ops) {
                    Ok(plan) => Some(Arc::new(plan)),
                    Err(e) => {
                        tracing::warn!(problem = ?p, "cuDNN has no algorithm ({e}); direct kernel");
                        None
                    }
                };
                plans.insert(*p, plan.clone());
                plan
            }
        };
        let Some(plan) = plan else {
            return Ok(None);
        };
        let workspace = (plan.workspace > 0)
            .then(|| pool.alloc(plan.workspace))
            .transpose()?;
        let workspace_ptr = workspace
            .as_ref()
            .map_or(std::ptr::null_mut(), |b| b.ptr() as *mut c_void);
        let (one, zero) = (1f32, 0f32);
        // cuDNN fuses the bias (with the identity activation) into the precomputed-GEMM algorithm
        // only; elsewhere, or once refused, the caller adds it in a pass of its own.
        if let Some(bias) = ops.bias
            && plan.algo == IMPLICIT_PRECOMP_GEMM
            && plan.fuse_bias.load(Ordering::Relaxed)
        {
            let (z, z_weight) = match ops.residual {
                Some(r) => (r, one),
                None => (ops.y, zero),
            };
            // SAFETY: as for the plain call below; `z` is the residual (`y`'s shape and type) or
            // `y` itself with weight 0, and `bias` holds `Cout` elements of the problem's type.
            let fused = unsafe {
                sys::cudnnConvolutionBiasActivationForward(
                    self.handle.0,
                    (&one as *const f32).cast(),
                    plan.x,
                    ops.x as *const c_void,
                    plan.w,
                    ops.w as *const c_void,
                    plan.conv,
                    plan.algo,
                    workspace_ptr,
                    plan.workspace,
                    (&z_weight as *const f32).cast(),
                    plan.y,
                    z as *const c_void,
                    plan.bias,
                    bias as *const c_void,
                    self.identity.0,
                    plan.y,
                    ops.y as *mut c_void,
                )
            }
            .result();
            match fused {
                Ok(()) => return Ok(Some(true)),
                Err(e) => {
                    tracing::info!(problem = ?p, "cuDNN does not fuse the bias here ({e:?})");
                    plan.fuse_bias.store(false, Ordering::Relaxed);
                }
            }
        }
        // SAFETY: descriptors match the operands (same problem); the pointers address live pool
        // buffers of the sizes `p` implies; the workspace is at least the algorithm's size; work
        // is enqueued on the pool's stream, which orders every use of these buffers.
        unsafe {
            dnn::convolution_forward(
                self.handle.0,
                (&one as *const f32).cast(),
                plan.x,
                ops.x as *const c_void,
                plan.w,
                ops.w as *const c_void,
                plan.conv,
                plan.algo,
                workspace_ptr,
                plan.workspace,
                (&zero as *const f32).cast(),
                plan.y,
                ops.y as *mut c_void,
            )
        }
        .w("cudnnConvolutionForward")?;
        Ok(Some(false))
    }

    /// Descriptors for `p` and the fastest algorithm within [`WORKSPACE_LIMIT`] bytes of
    /// `scratch`, timed on `ops`.
    fn plan(&self, scratch: &DeviceBuffer, p: &Problem, ops: &Operands) -> Result<Plan> {
        let dt = dnn_type(p.dtype);
        let mut plan = Plan {
            x: std::ptr::null_mut(),
            w: std::ptr::null_mut(),
            conv: std::ptr::null_mut(),
            y: std::ptr::null_mut(),
            bias: std::ptr::null_mut(),
            algo: sys::cudnnConvolutionFwdAlgo_t::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
            workspace: 0,
            fuse_bias: AtomicBool::new(true),
        };
        // cuDNN's dims are always in NCDHW / KCTRS order; the strides and the filter format
        // say the memory is channels-last.
        let [f, h, w, c] = ints(p.x)?;
        let xdims = [1, c, f, h, w];
        let ydims = {
            let [f, h, w, c] = ints(p.out())?;
            [1, c, f, h, w]
        };
        let wdims = {
            let [k, t, r, s, c] = ints(p.w)?;
            [k, c, t, r, s]
        };
        let pads = ints(p.pad)?;
        let strides = ints(p.stride)?;
        let math = if p.dtype == DType::BF16 {
            CUDNN_TENSOR_OP_MATH
        } else {
            CUDNN_FMA_MATH
        };
        let (xstrides, ystrides, wformat) = (
            channels_last(xdims),
            channels_last(ydims),
            sys::cudnnTensorFormat_t::CUDNN_TENSOR_NHWC,
        );
        // SAFETY: each descriptor is created before it is set, with arrays of the stated lengths;
        // `plan`'s Drop destroys whatever was created if a later step fails.
        unsafe {
            plan.x = dnn::create_tensor_descriptor().w("cudnn descriptor")?;
            dnn::set_tensornd_descriptor(plan.x, dt, 5, xdims.as_ptr(), xstrides.as_ptr())
                .w("cudnnSetTensorNdDescriptor")?;
            plan.y = dnn::create_tensor_descriptor().w("cudnn descriptor")?;
            dnn::set_tensornd_descriptor(plan.y, dt, 5, ydims.as_ptr(), ystrides.as_ptr())
                .w("cudnnSetTensorNdDescriptor")?;
            plan.bias = dnn::create_tensor_descriptor().w("cudnn descriptor")?;
            let cout = ydims[1];
            dnn::set_tensornd_descriptor(
                plan.bias,
                dt,
                5,
                [1, cout, 1, 1, 1].as_ptr(),
                [cout, 1, 1, 1, 1].as_ptr(),
            )
            .w("cudnnSetTensorNdDescriptor")?;
            plan.w = dnn::create_filter_descriptor().w("cudnn descriptor")?;
            dnn::set_filternd_descriptor(plan.w, dt, wformat, 5, wdims.as_ptr())
                .w("cudnnSetFilterNdDescriptor")?;
            plan.conv = dnn::create_convolution_descriptor().w("cudnn descriptor")?;
            dnn::set_convolutionnd_descriptor(
                plan.conv,
                3,
                pads.as_ptr(),
                strides.as_ptr(),
                [1; 3].as_ptr(),
                sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
                sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
            )
            .w("cudnnSetConvolutionNdDescriptor")?;
            dnn::set_convolution_math_type(plan.conv, math).w("cudnnSetConvolutionMathType")?;
        }
        if let Some(saved) = self.store.get(p) {
            match self.adopt(&mut plan, p, saved) {
                Ok(()) => return Ok(plan),
                Err(e) => {
                    tracing::warn!(problem = ?p, "saved cuDNN plan unusable ({e}); searching")
                }
            }
        }
        let mut found = [MaybeUninit::<sys::cudnnConvolutionFwdAlgoPerf_t>::uninit(); MAX_ALGOS];
        let mut count: c_int = 0;
        // SAFETY: descriptors were set above; the operands and scratch are live buffers of the
        // problem's sizes and WORKSPACE_LIMIT bytes; `found` has room for MAX_ALGOS results.
        unsafe {
            sys::cudnnFindConvolutionForwardAlgorithmEx(
                self.handle.0,
                plan.x,
                ops.x as *const c_void,
                plan.w,
                ops.w as *const c_void,
                plan.conv,
                plan.y,
                ops.y as *mut c_void,
                MAX_ALGOS as c_int,
                &mut count,
                found.as_mut_ptr().cast(),
                scratch.ptr() as *mut c_void,
                WORKSPACE_LIMIT,
            )
            .result()
            .w("cudnnFindConvolutionForwardAlgorithmEx")?;
        }
        let returned = usize::try_from(count).unwrap_or(0).min(MAX_ALGOS);
        // SAFETY: cuDNN initialized the first `returned` results, sorted fastest first.
        let best = found[..returned]
            .iter()
            .map(|r| unsafe { r.assume_init() })
            .find(|r| {
                r.status == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS
                    && r.memory <= WORKSPACE_LIMIT
                    && (p.dtype == DType::BF16 || !tensor_op(r.mathType))
            })
            .ok_or_else(|| Error::Backend {
                backend: "cuda",
                msg: format!("cuDNN found no forward algorithm for {p:?}"),
            })?;
        // bf16 runs the math type the search timed; f32 stays on FMA math, off TF32, whatever
        // the search reports, to keep the reference numerics.
        if p.dtype == DType::BF16 {
            // SAFETY: a live convolution descriptor.
            unsafe { dnn::set_convolution_math_type(plan.conv, best.mathType) }
                .w("cudnnSetConvolutionMathType")?;
        }
        tracing::debug!(problem = ?p, algo = ?best.algo, ms = best.time, "cuDNN plan");
        plan.algo = best.algo;
        plan.workspace = best.memory;
        self.store.record(
            p,
            Choice {
                algo: best.algo,
                math: best.mathType,
            },
        );
        Ok(plan)
    }

    /// Takes a saved choice for `plan`'s descriptors, after asking cuDNN its workspace size (an
    /// error when the algorithm no longer applies).
    fn adopt(&self, plan: &mut Plan, p: &Problem, saved: Choice) -> Result<()> {
        if p.dtype == DType::BF16 {
            // SAFETY: a live convolution descriptor.
            unsafe { dnn::set_convolution_math_type(plan.conv, saved.math) }
                .w("cudnnSetConvolutionMathType")?;
        }
        let mut workspace = 0usize;
        // SAFETY: the descriptors were set by `plan`; `workspace` is a live out-parameter.
        unsafe {
            sys::cudnnGetConvolutionForwardWorkspaceSize(
                self.handle.0,
                plan.x,
                plan.w,
                plan.conv,
                plan.y,
                saved.algo,
                &mut workspace,
            )
            .result()
            .w("cudnnGetConvolutionForwardWorkspaceSize")?;
        }
        if workspace > WORKSPACE_LIMIT {
            return Err(Error::Backend {
                backend: "cuda",
                msg: format!("workspace of {workspace} bytes over the limit"),
            });
        }
        plan.algo = saved.algo;
        plan.workspace = workspace;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_extents_follow_stride_and_symmetric_padding() {
        let p = Problem {
            dtype: DType::BF16,
            x: [6, 480, 832, 96],
            w: [96, 3, 3, 3, 96],
            stride: [1, 1, 1],
            pad: [0, 1, 1],
        };
        assert_eq!(p.out(), [4, 480, 832, 96]);
        // downsample2d after its explicit right/bottom column: 3x3, stride 2.
        let p = Problem {
            x: [1, 481, 833, 96],
            w: [96, 1, 3, 3, 96],
            stride: [1, 2, 2],
            pad: [0, 0, 0],
            ..p
        };
        assert_eq!(p.out(), [1, 240, 416, 96]);
        // time_conv of downsample3d: 5 frames, kernel 3, stride 2.
        let p = Problem {
            x: [5, 240, 416, 192],
            w: [192, 3, 1, 1, 192],
            stride: [2, 1, 1],
            ..p
        };
        assert_eq!(p.out(), [2, 240, 416, 192]);
    }

    #[test]
    fn channels_last_strides_put_channels_innermost() {
        assert_eq!(
            channels_last([1, 96, 4, 8, 10]),
            [96 * 320, 1, 80 * 96, 10 * 96, 96]
        );
    }
}
