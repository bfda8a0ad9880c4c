//! Linear layers through cuBLASLt.
//!
//! Two element types, both accumulating in f32 (`CUBLAS_COMPUTE_32F`): **f32** operands with TF32
//! off, whose results match the CPU reference to f32 rounding (summation order only), and **bf16**
//! operands, bias and output (the tensor-core path of the bf16 DiT), as PyTorch's bf16 `F.linear`.
//!
//! Row-major `y[M, N] = x[M, K] · W[N, K]ᵀ + b` is computed as the column-major product
//! `yᵀ (N×M) = op(W) · xᵀ` with `W` read as a K×N column-major matrix and transposed ("TN",
//! the form cuBLASLt's kernels prefer), and the bias added per row of `yᵀ` by the `BIAS`
//! epilogue.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, Mutex, PoisonError};

use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublaslt::{result as lt, sys};
use cudarc::driver::{CudaStream, sys::CUdeviceptr};

use super::Wrap;
use super::alloc::{DeviceBuffer, Pool};
use crate::{DType, Result};

/// cuBLASLt's recommended workspace: 32 MiB on Hopper and later, 4 MiB before.
fn workspace_bytes(cc_major: i32) -> usize {
    if cc_major >= 9 { 32 << 20 } else { 4 << 20 }
}

struct Handle(sys::cublasLtHandle_t);

// SAFETY: a cuBLASLt handle may be used from any thread; this backend serializes its use on one
// stream through `&Gemm` calls that enqueue work only.
unsafe impl Send for Handle {}
// SAFETY: as above.
unsafe impl Sync for Handle {}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: created by cublasLtCreate and destroyed only here; a failure cannot be acted on.
        let _ = unsafe { lt::destroy_handle(self.0) };
    }
}

/// A descriptor destroyed on every exit path.
struct Desc(sys::cublasLtMatmulDesc_t);
struct Layout(sys::cublasLtMatrixLayout_t);
struct Pref(sys::cublasLtMatmulPreference_t);

impl Drop for Desc {
    fn drop(&mut self) {
        // SAFETY: created by cublasLtMatmulDescCreate, destroyed once.
        let _ = unsafe { lt::destroy_matmul_desc(self.0) };
    }
}
impl Drop for Layout {
    fn drop(&mut self) {
        // SAFETY: created by cublasLtMatrixLayoutCreate, destroyed once.
        let _ = unsafe { lt::destroy_matrix_layout(self.0) };
    }
}
impl Drop for Pref {
    fn drop(&mut self) {
        // SAFETY: created by cublasLtMatmulPreferenceCreate, destroyed once.
        let _ = unsafe { lt::destroy_matmul_pref(self.0) };
    }
}

/// A problem size for which the heuristic has been asked once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Shape {
    m: u64,
    n: u64,
    k: u64,
    bias: bool,
    bf16: bool,
    gelu: bool,
}

pub(crate) struct Gemm {
    handle: Handle,
    workspace: DeviceBuffer,
    algos: Mutex<HashMap<Shape, sys::cublasLtMatmulAlgo_t>>,
}

/// Sets one descriptor attribute from a plain value.
///
/// # Safety
/// `desc` must be live and `T` the type cuBLASLt documents for `attr`.
unsafe fn set_desc<T>(
    desc: &Desc,
    attr: sys::cublasLtMatmulDescAttributes_t,
    value: &T,
) -> Result<()> {
    // SAFETY: per the caller's contract; `value` outlives the call, which copies it.
    unsafe {
        lt::set_matmul_desc_attribute(
            desc.0,
            attr,
            (value as *const T).cast(),
            std::mem::size_of::<T>(),
        )
    }
    .w("linear")
}

impl Gemm {
    pub fn new(pool: &Arc<Pool>, cc_major: i32) -> Result<Self> {
        pool.stream().context().bind_to_thread().w("cublaslt")?;
        let handle = Handle(lt::create_handle().w("cublaslt")?);
        Ok(Self {
            handle,
            workspace: pool.alloc(workspace_bytes(cc_major))?,
            algos: Mutex::new(HashMap::new()),
        })
    }

    /// `out[rows, n] = x[rows, k] · w[n, k]ᵀ (+ bias[n])`, every operand f32 or every operand
    /// bf16 (`dtype`), enqueued on `stream`; with `gelu`, cuBLASLt's GELU epilogue (the tanh
    /// approximation) follows the bias in the same kernel.
    ///
    /// The caller guarantees the buffers hold `rows·k`, `n·k`, `n` and `rows·n` values of `dtype`
    /// and were allocated on `stream`'s pool.
    #[allow(clippy::too_many_arguments)]
    pub fn linear(
        &self,
        stream: &CudaStream,
        dtype: DType,
        out: CUdeviceptr,
        x: CUdeviceptr,
        w: CUdeviceptr,
        bias: Option<CUdeviceptr>,
        gelu: bool,
        rows: usize,
        n: usize,
        k: usize,
    ) -> Result<()> {
        let data_t = match dtype {
            DType::F32 => sys::cudaDataType::CUDA_R_32F,
            DType::BF16 => sys::cudaDataType::CUDA_R_16BF,
            DType::F16 | DType::I8 => {
                return Err(crate::Error::DType {
                    op: "linear",
                    dtype,
                });
            }
        };
        if rows == 0 || n == 0 {
            return Ok(());
        }
        let shape = Shape {
            m: n as u64,
            n: rows as u64,
            k: k as u64,
            bias: bias.is_some(),
            bf16: dtype == DType::BF16,
            gelu,
        };
        let f32_t = sys::cudaDataType::CUDA_R_32F;
        let desc = Desc(
            lt::create_matmul_desc(sys::cublasComputeType_t::CUBLAS_COMPUTE_32F, f32_t)
                .w("linear")?,
        );
        let op_t = cublasOperation_t::CUBLAS_OP_T as i32;
        // SAFETY: TRANSA takes an int32 cublasOperation_t.
        unsafe {
            set_desc(
                &desc,
                sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA,
                &op_t,
            )
        }?;
        let epilogue = match (bias.is_some(), gelu) {
            (false, false) => None,
            (true, false) => Some(sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_BIAS),
            (false, true) => Some(sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_GELU),
            (true, true) => Some(sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_GELU_BIAS),
        };
        if let Some(epilogue) = epilogue {
            // SAFETY: EPILOGUE takes a uint32 cublasLtEpilogue_t.
            unsafe {
                set_desc(
                    &desc,
                    sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_EPILOGUE,
                    &epilogue,
                )
            }?;
        }
        if let Some(bias) = bias {
            // SAFETY: BIAS_POINTER takes a device pointer to `m` values of the output type.
            unsafe {
                set_desc(
                    &desc,
                    sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                    &bias,
                )
            }?;
        }
        // A = W read column-major as K×N (ld K), transposed by TRANSA; B = x as K×rows (ld K);
        // D = y as N×rows (ld N).
        let a =
            Layout(lt::create_matrix_layout(data_t, shape.k, shape.m, shape.k as i64).w("linear")?);
        let b =
            Layout(lt::create_matrix_layout(data_t, shape.k, shape.n, shape.k as i64).w("linear")?);
        let d =
            Layout(lt::create_matrix_layout(data_t, shape.m, shape.n, shape.m as i64).w("linear")?);
        let algo = self.algo(shape, &desc, &a, &b, &d)?;
        let (alpha, beta) = (1.0f32, 0.0f32);
        // SAFETY: the layouts describe the caller-guaranteed buffer sizes; C = D = `out` with
        // beta = 0; the workspace is owned by `self` and large enough for any algorithm the
        // heuristic returned under the same workspace limit; all work is queued on `stream`.
        unsafe {
            lt::matmul(
                self.handle.0,
                desc.0,
                (&alpha as *const f32).cast::<c_void>(),
                (&beta as *const f32).cast::<c_void>(),
                w as *const c_void,
                a.0,
                x as *const c_void,
                b.0,
                out as *const c_void,
                d.0,
                out as *mut c_void,
                d.0,
                &algo,
                self.workspace.ptr() as *mut c_void,
                self.workspace.capacity(),
                stream.cu_stream() as sys::cudaStream_t,
            )
        }
        .w("linear")
    }

    fn algo(
        &self,
        shape: Shape,
        desc: &Desc,
        a: &Layout,
        b: &Layout,
        d: &Layout,
    ) -> Result<sys::cublasLtMatmulAlgo_t> {
        let mut algos = self.algos.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(algo) = algos.get(&shape) {
            return Ok(*algo);
        }
        let pref = Pref(lt::create_matmul_pref().w("linear")?);
        let limit = self.workspace.capacity();
        // SAFETY: MAX_WORKSPACE_BYTES takes a uint64; `pref` is live.
        unsafe {
            lt::set_matmul_pref_attribute(
                pref.0,
                sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                (&limit as *const usize).cast(),
                std::mem::size_of::<usize>(),
            )
        }
        .w("linear")?;
        // SAFETY: all descriptors are live; C and D share a layout.
        let heuristic = unsafe {
            lt::get_matmul_algo_heuristic(self.handle.0, desc.0, a.0, b.0, d.0, d.0, pref.0)
        }
        .map_err(|e| crate::Error::Backend {
            backend: "cuda",
            msg: format!("linear: no cuBLASLt algorithm for {shape:?}: {e}"),
        })?;
        algos.insert(shape, heuristic.algo);
        Ok(heuristic.algo)
    }
}
