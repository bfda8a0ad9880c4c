//! Linear layers through cuBLASLt.
//!
//! Four kinds of operands, all accumulating in f32 (`CUBLAS_COMPUTE_32F`): **f32** operands with
//! TF32 off, whose results match the CPU reference to f32 rounding (summation order only);
//! **bf16** operands, bias and output (the tensor-core path of the bf16 DiT), as PyTorch's bf16
//! `F.linear`; bf16 operands with an **f32 output** ([`Operands::Wide`]), optionally added to an
//! f32 matrix in the accumulator (a residual stream); and **FP8** e4m3 weights and activations,
//! each row with its own f32 scale, bf16 bias and a bf16 output, or an f32 one added to a residual
//! stream in the accumulator, or with one scale per operand an e4m3 output (`--quant fp8`, the
//! Hopper fast path of issue 6; see [`Operands::Fp8`] and [`Fp8Out`]).
//!
//! Row-major `y[M, N] = x[M, K] · W[N, K]ᵀ + b` is computed as the column-major product
//! `yᵀ (N×M) = op(W) · xᵀ` with `W` read as a K×N column-major matrix and transposed ("TN",
//! the form cuBLASLt's kernels prefer and its FP8 kernels require), and the bias added per row of
//! `yᵀ` by the `BIAS` epilogue (by a separate kernel where cuBLASLt has no kernel with it).
//!
//! FP8 requirements (cuBLAS 13 docs, `cublasLtMatmul()` and "Outer Vector Scaling for FP8 Data
//! Types"): "TN", f32 compute and scale type, 16-byte aligned pointers and leading dimensions (K a
//! multiple of 16 for the FP8 operands, N a multiple of 8 for the bf16 output), and outer-vector
//! scaling on compute capability 9.0 only. Fast accumulation (`FAST_ACCUM`) is on, as Transformer
//! Engine runs its forward FP8 GEMMs: cuBLASLt then keeps the FP8 MMA's own accumulator instead
//! of promoting partial sums into f32 every few k-steps. On an H100 that takes the GEMMs from
//! 1.30–1.45x bf16 to 1.51–1.73x at Wan's shapes, and every accuracy check reads the same at
//! e4m3's floor (rel L2 3.73e-2 at K = 1536 and 8960 either way, the 14B's K = 13824 checked too;
//! bench/results/2026-11-26-sage.md).
//!
//! Each GEMM shape runs the heuristic's first answer, asked once per shape. The answer changes
//! with the row count at almost every count, and a kernel's first launch in a process costs
//! milliseconds: umT5-XXL's first encode at most new prompt lengths took 12–32 ms more than the
//! next (bench/results/2026-11-29-encoder-asm.md). [`Gemm::warm_up_rows`] finds the fewest row
//! counts whose GEMMs launch every kernel any row count up to a model's longest input would.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::ffi::c_void;
use std::sync::{Arc, Mutex, PoisonError};

use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublaslt::{result as lt, sys};
use cudarc::driver::{CudaStream, sys::CUdeviceptr};

use super::Wrap;
use super::alloc::{DeviceBuffer, Pool};
use crate::{DType, Result};

use sys::cublasLtMatmulDescAttributes_t as Attr;
use sys::cudaDataType::{CUDA_R_8F_E4M3, CUDA_R_16BF, CUDA_R_32F};

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

/// The element types of one GEMM's operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operands {
    /// Every operand (x, w, bias, out) f32, or every operand bf16.
    Float(DType),
    /// `x` and `w` bf16, output f32: the accumulator's precision kept for an f32 consumer (a
    /// residual stream, an elementwise product) instead of a bf16 rounding in between. A bias
    /// (bf16, the layer's type) is left to the caller ([`Pending`]): cuBLASLt reads the bias in
    /// the output's type.
    Wide,
    /// `x` and `w` FP8 e4m3, each row scaled by an f32 factor (`x_scales: [rows]`, `w_scales:
    /// [n]`, see [`crate::fp8`]); bias bf16; output as `out` says.
    Fp8 {
        x_scales: CUdeviceptr,
        w_scales: CUdeviceptr,
        out: Fp8Out,
    },
}

/// The output of an FP8 GEMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fp8Out {
    Bf16,
    /// f32 (cuBLASLt's FP8 table pairs an f32 C and D with a bf16 bias).
    F32,
    /// e4m3, each value multiplied by the f32 at `scale` (device memory) before its rounding,
    /// which saturates; C (unused, beta 0) and the bias bf16. The bias and GELU must fuse, and
    /// `x_scales` and `w_scales` point at one scale each (cuBLASLt's only FP8 mode with an e4m3
    /// output).
    E4m3 {
        scale: CUdeviceptr,
    },
}

/// One linear layer's GEMM, `out[rows, n] = (acc[rows, n] +) x[rows, k] · w[n, k]ᵀ (+ bias[n])`,
/// optionally followed by GELU (tanh). The caller guarantees the buffers hold `rows·k`, `n·k`,
/// `n` and `rows·n` values of the operands' types (and `rows`, `n` scales) and were allocated on
/// the stream's pool.
pub(crate) struct LinearGemm {
    pub operands: Operands,
    pub out: CUdeviceptr,
    /// A matrix of the output's type and shape added to the product (cuBLASLt's C, beta 1), in
    /// the accumulator before the output's one rounding.
    pub acc: Option<CUdeviceptr>,
    pub x: CUdeviceptr,
    pub w: CUdeviceptr,
    pub bias: Option<CUdeviceptr>,
    pub gelu: bool,
    pub rows: usize,
    pub n: usize,
    pub k: usize,
}

/// The epilogue steps [`Gemm::linear`] left to the caller, who applies them in this order: the
/// bias, then the GELU. Both false unless cuBLASLt had no kernel with them for the operands.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pending {
    pub bias: bool,
    pub gelu: bool,
}

/// Operand types as the algorithm cache tells problems apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    F32,
    Bf16,
    Wide,
    Fp8,
    Fp8Wide,
    Fp8E4m3,
}

/// A non-null pointer that is never read: the heuristic's descriptors record pointers (FP8
/// scales) without reading them.
const UNREAD: CUdeviceptr = 256;

impl Kind {
    /// Operands of this kind, on no buffers (as the heuristic takes them).
    fn unbound(self) -> Operands {
        let fp8 = |out| Operands::Fp8 {
            x_scales: UNREAD,
            w_scales: UNREAD,
            out,
        };
        match self {
            Kind::F32 => Operands::Float(DType::F32),
            Kind::Bf16 => Operands::Float(DType::BF16),
            Kind::Wide => Operands::Wide,
            Kind::Fp8 => fp8(Fp8Out::Bf16),
            Kind::Fp8Wide => fp8(Fp8Out::F32),
            Kind::Fp8E4m3 => fp8(Fp8Out::E4m3 { scale: UNREAD }),
        }
    }
}

/// A problem for which the heuristic has been asked once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Shape {
    m: u64,
    n: u64,
    k: u64,
    bias: bool,
    kind: Kind,
    gelu: bool,
}

impl Shape {
    /// The descriptor and layouts the heuristic is asked with for this shape, on no buffers;
    /// none for a shape without output.
    fn query(self) -> Result<Option<(Desc, Layouts)>> {
        let op = LinearGemm {
            operands: self.kind.unbound(),
            out: 0,
            acc: None,
            x: 0,
            w: 0,
            bias: self.bias.then_some(UNREAD),
            gelu: self.gelu,
            rows: self.n as usize,
            n: self.m as usize,
            k: self.k as usize,
        };
        let Some(Problem { layouts, .. }) = problem(&op)? else {
            return Ok(None);
        };
        Ok(Some((descriptor(&op, self.bias, self.gelu)?, layouts)))
    }
}

thread_local! {
    /// The shapes this thread's GEMMs ran inside [`recording`]; none outside it.
    static RECORDED: RefCell<Option<HashSet<Shape>>> = const { RefCell::new(None) };
}

/// The GEMM shapes some work ran, for [`Gemm::warm_up_rows`].
#[derive(Debug, Default)]
pub(crate) struct Recorded(HashSet<Shape>);

/// Runs `f`, returning with its result the GEMM shapes it ran on this thread (not those other
/// threads ran on the same handle meanwhile).
pub(crate) fn recording<R>(f: impl FnOnce() -> R) -> (R, Recorded) {
    let outer = RECORDED.replace(Some(HashSet::new()));
    let result = f();
    let shapes = RECORDED.replace(outer).unwrap_or_default();
    RECORDED.with_borrow_mut(|outer| {
        if let Some(outer) = outer {
            outer.extend(shapes.iter().copied());
        }
    });
    (result, Recorded(shapes))
}

/// Runs the work it is given, returning a time for it in ms ([`Gemm::time_candidates`]).
pub(crate) type Timer<'a> = dyn FnMut(&mut dyn FnMut() -> Result<()>) -> Result<f64> + 'a;

/// The heuristic's answer for one [`Shape`]: its fastest algorithm, or why there is none.
type Answer = std::result::Result<sys::cublasLtMatmulAlgo_t, String>;

pub(crate) struct Gemm {
    handle: Handle,
    workspace: DeviceBuffer,
    algos: Mutex<HashMap<Shape, Answer>>,
    /// [`warm_heuristics`] running, joined before the handle goes.
    warming: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Gemm {
    fn drop(&mut self) {
        if let Some(warming) = self.warming.take() {
            // A panic there only means the tables were not warmed.
            let _ = warming.join();
        }
    }
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
        let workspace = pool.alloc(workspace_bytes(cc_major))?;
        let warming = {
            let (raw, context) = (handle.0 as usize, pool.stream().context().clone());
            let limit = workspace.capacity();
            std::thread::Builder::new()
                .name("cublaslt-warm".into())
                .spawn(move || {
                    if context.bind_to_thread().is_ok() {
                        warm_heuristics(raw as sys::cublasLtHandle_t, limit, cc_major);
                    }
                })
                .ok()
        };
        Ok(Self {
            handle,
            workspace,
            algos: Mutex::new(HashMap::new()),
            warming,
        })
    }

    /// Enqueues `op` on `stream`. Where cuBLASLt has no kernel with the requested epilogue, the
    /// GELU and then the bias drop out of it into [`Pending`]: the fallback exists for FP8 with
    /// outer-vector scaling, whose epilogue support cuBLAS does not document (its FP8 table lists
    /// a bf16 bias; the heuristic decides). No algorithm at all is an error naming the problem.
    pub fn linear(&self, stream: &CudaStream, op: &LinearGemm) -> Result<Pending> {
        let bias = op.bias.is_some();
        let fuse_bias = fuses_bias(op);
        let Some(problem) = problem(op)? else {
            return Ok(Pending {
                bias: false,
                gelu: false,
            });
        };
        // Fused epilogues first: bias and GELU, bias alone, nothing; an e4m3 output is rounded
        // in the GEMM, so nothing may be left to apply to it.
        let mut tries = vec![(fuse_bias, op.gelu)];
        if !op.operands.writes_e4m3() {
            if op.gelu {
                tries.push((fuse_bias, false));
            }
            if fuse_bias {
                tries.push((false, false));
            }
        }
        let mut missing = None;
        for (with_bias, with_gelu) in tries {
            match self.enqueue(stream, op, &problem, with_bias, with_gelu)? {
                Ok(()) => {
                    return Ok(Pending {
                        bias: bias && !with_bias,
                        gelu: op.gelu && !with_gelu,
                    });
                }
                Err(e) => missing = Some(e),
            }
        }
        // `tries` is never empty: the error is the plain GEMM's (or the only try's).
        Err(missing.unwrap_or_else(|| crate::Error::invalid("linear", "no GEMM configuration")))
    }

    /// Enqueues `op` with its whole epilogue, `true`; or, where cuBLASLt has no algorithm for
    /// that (asked once per shape), enqueues nothing and says `false`.
    pub fn linear_whole(&self, stream: &CudaStream, op: &LinearGemm) -> Result<bool> {
        let Some(problem) = problem(op)? else {
            return Ok(true);
        };
        Ok(self
            .enqueue(stream, op, &problem, fuses_bias(op), op.gelu)?
            .is_ok())
    }

    /// Enqueues `op` (its `problem`) with the epilogue steps `bias` and `gelu`, or, where cuBLASLt
    /// has no algorithm for them, nothing: `Ok(Err(why))`.
    fn enqueue(
        &self,
        stream: &CudaStream,
        op: &LinearGemm,
        problem: &Problem,
        bias: bool,
        gelu: bool,
    ) -> Result<Result<()>> {
        let shape = Shape {
            m: problem.m,
            n: problem.n,
            k: problem.k,
            bias,
            kind: problem.kind,
            gelu,
        };
        let desc = descriptor(op, bias, gelu)?;
        Ok(match self.algo(shape, &desc, &problem.layouts) {
            Ok(algo) => {
                self.matmul(stream, op, &desc, &problem.layouts, &algo)?;
                Ok(())
            }
            Err(e) => Err(e),
        })
    }

    /// Enqueues `D = op(A)·B` for the descriptors the heuristic chose `algo` under.
    fn matmul(
        &self,
        stream: &CudaStream,
        op: &LinearGemm,
        desc: &Desc,
        Layouts {
            a,
            b,
            c: c_layout,
            d,
        }: &Layouts,
        algo: &sys::cublasLtMatmulAlgo_t,
    ) -> Result<()> {
        let (alpha, beta) = (1.0f32, if op.acc.is_some() { 1.0f32 } else { 0.0 });
        // An e4m3 D's C has another type, so it cannot be D's buffer (cuBLASLt refuses C == D
        // with other layouts); with beta 0 cuBLASLt reads no C and takes none.
        let c = match (op.acc, op.operands.writes_e4m3()) {
            (Some(acc), _) => acc,
            (None, true) => 0,
            (None, false) => op.out,
        };
        // SAFETY: the layouts describe the caller-guaranteed buffer sizes; C is `acc` (beta = 1),
        // of D's type and shape, or `out` itself with beta = 0 (never read, so its layout may
        // give another type, as an e4m3 D's bf16 C does); the workspace is owned by `self`
        // and large enough for any algorithm the heuristic returned under the same workspace
        // limit; all work is queued on `stream`.
        unsafe {
            lt::matmul(
                self.handle.0,
                desc.0,
                (&alpha as *const f32).cast::<c_void>(),
                (&beta as *const f32).cast::<c_void>(),
                op.w as *const c_void,
                a.0,
                op.x as *const c_void,
                b.0,
                c as *const c_void,
                c_layout.0,
                op.out as *mut c_void,
                d.0,
                algo,
                self.workspace.ptr() as *mut c_void,
                self.workspace.capacity(),
                stream.cu_stream() as sys::cudaStream_t,
            )
        }
        .w("linear")
    }

    /// How far the algorithm [`Self::linear`] runs (the heuristic's first answer) is from the others
    /// cuBLASLt offers for `op` with its whole epilogue: the first `count` answers in the
    /// heuristic's order, each run on `op`'s buffers under `time` (which returns a time in ms).
    pub fn time_candidates(
        &self,
        stream: &CudaStream,
        op: &LinearGemm,
        count: usize,
        time: &mut Timer<'_>,
    ) -> Result<Vec<f64>> {
        let Some(Problem { layouts, .. }) = problem(op)? else {
            return Ok(Vec::new());
        };
        let desc = descriptor(op, op.bias.is_some(), op.gelu)?;
        let algos = self.heuristics(&desc, &layouts, count)?.unwrap_or_default();
        algos
            .iter()
            .map(|algo| time(&mut || self.matmul(stream, op, &desc, &layouts, algo)))
            .collect()
    }

    /// The heuristic's fastest algorithm for `shape`, asked once per shape.
    fn algo(
        &self,
        shape: Shape,
        desc: &Desc,
        layouts: &Layouts,
    ) -> Result<sys::cublasLtMatmulAlgo_t> {
        let mut algos = self.algos.lock().unwrap_or_else(PoisonError::into_inner);
        let answer = match algos.get(&shape) {
            Some(answer) => answer.clone(),
            None => {
                let start = std::time::Instant::now();
                let answer = self.heuristics(desc, layouts, 1)?.map(|algos| algos[0]);
                // A new shape's one-time cost, paid inside the call that brings it, and which
                // kernel configuration it got.
                tracing::debug!(
                    ?shape,
                    ms = start.elapsed().as_secs_f64() * 1e3,
                    config = ?answer.as_ref().ok().map(algo_config),
                    "cuBLASLt heuristic"
                );
                if let Err(e) = &answer {
                    tracing::info!(?shape, "cuBLASLt has no algorithm: {e}");
                }
                algos.insert(shape, answer.clone());
                answer
            }
        };
        drop(algos);
        if answer.is_ok() {
            RECORDED.with_borrow_mut(|shapes| {
                if let Some(shapes) = shapes {
                    shapes.insert(shape);
                }
            });
        }
        answer.map_err(|e| crate::Error::Backend {
            backend: "cuda",
            msg: format!("linear: no cuBLASLt algorithm for {shape:?}: {e}"),
        })
    }

    /// The fewest row counts up to `max` at which the GEMMs `ran` with `max` rows (a model run at
    /// its longest input) run every algorithm the heuristic picks for them at any row count up to
    /// `max`, smallest first: a model run at each has launched every kernel any input of up to
    /// `max` rows brings. Asks the heuristic for each of those GEMMs at every row count (the
    /// answers are kept, so no later GEMM of these shapes asks).
    pub fn warm_up_rows(&self, ran: &Recorded, max: usize) -> Result<Vec<usize>> {
        let families: Vec<&Shape> = ran.0.iter().filter(|s| s.n == max as u64).collect();
        let (mut launched, mut rows) = (HashSet::new(), Vec::new());
        for n in 1..=max {
            let mut brings_kernels = false;
            for &family in &families {
                let shape = Shape {
                    n: n as u64,
                    ..*family
                };
                let Some((desc, layouts)) = shape.query()? else {
                    continue;
                };
                // A row count with no algorithm fails in its own GEMM, as it would unwarmed.
                if let Ok(algo) = self.algo(shape, &desc, &layouts) {
                    brings_kernels |= launched.insert((family, algo.data));
                }
            }
            if brings_kernels {
                rows.push(n);
            }
        }
        Ok(rows)
    }

    /// [`heuristics`] with this handle and workspace limit.
    fn heuristics(
        &self,
        desc: &Desc,
        layouts: &Layouts,
        count: usize,
    ) -> Result<std::result::Result<Vec<sys::cublasLtMatmulAlgo_t>, String>> {
        heuristics(
            self.handle.0,
            self.workspace.capacity(),
            (desc, layouts),
            count,
        )
    }
}

/// An algorithm's configuration as cuBLASLt numbers it: algorithm, tile, split-K and stages ids
/// (0 where one cannot be read).
fn algo_config(algo: &sys::cublasLtMatmulAlgo_t) -> [u32; 4] {
    use sys::cublasLtMatmulAlgoConfigAttributes_t as C;
    [
        C::CUBLASLT_ALGO_CONFIG_ID,
        C::CUBLASLT_ALGO_CONFIG_TILE_ID,
        C::CUBLASLT_ALGO_CONFIG_SPLITK_NUM,
        C::CUBLASLT_ALGO_CONFIG_STAGES_ID,
    ]
    .map(|attr| {
        let (mut value, mut written) = (0u32, 0usize);
        // SAFETY: `algo` is an initialized algorithm; each of these attributes is 4 bytes (int32
        // or uint32), written into `value` at most.
        let status = unsafe {
            sys::cublasLtMatmulAlgoConfigGetAttribute(
                algo,
                attr,
                (&mut value as *mut u32).cast(),
                std::mem::size_of::<u32>(),
                &mut written,
            )
        };
        if status == sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
            value
        } else {
            0
        }
    })
}

/// Asks cuBLASLt's heuristic (on `handle`, algorithms within `limit` bytes of workspace) for up
/// to `count` algorithms, fastest first by its estimate; `Ok(Err(..))` when it has none for the
/// problem.
fn heuristics(
    handle: sys::cublasLtHandle_t,
    limit: usize,
    (desc, Layouts { a, b, c, d }): (&Desc, &Layouts),
    count: usize,
) -> Result<std::result::Result<Vec<sys::cublasLtMatmulAlgo_t>, String>> {
    let pref = Pref(lt::create_matmul_pref().w("linear")?);
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
    let mut results = vec![
        // SAFETY: a plain C struct for which all zeros is a valid (unused) value.
        unsafe { std::mem::zeroed::<sys::cublasLtMatmulHeuristicResult_t>() };
        count.max(1)
    ];
    let mut returned = 0i32;
    // SAFETY: all descriptors are live; `results` holds the
    // `requested` entries cuBLASLt may write and `returned` says how many it did.
    let status = unsafe {
        sys::cublasLtMatmulAlgoGetHeuristic(
            handle,
            desc.0,
            a.0,
            b.0,
            c.0,
            d.0,
            pref.0,
            results.len() as i32,
            results.as_mut_ptr(),
            &mut returned,
        )
    };
    if let Err(e) = status.result() {
        return Ok(Err(e.to_string()));
    }
    let algos: Vec<_> = results
        .iter()
        .take(returned.max(0) as usize)
        .filter(|r| r.state == sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS)
        .map(|r| r.algo)
        .collect();
    Ok(if algos.is_empty() {
        Err("the heuristic returned no algorithm".into())
    } else {
        Ok(algos)
    })
}

/// Asks the heuristic once for a small problem of each operand kind, so that cuBLASLt builds its
/// tables for every kind the backend uses before the first real layer does: each costs 40-140 ms
/// the first time in a process (H100, bench/results/2026-11-27-quant-k.md), which a thread at
/// the backend's creation spends while the weights load rather than inside the first GEMM of a
/// kind (a first text encode, a first DiT step). Best effort: any failure only leaves a kind cold.
fn warm_heuristics(handle: sys::cublasLtHandle_t, limit: usize, cc_major: i32) {
    let mut kinds = vec![Kind::Bf16, Kind::Wide, Kind::F32];
    if cc_major == 9 {
        // Outer-vector FP8 scaling exists on compute capability 9.0 only.
        kinds.extend([Kind::Fp8, Kind::Fp8Wide, Kind::Fp8E4m3]);
    }
    for kind in kinds {
        let shape = Shape {
            m: 128,
            n: 128,
            k: 128,
            bias: false,
            kind,
            gelu: false,
        };
        let warmed = shape.query().and_then(|query| match query {
            Some((desc, layouts)) => heuristics(handle, limit, (&desc, &layouts), 1).map(drop),
            None => Ok(()),
        });
        if let Err(e) = warmed {
            tracing::debug!(?kind, "cuBLASLt heuristic warm-up: {e}");
        }
    }
}

/// One GEMM's shape as cuBLASLt sees it (column-major `m×n = (k×m)ᵀ · k×n`), its operand kind
/// and layouts.
struct Problem {
    kind: Kind,
    m: u64,
    n: u64,
    k: u64,
    layouts: Layouts,
}

/// The layouts of A, B, C and D; C is D's but for an e4m3 D.
struct Layouts {
    a: Layout,
    b: Layout,
    c: Layout,
    d: Layout,
}

impl Operands {
    /// Whether the GEMM writes an e4m3 output.
    fn writes_e4m3(self) -> bool {
        matches!(
            self,
            Operands::Fp8 {
                out: Fp8Out::E4m3 { .. },
                ..
            }
        )
    }
}

/// Whether `op`'s bias goes into cuBLASLt's epilogue: every kind but [`Operands::Wide`], whose
/// bias (of the layer's type) is left to the caller.
fn fuses_bias(op: &LinearGemm) -> bool {
    op.bias.is_some() && op.operands != Operands::Wide
}

/// The problem of `op`, or none when it has no output (no rows or no columns).
fn problem(op: &LinearGemm) -> Result<Option<Problem>> {
    let (kind, in_t, out_t) = match op.operands {
        Operands::Float(DType::F32) => (Kind::F32, CUDA_R_32F, CUDA_R_32F),
        Operands::Float(DType::BF16) => (Kind::Bf16, CUDA_R_16BF, CUDA_R_16BF),
        Operands::Wide => (Kind::Wide, CUDA_R_16BF, CUDA_R_32F),
        Operands::Float(dtype @ (DType::F16 | DType::I8)) => {
            return Err(crate::Error::DType {
                op: "linear",
                dtype,
            });
        }
        Operands::Fp8 { out, .. } => match out {
            Fp8Out::Bf16 => (Kind::Fp8, CUDA_R_8F_E4M3, CUDA_R_16BF),
            Fp8Out::F32 => (Kind::Fp8Wide, CUDA_R_8F_E4M3, CUDA_R_32F),
            Fp8Out::E4m3 { .. } => (Kind::Fp8E4m3, CUDA_R_8F_E4M3, CUDA_R_8F_E4M3),
        },
    };
    let c_t = if op.operands.writes_e4m3() {
        CUDA_R_16BF
    } else {
        out_t
    };
    if op.rows == 0 || op.n == 0 {
        return Ok(None);
    }
    // A = W read column-major as K×N (ld K), transposed by TRANSA; B = x as K×rows (ld K);
    // C = D = y as N×rows (ld N).
    let (m, n, k) = (op.n as u64, op.rows as u64, op.k as u64);
    let layout = |t, rows: u64, cols: u64| -> Result<Layout> {
        Ok(Layout(
            lt::create_matrix_layout(t, rows, cols, rows as i64).w("linear")?,
        ))
    };
    Ok(Some(Problem {
        kind,
        m,
        n,
        k,
        layouts: Layouts {
            a: layout(in_t, k, m)?,
            b: layout(in_t, k, n)?,
            c: layout(c_t, m, n)?,
            d: layout(out_t, m, n)?,
        },
    }))
}

/// The matmul descriptor of `op`: f32 compute and scale type, "TN", the bias (`bias`) and GELU
/// (`gelu`) epilogue, and for FP8 the per-row scale vectors.
fn descriptor(op: &LinearGemm, bias: bool, gelu: bool) -> Result<Desc> {
    let desc = Desc(
        lt::create_matmul_desc(sys::cublasComputeType_t::CUBLAS_COMPUTE_32F, CUDA_R_32F)
            .w("linear")?,
    );
    let op_t = cublasOperation_t::CUBLAS_OP_T as i32;
    // SAFETY: TRANSA takes an int32 cublasOperation_t.
    unsafe { set_desc(&desc, Attr::CUBLASLT_MATMUL_DESC_TRANSA, &op_t) }?;
    let epilogue = match (bias, gelu) {
        (false, false) => None,
        (true, false) => Some(sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_BIAS),
        (false, true) => Some(sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_GELU),
        (true, true) => Some(sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_GELU_BIAS),
    };
    if let Some(epilogue) = epilogue {
        // SAFETY: EPILOGUE takes a uint32 cublasLtEpilogue_t.
        unsafe { set_desc(&desc, Attr::CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue) }?;
    }
    if let Some(ptr) = op.bias.filter(|_| bias) {
        // SAFETY: BIAS_POINTER takes a device pointer; the bias type defaults to the output type
        // (bf16 for FP8 operands, which cuBLASLt's FP8 table lists).
        unsafe { set_desc(&desc, Attr::CUBLASLT_MATMUL_DESC_BIAS_POINTER, &ptr) }?;
        if let Operands::Fp8 {
            out: Fp8Out::F32 | Fp8Out::E4m3 { .. },
            ..
        } = op.operands
        {
            // The FP8 table's bias for an f32 or e4m3 output is bf16, not the output's type.
            // SAFETY: BIAS_DATA_TYPE takes an int32 cudaDataType.
            unsafe {
                set_desc(
                    &desc,
                    Attr::CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                    &CUDA_R_16BF,
                )
            }?;
        }
    }
    if let Operands::Fp8 {
        x_scales,
        w_scales,
        out,
    } = op.operands
    {
        // Outer-vector scaling: D[i, j] = scale_A[i] · scale_B[j] · Σ_l op(A)[i, l] · B[l, j],
        // scale_A of length m (rows of op(A)), scale_B of length n (columns of B). Here op(A) is
        // W (m = output features) and B is xᵀ (n = tokens): A takes the weight's per-channel
        // scales, B the activations' per-token scales. cuBLASLt writes an e4m3 D only with one
        // scale per operand (H200, cuBLAS 13.1): then each pointer's first value is that scale.
        use sys::cublasLtMatmulMatrixScale_t::{
            CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F, CUBLASLT_MATMUL_MATRIX_SCALE_SCALAR_32F,
        };
        let mode = match out {
            Fp8Out::Bf16 | Fp8Out::F32 => CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F,
            Fp8Out::E4m3 { .. } => CUBLASLT_MATMUL_MATRIX_SCALE_SCALAR_32F,
        };
        // SAFETY: the SCALE_MODEs take an int32 cublasLtMatmulMatrixScale_t, the SCALE_POINTERs a
        // device pointer to the f32 vectors, of n and rows values.
        unsafe {
            set_desc(&desc, Attr::CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &mode)?;
            set_desc(&desc, Attr::CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &mode)?;
            set_desc(&desc, Attr::CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &w_scales)?;
            set_desc(&desc, Attr::CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &x_scales)?;
        }
        // SAFETY: FAST_ACCUM takes an int8 flag.
        unsafe { set_desc(&desc, Attr::CUBLASLT_MATMUL_DESC_FAST_ACCUM, &1i8) }?;
        if let Fp8Out::E4m3 { scale } = out {
            // SAFETY: D_SCALE_POINTER takes a device pointer to one f32 (the scalar mode).
            unsafe { set_desc(&desc, Attr::CUBLASLT_MATMUL_DESC_D_SCALE_POINTER, &scale) }?;
        }
    }
    Ok(desc)
}
