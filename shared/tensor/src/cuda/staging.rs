//! Host-to-device copies through a ring of pinned (page-locked) staging buffers.
//!
//! A copy from pageable memory makes the driver stage it through a small pinned buffer of its
//! own, piece by piece, with the calling thread waiting on each; with that copy (and a
//! single-threaded f32 -> bf16 conversion before it) the 1.3B pipeline's 14.5 GB of page-cached
//! safetensors took 9.4–13.8 s to load on an H100. Uploads above
//! [`DIRECT_MAX`] therefore go through [`SLOTS`] pinned buffers of [`SLOT_BYTES`] each, allocated
//! at a backend's first such upload and freed with it:
//!
//! - the source is cut into buffer-sized pieces ([`pieces`]); all cores (scoped threads) write a piece into
//!   the next buffer, converting on the way when the device's element type differs (f32 -> bf16
//!   rounds to nearest even, as `half` does), and its DMA is queued on the backend's stream;
//! - an event recorded after each DMA marks its buffer busy, and a buffer is refilled only once
//!   that event has completed, so the host fills the next pieces while earlier ones are in flight;
//! - the buffers are write-combined memory: the host only writes them and the copy engine only
//!   reads them, the access pattern that memory type speeds up.
//!
//! Smaller uploads (norm weights, biases, inputs) are copied directly: the CUDA programming guide
//! lists host-to-device copies of 64 KB or less among the operations that return before the copy
//! runs, so they cost no wait on the stream.

use std::ops::Range;
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaEvent, CudaStream, PinnedHostSlice, result as driver, sys};
use half::{bf16, f16};

use super::Wrap;
use crate::{DType, Error, Result};

/// Largest upload copied straight from pageable memory.
pub(super) const DIRECT_MAX: usize = 64 << 10;

/// Bytes per staging buffer: large enough that the per-copy overhead (a few µs) is noise at
/// PCIe rates, small enough that four of them are a modest amount of locked host memory.
pub(super) const SLOT_BYTES: usize = 32 << 20;

/// Staging buffers: while the copy engine drains one, the host fills the others.
const SLOTS: usize = 4;

/// Fewest elements a conversion thread takes: a few hundred KB, enough to amortize starting it.
const TASK_ELEMENTS: usize = 1 << 16;

/// The element ranges `0..elements` is cut into, each at most `per_piece` long (`per_piece` of 0
/// is taken as 1).
pub(super) fn pieces(elements: usize, per_piece: usize) -> impl Iterator<Item = Range<usize>> {
    let per_piece = per_piece.max(1);
    (0..elements.div_ceil(per_piece))
        .map(move |i| i * per_piece..((i + 1) * per_piece).min(elements))
}

/// Writes the little-endian `from` elements of `src` into `dst` as little-endian `to` elements,
/// single-threaded; `dst` has room for exactly as many elements as `src` holds. Converts any type
/// into itself and any type into f32 or bf16 (int8 by value); other pairs are an error.
pub(super) fn convert(from: DType, to: DType, src: &[u8], dst: &mut [u8]) -> Result<()> {
    if from == to {
        dst.copy_from_slice(src);
        return Ok(());
    }
    match to {
        DType::F32 => widen(from, src, dst, f32::to_le_bytes),
        DType::BF16 => widen(from, src, dst, |x| bf16::from_f32(x).to_le_bytes()),
        DType::F16 | DType::I8 => {
            return Err(Error::invalid(
                "upload",
                format!("no host conversion from {from} to {to}"),
            ));
        }
    }
    Ok(())
}

/// [`convert`] on all cores, in at least [`TASK_ELEMENTS`] elements per thread. Scoped threads
/// rather than rayon: the caller holds the ring's lock, and a rayon worker waiting for its own
/// parallel loop runs other tasks of the pool meanwhile, such as another weight's upload, which
/// then waits on that lock forever (a 1.3B DiT, whose blocks load in parallel, hung so on an H100).
pub(super) fn convert_parallel(from: DType, to: DType, src: &[u8], dst: &mut [u8]) -> Result<()> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let elements = src.len() / from.size_in_bytes();
    let per_thread = elements.div_ceil(threads).max(TASK_ELEMENTS);
    let (src_chunk, dst_chunk) = (
        per_thread * from.size_in_bytes(),
        per_thread * to.size_in_bytes(),
    );
    if src.len() <= src_chunk {
        return convert(from, to, src, dst);
    }
    std::thread::scope(|scope| {
        let threads: Vec<_> = src
            .chunks(src_chunk)
            .zip(dst.chunks_mut(dst_chunk))
            .map(|(src, dst)| scope.spawn(move || convert(from, to, src, dst)))
            .collect();
        // The scope joins whatever the first error leaves unjoined.
        threads.into_iter().try_for_each(|t| {
            t.join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    })
}

/// Each `from` element of `src` read as f32 and stored into `dst` by `store`.
fn widen<const D: usize>(from: DType, src: &[u8], dst: &mut [u8], store: impl Fn(f32) -> [u8; D]) {
    match from {
        DType::F32 => map(src, dst, |b| store(f32::from_le_bytes(b))),
        DType::F16 => map(src, dst, |b| store(f16::from_le_bytes(b).to_f32())),
        DType::BF16 => map(src, dst, |b| store(bf16::from_le_bytes(b).to_f32())),
        DType::I8 => map(src, dst, |[b]: [u8; 1]| store(f32::from(b as i8))),
    }
}

/// `dst[i] = f(src[i])` over fixed-size elements.
fn map<const S: usize, const D: usize>(src: &[u8], dst: &mut [u8], f: impl Fn([u8; S]) -> [u8; D]) {
    let (src, _) = src.as_chunks::<S>();
    let (dst, _) = dst.as_chunks_mut::<D>();
    for (s, d) in src.iter().zip(dst) {
        *d = f(*s);
    }
}

/// A pinned host buffer and the event of the last copy into or out of it: the staging ring's
/// buffers, and the asynchronous downloads' ([`super::readback`]).
pub(super) struct Slot {
    pub host: PinnedHostSlice<u8>,
    pub copied: CudaEvent,
}

impl Slot {
    /// A zeroed pinned buffer of `bytes` bytes, allocated with `cuMemHostAlloc` `flags`.
    pub fn new(ctx: &Arc<CudaContext>, bytes: usize, flags: u32) -> Result<Self> {
        // SAFETY: the contents are unset, so they are zeroed below before any reference to them
        // exists.
        let mut host =
            unsafe { ctx.alloc_pinned_with_flags::<u8>(bytes, flags) }.w("pinned buffer")?;
        let ptr = host.as_mut_ptr().w("pinned buffer")?;
        // SAFETY: `ptr` addresses the `bytes` bytes just allocated, which no copy uses yet.
        unsafe { std::ptr::write_bytes(ptr, 0, bytes) };
        let copied = ctx.new_event(None).w("pinned buffer")?;
        Ok(Slot { host, copied })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // The buffer is freed right after this (its field drops next): a copy still reading it
        // must finish first. An error here means the context is lost, and its copies with it.
        let _ = self.copied.synchronize();
    }
}

/// The ring of staging buffers of one backend.
pub(super) struct Staging {
    slots: Vec<Slot>,
    /// The slot the next piece goes through.
    next: usize,
}

impl Staging {
    pub fn new(ctx: &Arc<CudaContext>) -> Result<Self> {
        // Write-combined: see the module doc.
        let slots = (0..SLOTS)
            .map(|_| Slot::new(ctx, SLOT_BYTES, sys::CU_MEMHOSTALLOC_WRITECOMBINED))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { slots, next: 0 })
    }

    /// Queues the copy of `src` (elements of `from`) to the device buffer at `dst` as elements of
    /// `to`, piece by piece on `stream`. Returns once the last piece is queued; `src` may then be
    /// dropped. `src` holds whole elements and `dst` room for them.
    pub fn upload(
        &mut self,
        stream: &CudaStream,
        dst: sys::CUdeviceptr,
        from: DType,
        src: &[u8],
        to: DType,
    ) -> Result<()> {
        let (from_size, to_size) = (from.size_in_bytes(), to.size_in_bytes());
        for piece in pieces(src.len() / from_size, SLOT_BYTES / to_size) {
            let Slot { host, copied } = &mut self.slots[self.next];
            self.next = (self.next + 1) % SLOTS;
            // The buffer's previous copy must be done reading it before it is overwritten (an
            // event never recorded counts as completed).
            copied.synchronize().w("upload")?;
            let staged = &mut host.as_mut_slice().w("upload")?[..piece.len() * to_size];
            convert_parallel(
                from,
                to,
                &src[piece.start * from_size..piece.end * from_size],
                staged,
            )?;
            let offset = (piece.start * to_size) as sys::CUdeviceptr;
            // SAFETY: `dst + offset` addresses `staged.len()` bytes inside the caller's buffer,
            // which the stream orders before any use. The pinned source is read by the DMA after
            // this returns: it is not written again before `copied`, recorded right after the copy
            // on the same stream, has completed (checked above at its next turn), nor freed before
            // (`Drop for Slot`).
            unsafe { driver::memcpy_htod_async(dst + offset, staged, stream.cu_stream()) }
                .w("upload")?;
            if let Err(e) = copied.record(stream) {
                // Without the event the buffer's next turn could overwrite it mid-copy: wait for
                // the copy here instead.
                let _ = stream.synchronize();
                return Err(e).w("upload");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rayon::prelude::*;

    use super::*;
    use crate::{HostData, HostTensor};

    #[test]
    fn pieces_cover_the_range_in_order_within_the_limit() {
        assert_eq!(pieces(0, 4).count(), 0);
        assert!(pieces(4, 4).eq(std::iter::once(0..4)));
        assert_eq!(pieces(10, 4).collect::<Vec<_>>(), [0..4, 4..8, 8..10]);
        assert_eq!(pieces(3, 0).collect::<Vec<_>>(), [0..1, 1..2, 2..3]);
        for (elements, per_piece) in [(1, 1), (97, 7), (1 << 20, 1 << 14), ((1 << 20) + 3, 999)] {
            let mut next = 0;
            for piece in pieces(elements, per_piece) {
                assert_eq!(piece.start, next);
                assert!(!piece.is_empty() && piece.len() <= per_piece);
                next = piece.end;
            }
            assert_eq!(next, elements);
        }
    }

    /// `n` values of varied magnitude and sign, some exactly halfway between two bf16 values.
    fn values(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let x = (i as f32 * 0.618_034).sin() * 10f32.powi(i as i32 % 7 - 3);
                if i % 5 == 0 {
                    f32::from_bits((x.to_bits() & !0xFFFF) | 0x8000)
                } else {
                    x
                }
            })
            .collect()
    }

    fn le_bytes(t: &HostTensor) -> Vec<u8> {
        t.tensor_bytes().bytes().to_vec()
    }

    #[test]
    fn conversion_under_a_lock_shared_by_rayon_tasks_finishes() {
        // The pattern of parallel weight loading: rayon tasks taking the ring's lock in turn and
        // converting under it (rayon's own deadlock needs an idle worker stealing at the wrong
        // moment, which this does not force; the scoped threads rule it out by construction).
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let lock = std::sync::Mutex::new(());
            let src = vec![0x3Fu8; 4 * 16 * TASK_ELEMENTS];
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(8)
                .build()
                .unwrap();
            pool.install(|| {
                (0..256).into_par_iter().for_each(|_| {
                    let _held = lock.lock().unwrap();
                    let mut dst = vec![0u8; src.len() / 2];
                    convert_parallel(DType::F32, DType::BF16, &src, &mut dst).unwrap();
                })
            });
            let _ = done.send(());
        });
        finished
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("conversions under a shared lock deadlocked");
    }

    #[test]
    fn conversion_matches_the_host_tensor_conversion() {
        let n = 3 * TASK_ELEMENTS + 17;
        let f32s = HostTensor::from_f32([n], values(n)).unwrap();
        let sources = [
            f32s.clone(),
            f32s.to_dtype(DType::BF16).unwrap(),
            f32s.to_dtype(DType::F16).unwrap(),
        ];
        for src in &sources {
            for to in [DType::F32, DType::BF16] {
                let want = le_bytes(&src.to_dtype(to).unwrap());
                let mut got = vec![0xAB; want.len()];
                convert_parallel(src.dtype(), to, src.tensor_bytes().bytes(), &mut got).unwrap();
                assert!(got == want, "{} -> {to}", src.dtype());
            }
        }
        let ints = HostTensor::new([3], HostData::I8(vec![-128, 0, 127])).unwrap();
        let mut got = vec![0; 12];
        convert(DType::I8, DType::F32, ints.tensor_bytes().bytes(), &mut got).unwrap();
        assert_eq!(
            got,
            le_bytes(&HostTensor::from_f32([3], vec![-128.0, 0.0, 127.0]).unwrap())
        );
        assert!(convert(DType::F32, DType::F16, &[0; 4], &mut [0; 2]).is_err());
        assert!(convert(DType::BF16, DType::I8, &[0; 2], &mut [0; 1]).is_err());
    }
}
