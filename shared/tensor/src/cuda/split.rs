//! Splitting an attention kernel's last items over the SMs its last round leaves idle; the
//! kernels' side, and why, is kernels/split.cuh.

use cudarc::driver::{DeviceRepr, LaunchConfig};

use super::alloc::DeviceBuffer;
use super::device::Device;
use super::kernels::Kernel;
use crate::Result;

/// The most pieces an item is cut into: each piece costs its key loop's start and ~70 KB of
/// state written and read back, and at 8 the last round already takes an eighth of an item.
const MAX_PIECES: usize = 8;
/// `SPLIT_VALUES`, `SPLIT_THREADS` and `SPLIT_CONSUMERS`: f32 values a piece leaves per consumer
/// thread, threads per consumer warpgroup, and consumer warpgroups an item.
const SPLIT_VALUES: usize = 68;
const SPLIT_THREADS: usize = 128;
const SPLIT_CONSUMERS: usize = 2;

/// Which items of a kernel run whole (`0..whole`) and into how many pieces each of the rest is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Split {
    pub items: usize,
    pub whole: usize,
    pub pieces: usize,
}

impl Split {
    /// Every item whole.
    pub fn none(items: usize) -> Split {
        Split {
            items,
            whole: items,
            pieces: 1,
        }
    }

    /// `items` items of `blocks` key blocks each, run one an SM at a time on `sms` SMs: the
    /// `items mod sms` of the last round cut into as many pieces as the idle SMs take at once
    /// (none when that is one).
    pub fn new(items: usize, blocks: usize, sms: usize) -> Split {
        let tail = items % sms.max(1);
        if tail == 0 {
            return Split::none(items);
        }
        let pieces = (sms / tail).min(MAX_PIECES).min(blocks);
        if pieces < 2 {
            return Split::none(items);
        }
        Split {
            items,
            whole: items - tail,
            pieces,
        }
    }

    /// Items cut into pieces.
    pub fn split_items(&self) -> usize {
        self.items - self.whole
    }

    /// The kernel's units of work: whole items and pieces.
    pub fn units(&self) -> usize {
        self.whole + self.split_items() * self.pieces
    }

    /// Bytes of the pieces' state.
    pub fn state_bytes(&self) -> usize {
        self.split_items() * self.pieces * SPLIT_CONSUMERS * SPLIT_VALUES * SPLIT_THREADS * 4
    }

    /// The pieces' workspace, or none when no item is split.
    pub fn workspace(&self, dev: &Device) -> Result<Option<DeviceBuffer>> {
        match self.state_bytes() {
            0 => Ok(None),
            bytes => dev.pool.alloc(bytes).map(Some),
        }
    }

    /// `merge` over the split items, after the kernel that left their pieces (the same `args`):
    /// a CTA an item, a thread in the place of each consumer thread.
    pub fn merge<A: DeviceRepr>(&self, dev: &Device, merge: Kernel, args: &A) -> Result<()> {
        if self.split_items() == 0 {
            return Ok(());
        }
        let cfg = LaunchConfig {
            grid_dim: (self.split_items() as u32, 1, 1),
            block_dim: ((SPLIT_CONSUMERS * SPLIT_THREADS) as u32, 1, 1),
            shared_mem_bytes: 0,
        };
        dev.launch(merge, cfg, args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_the_last_rounds_items_for_the_idle_sms() {
        // 1.3B 480p: 12 heads × 256 pairs of query blocks on an H100's 132 SMs.
        let s = Split::new(3072, 256, 132);
        assert_eq!((s.whole, s.pieces), (3036, 3));
        assert_eq!(s.units(), 3036 + 108);
        assert_eq!(s.whole % 132, 0);
        assert!(s.split_items() * s.pieces <= 132);
        // 14B 720p: 40 × 591 items, 12 left over: eighths.
        let s = Split::new(23640, 591, 132);
        assert_eq!((s.whole, s.pieces), (23628, 8));
        // SageSLA 0.1 at 1.3B: 26 key blocks an item, the same cut.
        assert_eq!(Split::new(3072, 26, 132).pieces, 3);
    }

    #[test]
    fn leaves_items_whole_when_no_round_has_idle_sms_to_fill() {
        assert_eq!(Split::new(264, 256, 132), Split::none(264));
        // 100 items left over: two pieces each would need a second round of halves.
        assert_eq!(Split::new(232, 256, 132), Split::none(232));
        assert_eq!(Split::new(0, 256, 132), Split::none(0));
        assert_eq!(Split::new(5, 256, 0), Split::none(5));
    }

    #[test]
    fn a_piece_never_goes_without_key_blocks() {
        for blocks in 1..20 {
            for items in 1..300 {
                let s = Split::new(items, blocks, 132);
                assert!(s.pieces <= blocks.max(1));
                assert!(s.split_items() * s.pieces <= 132);
                assert!(s.units() >= s.items);
                assert_eq!(s.state_bytes() == 0, s.pieces == 1);
            }
        }
        // Few items: split over the SMs as far as MAX_PIECES and the key blocks go.
        assert_eq!(Split::new(6, 256, 132).pieces, 8);
        assert_eq!(Split::new(6, 3, 132).pieces, 3);
        assert_eq!(Split::new(1, 1, 132), Split::none(1));
    }
}
