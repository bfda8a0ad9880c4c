//! Asynchronous downloads ([`Backend::download_async`](crate::Backend::download_async)) through
//! reused pinned buffers.
//!
//! [`Backend::download`](crate::Backend::download) copies into pageable memory and synchronizes
//! the stream, so the GPU idles from then until the caller queues more work. An asynchronous
//! download instead queues its copy into a pinned buffer on the backend's stream, records an
//! event behind it and returns; waiting synchronizes that event only, then copies the bytes into
//! a [`HostTensor`]. Work queued meanwhile runs on the GPU while the host waits and hands the
//! data on.
//!
//! Pinning memory is slow (the driver locks and maps every page), so buffers go back to a small
//! [`FreeList`] per backend when their download is done and serve later downloads of about the
//! same size. They are ordinary cached memory, not the write-combined kind of the staging ring:
//! the host reads them, which write-combined memory makes very slow.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use cudarc::driver::result as driver;

use super::CudaTensor;
use super::Wrap;
use super::device::Device;
use super::staging::Slot;
use crate::download::QueuedDownload;
use crate::{HostTensor, PendingDownload, Result};

/// Idle buffers kept per backend. The overlapped VAE decode has two downloads in flight at once
/// (the chunk being waited for and the one queued behind it) and two chunk sizes (one frame
/// first, then four), so it settles on three buffers.
const KEEP: usize = 4;

/// Idle buffers kept for reuse, each with its size in bytes, oldest returned first.
pub(super) struct FreeList<T> {
    idle: VecDeque<(usize, T)>,
    keep: usize,
}

impl<T> FreeList<T> {
    pub fn new(keep: usize) -> Self {
        Self {
            idle: VecDeque::new(),
            keep,
        }
    }

    /// The smallest idle buffer of `bytes..=2·bytes` bytes (the latest returned among equals).
    /// The upper bound keeps a small download from taking a large buffer that the next large one
    /// would then have to allocate again.
    pub fn take(&mut self, bytes: usize) -> Option<T> {
        let fits = bytes..=bytes.saturating_mul(2);
        let (index, _) = self
            .idle
            .iter()
            .enumerate()
            .filter(|(_, (size, _))| fits.contains(size))
            .min_by_key(|&(i, &(size, _))| (size, std::cmp::Reverse(i)))?;
        self.idle.remove(index).map(|(_, buf)| buf)
    }

    /// Keeps `buf` of `bytes` bytes. Past the limit the buffer idle longest comes back, for the
    /// caller to free outside its lock (freeing pinned memory is slow too).
    pub fn give(&mut self, bytes: usize, buf: T) -> Option<T> {
        self.idle.push_back((bytes, buf));
        if self.idle.len() > self.keep {
            self.idle.pop_front().map(|(_, old)| old)
        } else {
            None
        }
    }
}

/// The pinned buffers of one backend's downloads.
pub(super) struct Readback {
    free: Mutex<FreeList<Slot>>,
}

impl Readback {
    pub fn new() -> Self {
        Self {
            free: Mutex::new(FreeList::new(KEEP)),
        }
    }

    fn free(&self) -> std::sync::MutexGuard<'_, FreeList<Slot>> {
        // Every update is one push or remove: the list stays consistent across a panic.
        self.free.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A buffer of at least `bytes` bytes whose last copy has completed.
    fn take(&self, dev: &Device, bytes: usize) -> Result<Slot> {
        let reused = self.free().take(bytes);
        match reused {
            Some(slot) => Ok(slot),
            None => Slot::new(dev.stream.context(), bytes, 0),
        }
    }

    /// Returns a buffer whose last copy has completed.
    fn give(&self, slot: Slot) {
        let bytes = slot.host.num_bytes();
        let evicted = self.free().give(bytes, slot);
        // Freed here, after the lock is released.
        drop(evicted);
    }
}

/// Queues the copy of the f32 tensor `t` into a pinned buffer behind the work on the stream.
pub(super) fn queue(dev: &Arc<Device>, t: CudaTensor) -> Result<PendingDownload> {
    let bytes = t.numel() * std::mem::size_of::<f32>();
    if bytes == 0 {
        return Ok(PendingDownload::ready(HostTensor::from_f32(
            t.shape.clone(),
            Vec::new(),
        )?));
    }
    dev.stream.context().bind_to_thread().w("download")?;
    let mut slot = dev.readback.take(dev, bytes)?;
    let dst = &mut slot.host.as_mut_slice().w("download")?[..bytes];
    // SAFETY: `t` holds `bytes` bytes and the copy is queued behind the work that writes them.
    // The copy writes `dst` after this returns: the buffer is neither read nor handed out again
    // before `copied`, recorded right behind the copy, has completed (`InFlight::wait`, `Drop for
    // InFlight`), nor freed before (`Drop for Slot`).
    unsafe { driver::memcpy_dtoh_async(dst, t.ptr(), dev.stream.cu_stream()) }.w("download")?;
    if let Err(e) = slot.copied.record(&dev.stream) {
        // Without the event nothing would tell when the buffer is free again: wait here instead.
        let synced = dev.stream.synchronize();
        if synced.is_ok() {
            dev.readback.give(slot);
        }
        return Err(e).w("download");
    }
    Ok(PendingDownload::queued(Box::new(InFlight {
        source: t,
        slot: Some(slot),
        dev: Arc::clone(dev),
    })))
}

/// A download in flight.
struct InFlight {
    /// The tensor being copied, whose shape the result takes. Owned until the copy is done: its
    /// buffer, often a temporary f32 conversion, stays out of the pool meanwhile instead of
    /// relying on stream order alone to keep its next user from overwriting it.
    source: CudaTensor,
    /// `None` once waited for.
    slot: Option<Slot>,
    /// Holds the free list the buffer returns to.
    dev: Arc<Device>,
}

impl QueuedDownload for InFlight {
    fn wait(mut self: Box<Self>) -> Result<HostTensor> {
        let slot = self
            .slot
            .take()
            .expect("only `wait` and `drop` take the slot");
        // On failure the slot is freed, not reused: `Drop for Slot` waits for the event again.
        slot.copied.synchronize().w("download")?;
        let bytes = self.source.numel() * std::mem::size_of::<f32>();
        // Pinned allocations are page-aligned, so the bytes cast to f32 in place.
        let data =
            bytemuck::cast_slice::<u8, f32>(&slot.host.as_slice().w("download")?[..bytes]).to_vec();
        self.dev.readback.give(slot);
        HostTensor::from_f32(self.source.shape.clone(), data)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // Dropped unwaited: the buffer goes back to the list only once the copy is done with it.
        // An error here means the context is lost, and the copy with it; the buffer is freed.
        if let Some(slot) = self.slot.take()
            && slot.copied.synchronize().is_ok()
        {
            self.dev.readback.give(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_prefers_the_smallest_fitting_buffer_within_twice_the_request() {
        let mut list = FreeList::new(8);
        for (bytes, name) in [(100, "a"), (400, "b"), (150, "c"), (150, "d"), (1000, "e")] {
            assert!(list.give(bytes, name).is_none());
        }
        assert_eq!(
            list.take(120),
            Some("d"),
            "smallest fit, latest returned among equals"
        );
        assert_eq!(list.take(120), Some("c"));
        assert_eq!(
            list.take(120),
            None,
            "100 is too small, 400 more than twice 120"
        );
        assert_eq!(list.take(100), Some("a"), "an exact fit");
        assert_eq!(list.take(500), Some("e"));
        assert_eq!(list.take(200), Some("b"));
        assert_eq!(list.take(1), None, "empty");
    }

    #[test]
    fn give_past_the_limit_returns_the_buffer_idle_longest() {
        let mut list = FreeList::new(2);
        assert_eq!(list.give(10, 1), None);
        assert_eq!(list.give(20, 2), None);
        assert_eq!(list.give(30, 3), Some(1));
        assert_eq!(list.take(6), None, "the evicted buffer is gone");
        assert_eq!(list.give(10, 4), Some(2));
        assert_eq!(list.take(15), Some(3));
        assert_eq!(list.take(10), Some(4));
    }

    #[test]
    fn the_overlapped_decode_settles_on_three_buffers() {
        // One chunk of one frame, then chunks of four; each download is queued before the one
        // before it is waited for, and waiting returns the buffer.
        let (first, later) = (3 * 64, 4 * 3 * 64);
        let mut list = FreeList::new(KEEP);
        let mut allocated = 0;
        let mut in_flight: Option<(usize, usize)> = None;
        for bytes in std::iter::once(first).chain(std::iter::repeat_n(later, 20)) {
            let id = list.take(bytes).unwrap_or_else(|| {
                allocated += 1;
                allocated
            });
            if let Some((size, done)) = in_flight.replace((bytes, id)) {
                assert!(list.give(size, done).is_none());
            }
        }
        assert_eq!(allocated, 3);
    }
}
