//! One GPU as a backend sees it: context, its single stream, the caching allocator, compiled
//! kernels, the cuBLASLt handle and cuDNN when it loads; plus launch and timing helpers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use cudarc::driver::{
    CudaContext, CudaStream, DeviceRepr, LaunchConfig, PushKernelArg, result as driver,
    sys::{self, CUdevice_attribute, CUfunction_attribute},
};

use super::Wrap;
use super::alloc::{DeviceBuffer, Pool};
use super::compile::{KernelCache, arch_for};
use super::cudnn::Cudnn;
use super::gemm::Gemm;
use super::kernels::Kernel;
use super::nvml::Nvml;
use super::readback::Readback;
use super::staging::{self, DIRECT_MAX, Staging};
use crate::{DType, Error, Result};

/// Threads per block of the grid-stride kernels.
const THREADS: u32 = 256;

/// Shared memory a kernel may use without opting in.
const STATIC_SMEM_LIMIT: u32 = 48 << 10;

/// What the backend found about its GPU.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceInfo {
    pub ordinal: usize,
    pub name: String,
    pub compute_capability: (i32, i32),
    pub multiprocessors: u32,
    pub total_memory: usize,
    /// NVRTC target, e.g. `sm_90a`.
    pub arch: String,
    pub nvrtc_version: (i32, i32),
    pub driver_version: i32,
}

/// Fails with a clear error, rather than cudarc's panic on first use, when a CUDA library the
/// backend needs cannot be loaded.
pub(crate) fn check_libraries() -> Result<()> {
    // SAFETY: each call only tries to dlopen a library under its candidate names.
    let present = unsafe {
        [
            cudarc::driver::sys::is_culib_present(),
            cudarc::nvrtc::sys::is_culib_present(),
            cudarc::cublaslt::sys::is_culib_present(),
        ]
    };
    let names = [
        "libcuda (the NVIDIA driver)",
        "libnvrtc (CUDA 13 NVRTC)",
        "libcublasLt (CUDA 13 cuBLASLt)",
    ];
    let missing: Vec<&str> = names
        .into_iter()
        .zip(present)
        .filter(|(_, found)| !found)
        .map(|(name, _)| name)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Backend {
            backend: "cuda",
            msg: format!("CUDA unavailable: cannot load {}", missing.join(", ")),
        })
    }
}

/// A row kernel's warps a row and rows a block.
type RowSpread = (u32, u32);

pub(crate) struct Device {
    /// Opened at the first convolution: cuDNN is optional (the direct kernel stands in). First, so
    /// its handle is destroyed while the context is alive (fields drop in order).
    cudnn: OnceLock<Option<Cudnn>>,
    /// Opened at the first energy reading (benchmarks only); optional like cuDNN.
    nvml: OnceLock<Option<Nvml>>,
    /// Pinned buffers for large uploads, allocated at the first one. Held for a whole upload, so
    /// uploads from several threads take turns.
    staging: Mutex<Option<Staging>>,
    /// Pinned buffers of asynchronous downloads, kept for reuse.
    pub readback: Readback,
    /// The row kernels' spreads (warps a row, rows a block) by kernel symbol and row width, each
    /// searched once (`row_spread`).
    row_spreads: Mutex<HashMap<(&'static str, u32), RowSpread>>,
    pub info: DeviceInfo,
    pub stream: Arc<CudaStream>,
    pub pool: Arc<Pool>,
    pub kernels: KernelCache,
    pub gemm: Gemm,
}

impl Device {
    pub fn new(ordinal: usize, poison: bool) -> Result<Self> {
        check_libraries()?;
        let ctx = CudaContext::new(ordinal).w("init")?;
        let attr = |a| ctx.attribute(a).w("init");
        let compute_capability = (
            attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
            attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
        );
        let multiprocessors =
            attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)? as u32;
        let arch = arch_for(compute_capability.0, compute_capability.1);
        let mut driver_version = 0;
        // SAFETY: a valid out-pointer; the driver library was checked above.
        unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut driver_version) }
            .result()
            .w("init")?;
        let stream = ctx.new_stream().w("init")?;
        let pool = Pool::new(stream.clone(), poison);
        let kernels = KernelCache::new(ctx.clone(), arch.clone())?;
        let gemm = Gemm::new(&pool, compute_capability.0)?;
        Ok(Self {
            cudnn: OnceLock::new(),
            nvml: OnceLock::new(),
            staging: Mutex::new(None),
            readback: Readback::new(),
            row_spreads: Mutex::new(HashMap::new()),
            info: DeviceInfo {
                ordinal,
                name: ctx.name().w("init")?,
                compute_capability,
                multiprocessors,
                total_memory: ctx.total_mem().w("init")?,
                arch,
                nvrtc_version: kernels.nvrtc(),
                driver_version,
            },
            stream,
            pool,
            kernels,
            gemm,
        })
    }

    /// cuDNN on this device's stream, or `None` when it cannot be loaded (logged once).
    pub fn cudnn(&self) -> Option<&Cudnn> {
        self.cudnn
            .get_or_init(|| Cudnn::load(&self.stream, &self.info.name))
            .as_ref()
    }

    /// NVML for this device, or `None` when it cannot be loaded or has no energy counter.
    pub fn nvml(&self) -> Option<&Nvml> {
        self.nvml
            .get_or_init(|| {
                let mut id: [std::ffi::c_char; 32] = [0; 32];
                let device = self.stream.context().cu_device();
                // SAFETY: a valid buffer of the length passed; the driver library is loaded.
                unsafe { sys::cuDeviceGetPCIBusId(id.as_mut_ptr(), id.len() as i32, device) }
                    .result()
                    .ok()?;
                // SAFETY: the driver wrote a NUL-terminated string into `id`.
                let id = unsafe { std::ffi::CStr::from_ptr(id.as_ptr()) };
                Nvml::open(id.to_str().ok()?)
            })
            .as_ref()
    }

    pub fn alloc(&self, elements: usize, dtype: DType) -> Result<DeviceBuffer> {
        self.pool.alloc(elements * dtype.size_in_bytes())
    }

    /// Queues a zero fill of `bytes` bytes at `ptr` (inside one live pool buffer) on the stream.
    pub fn zero(&self, ptr: sys::CUdeviceptr, bytes: usize) -> Result<()> {
        self.stream.context().bind_to_thread().w("zero")?;
        // SAFETY: the caller's range lies inside a live buffer, and the fill is queued on the
        // stream every use of that buffer is queued on.
        unsafe { driver::memset_d8_async(ptr, 0, bytes, self.stream.cu_stream()) }.w("zero")
    }

    /// A new buffer of `bytes` bytes, zero-filled on the stream first (an `atomicMax` slot).
    pub fn alloc_zeroed(&self, bytes: usize) -> Result<DeviceBuffer> {
        let buf = self.pool.alloc(bytes)?;
        self.zero(buf.ptr(), bytes)?;
        Ok(buf)
    }

    /// The first `len` elements of `buf` copied to the host, behind the work queued on the
    /// stream (which this waits for): for checks and small results, not the data path.
    pub fn read<T: bytemuck::Pod + Default>(
        &self,
        op: &'static str,
        buf: &DeviceBuffer,
        len: usize,
    ) -> Result<Vec<T>> {
        let mut out = vec![T::default(); len];
        let bytes = std::mem::size_of_val(out.as_slice());
        if bytes > buf.capacity() {
            return Err(Error::invalid(
                op,
                format!("reading {bytes} bytes of a {}-byte buffer", buf.capacity()),
            ));
        }
        if len > 0 {
            self.stream.context().bind_to_thread().w(op)?;
            // SAFETY: `buf` holds at least `bytes` bytes (checked above); the copy is queued
            // behind the work that writes them and `out` outlives the synchronize below.
            unsafe {
                driver::memcpy_dtoh_async(
                    bytemuck::cast_slice_mut::<T, u8>(&mut out),
                    buf.ptr(),
                    self.stream.cu_stream(),
                )
            }
            .w(op)?;
            self.stream.synchronize().w(op)?;
        }
        Ok(out)
    }

    /// [`Device::alloc`] without size-class rounding, for weights.
    pub fn alloc_exact(&self, elements: usize, dtype: DType) -> Result<DeviceBuffer> {
        self.pool.alloc_exact(elements * dtype.size_in_bytes())
    }

    /// Queues the copy of `src`, little-endian elements of `from`, into the device buffer at
    /// `dst` as elements of `to` (converted on the host when the types differ), on the stream.
    /// Returns once `src` is no longer needed; `dst` must hold the converted elements.
    pub fn upload(&self, dst: sys::CUdeviceptr, from: DType, src: &[u8], to: DType) -> Result<()> {
        if !src.len().is_multiple_of(from.size_in_bytes()) {
            return Err(Error::invalid(
                "upload",
                format!("{} bytes are no whole number of {from} elements", src.len()),
            ));
        }
        let bytes = src.len() / from.size_in_bytes() * to.size_in_bytes();
        if bytes == 0 {
            return Ok(());
        }
        self.stream.context().bind_to_thread().w("upload")?;
        if bytes <= DIRECT_MAX {
            let converted;
            let host = if from == to {
                src
            } else {
                converted = {
                    let mut v = vec![0u8; bytes];
                    staging::convert(from, to, src, &mut v)?;
                    v
                };
                &converted
            };
            // SAFETY: `dst` holds `bytes` bytes (the caller's contract) and the stream orders the
            // copy before every use of the buffer. The driver copies a pageable source this small
            // before returning (see the staging module), so `host` may be dropped after the call.
            return unsafe { driver::memcpy_htod_async(dst, host, self.stream.cu_stream()) }
                .w("upload");
        }
        // A panic mid-upload leaves the ring usable: no copy is ever in flight from a slot
        // without its event recorded.
        let mut ring = self.staging.lock().unwrap_or_else(PoisonError::into_inner);
        let ring = match &mut *ring {
            Some(ring) => ring,
            None => ring.insert(Staging::new(self.stream.context())?),
        };
        ring.upload(&self.stream, dst, from, src, to)
    }

    /// Launches `kernel` with its single args struct.
    pub fn launch<A: DeviceRepr>(&self, kernel: Kernel, cfg: LaunchConfig, args: &A) -> Result<()> {
        let f = self.kernels.function(kernel)?;
        if cfg.shared_mem_bytes > STATIC_SMEM_LIMIT {
            // Dynamic shared memory past 48 KB must be opted into per function.
            f.set_attribute(
                CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                cfg.shared_mem_bytes as i32,
            )
            .w(kernel.symbol)?;
        }
        let mut builder = self.stream.launch_builder(&f);
        builder.arg(args);
        // SAFETY: `A` is the `#[repr(C)]` mirror of the kernel's parameter struct (checked by the
        // callers' field-by-field layout and the device checks); every pointer in it addresses a
        // live pool buffer of the size the kernel indexes, as each op checks before launching.
        unsafe { builder.launch(cfg) }
            .map(|_| ())
            .map_err(|e| Error::Backend {
                backend: "cuda",
                msg: format!("launching {}: {e}", kernel.symbol),
            })
    }

    /// How many `threads`-thread blocks of `kernel` an SM holds at once (its registers and shared
    /// memory decide).
    pub fn resident_blocks(&self, kernel: Kernel, threads: u32) -> Result<u32> {
        self.kernels
            .function(kernel)?
            .occupancy_max_active_blocks_per_multiprocessor(threads, 0, None)
            .w(kernel.symbol)
    }

    /// The spread of `kernel`'s `cols`-wide rows: `search`'s answer the first time, remembered for
    /// every later launch.
    pub fn row_spread(
        &self,
        kernel: Kernel,
        cols: u32,
        search: impl FnOnce() -> Result<RowSpread>,
    ) -> Result<RowSpread> {
        let mut spreads = self
            .row_spreads
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(&spread) = spreads.get(&(kernel.symbol, cols)) {
            return Ok(spread);
        }
        let spread = search()?;
        spreads.insert((kernel.symbol, cols), spread);
        Ok(spread)
    }

    /// The CTAs of a persistent kernel over `items` work items, `per_sm` of them resident on each
    /// SM: one wave, none idle when the items are fewer.
    pub fn persistent_ctas(&self, items: usize, per_sm: usize) -> usize {
        items.min(per_sm * self.info.multiprocessors.max(1) as usize)
    }

    /// A grid-stride launch over `n` elements, or nothing when `n` is 0.
    pub fn launch_elements<A: DeviceRepr>(&self, kernel: Kernel, n: usize, args: &A) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        // Enough blocks to fill the GPU several times over; the loop covers the rest.
        let max_blocks = self.info.multiprocessors.max(1) * 32;
        let blocks = (n as u64).div_ceil(THREADS as u64).min(max_blocks as u64) as u32;
        self.launch(
            kernel,
            LaunchConfig {
                grid_dim: (blocks, 1, 1),
                block_dim: (THREADS, 1, 1),
                shared_mem_bytes: 0,
            },
            args,
        )
    }

    /// Median and minimum over `iters` timed runs of `f`, in ms, measured with CUDA events on the
    /// backend's stream after `warmup` untimed runs.
    pub fn time(
        &self,
        warmup: usize,
        iters: usize,
        mut f: impl FnMut() -> Result<()>,
    ) -> Result<(f64, f64)> {
        for _ in 0..warmup {
            f()?;
        }
        let ctx = self.stream.context();
        let flags = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
        let mut times = Vec::with_capacity(iters);
        for _ in 0..iters.max(1) {
            let start = ctx.new_event(flags).w("time")?;
            let end = ctx.new_event(flags).w("time")?;
            start.record(&self.stream).w("time")?;
            f()?;
            end.record(&self.stream).w("time")?;
            times.push(start.elapsed_ms(&end).w("time")? as f64);
        }
        times.sort_by(f64::total_cmp);
        Ok((times[times.len() / 2], times[0]))
    }
}
