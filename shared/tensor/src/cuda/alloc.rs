//! The caching device allocator.
//!
//! `cuMemAlloc` costs tens of microseconds and `cuMemFree` synchronizes the device, while a DiT
//! forward allocates hundreds of short-lived activations of a few recurring sizes. Freed buffers therefore
//! go back to a free list instead of to the driver:
//!
//! - sizes round up to a **size class**: 512 B minimum, then four classes per power of two
//!   (`2^k · {1, 1.25, 1.5, 1.75}`), so a reused block wastes at most 25 %;
//! - one pool per backend, and a backend owns **one stream**: a buffer released while kernels that
//!   read it are still queued can be handed out at once, because everything that uses the new
//!   owner is queued behind those kernels on the same stream (PyTorch's caching allocator argues
//!   the same way per stream). Buffers must therefore never be used on another stream;
//! - when `cuMemAlloc` reports out-of-memory the pool synchronizes, returns every cached block to
//!   the driver and retries once;
//! - every block is a whole `cuMemAlloc` allocation, so tensors start 256-byte aligned, as the
//!   kernels' float4 loads and cuBLASLt's default alignment assumption need;
//! - with `poison` set, every handed-out block is first filled with `0xFF` bytes (an f32 NaN), so
//!   an op that leaves part of its output unwritten fails any comparison: the device checks run
//!   this way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use cudarc::driver::{CudaStream, result, sys};

use super::Wrap;
use crate::{Error, Result};

/// Smallest block handed out.
const MIN_CLASS: usize = 512;

/// The block size a request of `bytes` is served from.
pub(crate) fn size_class(bytes: usize) -> usize {
    if bytes <= MIN_CLASS {
        return MIN_CLASS;
    }
    let base = 1usize << (usize::BITS - 1 - bytes.leading_zeros());
    let step = base / 4;
    base + (bytes - base).div_ceil(step) * step
}

/// Allocator counters, for reports and leak checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Bytes in blocks currently owned by tensors.
    pub live_bytes: usize,
    /// Bytes in free blocks kept for reuse.
    pub cached_bytes: usize,
    /// Highest `live_bytes` seen.
    pub peak_live_bytes: usize,
    /// Blocks obtained from the driver.
    pub driver_allocs: usize,
    /// Requests served from a free list.
    pub reuses: usize,
}

#[derive(Default)]
struct State {
    free: HashMap<usize, Vec<sys::CUdeviceptr>>,
    stats: PoolStats,
}

pub(crate) struct Pool {
    stream: Arc<CudaStream>,
    poison: bool,
    state: Mutex<State>,
}

/// A block of device memory owned by one tensor (or the GEMM workspace); returns to its pool on
/// drop.
pub(crate) struct DeviceBuffer {
    ptr: sys::CUdeviceptr,
    class: usize,
    pool: Arc<Pool>,
}

impl DeviceBuffer {
    pub fn ptr(&self) -> sys::CUdeviceptr {
        self.ptr
    }

    /// Usable size in bytes (the size class, at least the requested size).
    pub fn capacity(&self) -> usize {
        self.class
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        self.pool.release(self.ptr, self.class);
    }
}

impl Pool {
    pub fn new(stream: Arc<CudaStream>, poison: bool) -> Arc<Self> {
        Arc::new(Self {
            stream,
            poison,
            state: Mutex::new(State::default()),
        })
    }

    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic elsewhere: every update is a single push/pop
        // plus counter arithmetic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A block of at least `bytes` bytes, usable by work queued on the pool's stream from now on.
    pub fn alloc(self: &Arc<Self>, bytes: usize) -> Result<DeviceBuffer> {
        self.block(size_class(bytes))
    }

    /// A block of `bytes` rounded up to 512 only, for tensors that live as long as a model
    /// (weights): the size classes' up to 25 % rounding would be pure waste there (4 GiB on a 14B
    /// model). Freed blocks are cached under their own size.
    pub fn alloc_exact(self: &Arc<Self>, bytes: usize) -> Result<DeviceBuffer> {
        self.block(bytes.max(1).next_multiple_of(MIN_CLASS))
    }

    fn block(self: &Arc<Self>, class: usize) -> Result<DeviceBuffer> {
        let reused = {
            let mut state = self.state();
            let ptr = state.free.get_mut(&class).and_then(Vec::pop);
            if ptr.is_some() {
                state.stats.cached_bytes -= class;
                state.stats.reuses += 1;
            }
            ptr
        };
        let ptr = match reused {
            Some(ptr) => ptr,
            None => self.driver_alloc(class)?,
        };
        {
            let mut state = self.state();
            state.stats.live_bytes += class;
            state.stats.peak_live_bytes = state.stats.peak_live_bytes.max(state.stats.live_bytes);
        }
        if self.poison {
            self.stream.context().bind_to_thread().w("alloc")?;
            // SAFETY: `ptr` addresses `class` bytes owned by this pool, and the fill is queued on
            // the stream every later use of the block is queued on.
            unsafe { result::memset_d8_async(ptr, 0xFF, class, self.stream.cu_stream()) }
                .w("alloc")?;
        }
        Ok(DeviceBuffer {
            ptr,
            class,
            pool: self.clone(),
        })
    }

    fn driver_alloc(&self, class: usize) -> Result<sys::CUdeviceptr> {
        self.stream.context().bind_to_thread().w("alloc")?;
        let start = std::time::Instant::now();
        // SAFETY: the context is current on this thread; the block is freed only by `Drop for
        // Pool` or `trim`, after the stream has drained.
        let first = unsafe { result::malloc_sync(class) };
        // What a new size class costs the call that first needs it.
        tracing::debug!(
            bytes = class,
            ms = start.elapsed().as_secs_f64() * 1e3,
            "cuMemAlloc"
        );
        let ptr = match first {
            Ok(ptr) => ptr,
            Err(e) if e.0 == sys::cudaError_enum::CUDA_ERROR_OUT_OF_MEMORY => {
                self.trim()?;
                // SAFETY: as above.
                unsafe { result::malloc_sync(class) }.map_err(|e| {
                    if e.0 == sys::cudaError_enum::CUDA_ERROR_OUT_OF_MEMORY {
                        Error::OutOfMemory {
                            backend: "cuda",
                            bytes: class,
                            detail: format!("cache released; {:?}", self.stats()),
                        }
                    } else {
                        Error::Backend {
                            backend: "cuda",
                            msg: format!("alloc: {class} bytes after releasing the cache: {e}"),
                        }
                    }
                })?
            }
            Err(e) => return Err(e).w("alloc"),
        };
        self.state().stats.driver_allocs += 1;
        Ok(ptr)
    }

    fn release(&self, ptr: sys::CUdeviceptr, class: usize) {
        let mut state = self.state();
        state.free.entry(class).or_default().push(ptr);
        state.stats.live_bytes -= class;
        state.stats.cached_bytes += class;
    }

    /// Returns every cached block to the driver, after the queued work that may still touch them.
    pub fn trim(&self) -> Result<()> {
        self.stream.synchronize().w("trim")?;
        let blocks: Vec<sys::CUdeviceptr> = {
            let mut state = self.state();
            state.stats.cached_bytes = 0;
            state.free.drain().flat_map(|(_, v)| v).collect()
        };
        self.stream.context().bind_to_thread().w("trim")?;
        for ptr in blocks {
            // SAFETY: the block came from `malloc_sync`, is in no tensor (it was on a free list)
            // and the stream has drained.
            unsafe { result::free_sync(ptr) }.w("trim")?;
        }
        Ok(())
    }

    pub fn stats(&self) -> PoolStats {
        self.state().stats
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Every `DeviceBuffer` holds the pool, so all blocks are on the free lists by now. Errors
        // cannot be returned from `drop`, and a failing free at teardown leaks nothing the driver
        // does not reclaim with the context.
        let _ = self.trim();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_cover_requests_with_bounded_waste() {
        assert_eq!(size_class(0), 512);
        assert_eq!(size_class(512), 512);
        assert_eq!(size_class(513), 640);
        assert_eq!(size_class(1024), 1024);
        assert_eq!(size_class(1025), 1280);
        assert_eq!(size_class(1 << 20), 1 << 20);
        assert_eq!(size_class(3 << 20), 3 << 20);
        assert_eq!(size_class((3 << 20) + 1), 7 << 19);
        for bytes in (1..200_000).step_by(97).chain([usize::MAX / 4]) {
            let class = size_class(bytes);
            assert!(class >= bytes, "{bytes} -> {class}");
            assert!(
                class <= bytes.max(MIN_CLASS) / 4 * 5 + 4,
                "{bytes} -> {class}"
            );
            assert_eq!(class % 128, 0, "{bytes} -> {class}");
        }
    }
}
