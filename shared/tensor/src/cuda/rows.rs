//! How the row kernels of `kernels/rows.cuh` (the DiT's norms, the FP8 quantizer) lay a
//! `[rows, cols]` matrix over blocks: whole rows in registers, `warps_per_row` warps a row.

use cudarc::driver::LaunchConfig;

use super::CudaTensor;
use super::device::Device;
use super::kernels::Kernel;
use crate::Result;

/// Columns one warp holds in registers (`8 · ROW_CHUNKS · 32` in the kernels).
const COLS_PER_WARP: usize = 1024;
/// Warps of a block when rows are narrow (several rows per block).
const BLOCK_WARPS: u32 = 8;
/// A block's warp limit (1024 threads), hence the widest row.
const MAX_WARPS: usize = 32;

/// How a row kernel of `kernels/rows.cuh` spreads `[rows, cols]` over blocks: the warps that hold
/// one row and the rows a block takes.
#[derive(Debug, Clone, Copy)]
pub(super) struct RowLayout {
    pub rows: u32,
    pub cols: u32,
    pub warps_per_row: u32,
    pub rows_per_block: u32,
}

impl RowLayout {
    /// The layout of `x: [.., cols]`'s rows, or why a row kernel cannot take them (`cols` not a
    /// multiple of 8, wider than one block holds, or a pointer not 16-byte aligned).
    pub fn of(x: &CudaTensor, pointers: &[u64]) -> std::result::Result<Self, &'static str> {
        let cols = x.cols();
        let rows = x.numel().checked_div(cols).unwrap_or(0);
        let (Ok(rows), Ok(cols32)) = (u32::try_from(rows), u32::try_from(cols)) else {
            return Err("expected [.., K] with fewer than 2^32 rows and columns");
        };
        if x.shape().is_empty() || !cols.is_multiple_of(8) {
            return Err("expected [.., K] with K a multiple of 8 (the kernel's 8-element loads)");
        }
        let warps = cols.div_ceil(COLS_PER_WARP).max(1);
        if warps > MAX_WARPS {
            return Err("expected [.., K] with K at most 32768 (one block holds a row)");
        }
        if pointers.iter().any(|p| p % 16 != 0) {
            return Err("expected 16-byte aligned rows");
        }
        let warps_per_row = warps as u32;
        Ok(Self {
            rows,
            cols: cols32,
            warps_per_row,
            rows_per_block: (BLOCK_WARPS / warps_per_row).max(1),
        })
    }

    /// This layout respread for `kernel`: of the warps a row from the fewest that fit it to twice
    /// that, and of the rows a block from one to what `BLOCK_WARPS` allows, the spread that keeps
    /// the most rows resident on an SM (the kernel's registers decide), the first in that order
    /// on a tie, so single-row blocks where they hold as many rows: such a block waits at its
    /// reductions' barriers for no other row. Measured on an H100
    /// (bench/results/2026-11-27-sage-row-sums.md): every row kernel of a 1.3B 480p forward 3-12 %
    /// faster, and at 14B 720p the residual + norm passes 195-197 -> 190-191 ms a forward (then
    /// at eight chunks a lane: a 5120-wide row on three warps kept 5 rows an SM alone, 4 as
    /// pairs; more warps a row at the same residency did not pay, the FFN's 13824-wide rows
    /// quantizing slower on nine or ten warps than on seven). At four chunks a lane
    /// (bench/results/2026-11-29-vae-phases.md, H200) the norms of a 14B 720p forward take 163.0
    /// -> 146.5 ms, of a 1.3B one 15.9 -> 14.5 ms.
    pub fn fit(self, dev: &Device, kernel: Kernel) -> Result<Self> {
        let (warps_per_row, rows_per_block) =
            dev.row_spread(kernel, self.cols, || self.search(dev, kernel))?;
        Ok(Self {
            warps_per_row,
            rows_per_block,
            ..self
        })
    }

    /// `fit`'s search, asked of the driver's occupancy calculator once per kernel and row width.
    fn search(&self, dev: &Device, kernel: Kernel) -> Result<(u32, u32)> {
        let mut best = (0, (self.warps_per_row, self.rows_per_block));
        for warps_per_row in self.warps_per_row..=(2 * self.warps_per_row).min(MAX_WARPS as u32) {
            for rows_per_block in 1..=(BLOCK_WARPS / warps_per_row).max(1) {
                let resident = rows_per_block
                    * dev.resident_blocks(kernel, 32 * warps_per_row * rows_per_block)?;
                if resident > best.0 {
                    best = (resident, (warps_per_row, rows_per_block));
                }
            }
        }
        tracing::trace!(
            kernel = kernel.symbol,
            cols = self.cols,
            warps_per_row = best.1.0,
            rows_per_block = best.1.1,
            resident_rows = best.0,
            "row layout"
        );
        Ok(best.1)
    }

    pub fn launch(&self) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (self.rows.div_ceil(self.rows_per_block), 1, 1),
            block_dim: (32 * self.warps_per_row * self.rows_per_block, 1, 1),
            shared_mem_bytes: 0,
        }
    }
}
