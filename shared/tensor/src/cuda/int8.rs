//! Launchers for TurboDiffusion's W8A8 INT8 linears: the 128×128 block quantizer
//! (`kernels/quant.cu`) and the block-scaled GEMM (`kernels/int8_gemm.cu`); the format and the
//! host reference are [`crate::int8`]'s.

use std::sync::Arc;

use cudarc::driver::{DeviceRepr, LaunchConfig};
use rayon::prelude::*;

use super::alloc::DeviceBuffer;
use super::device::Device;
use super::quant::{Lifetime, download_parts};
use super::{CudaTensor, dt_code, kernels};
use crate::int8::Int8Blocks;
use crate::{DType, Error, QUANT_BLOCK, Result};

/// Bytes of one tile image: 128 rows of 128 int8.
const TILE_BYTES: usize = QUANT_BLOCK * QUANT_BLOCK;

/// The portable GEMM's CTA: 256 threads, three pipeline stages of a tile image of each operand.
const MMA_THREADS: u32 = 256;
const MMA_SMEM: u32 = 3 * 2 * TILE_BYTES as u32;

/// The sm_90a GEMM's CTA: two consumer warpgroups and a producer, six stages of both operands'
/// tile images (and 1 KB to align them).
const SM90_THREADS: u32 = 384;
const SM90_SMEM: u32 = 6 * 2 * TILE_BYTES as u32 + 1024;

/// Byte offset of element `(row, col)` of a `[_, cols]` matrix in its tile images: tile (row / 128,
/// col / 128) of `cols / 128` a tile row, 16 KB each; in a tile, row r's 16-byte chunk c at
/// r·128 + (c ^ (r % 8))·16, the shared-memory image both GEMM kernels read (kernels/int8_gemm.cu).
fn tile_offset(row: usize, col: usize, cols: usize) -> usize {
    let (tile_row, r) = (row / QUANT_BLOCK, row % QUANT_BLOCK);
    let (tile_col, c) = (col / QUANT_BLOCK, col % QUANT_BLOCK);
    (tile_row * (cols / QUANT_BLOCK) + tile_col) * TILE_BYTES
        + r * QUANT_BLOCK
        + ((c / 16) ^ (r % 8)) * 16
        + c % 16
}

/// Bytes of the tile images of a `[rows, cols]` matrix (rows rounded up to a whole tile).
fn tiled_len(rows: usize, cols: usize) -> usize {
    rows.div_ceil(QUANT_BLOCK) * QUANT_BLOCK * cols
}

/// Row-major `[rows, cols]` int8 (`cols` a multiple of 128) as tile images, rows past the end zero:
/// the host reference of the `int8_tiles` kernel.
#[cfg(test)]
fn to_tiles(values: &[i8], rows: usize, cols: usize) -> Vec<i8> {
    let mut tiles = vec![0i8; tiled_len(rows, cols)];
    let per_row = cols / QUANT_BLOCK;
    tiles
        .par_chunks_mut(TILE_BYTES)
        .enumerate()
        .for_each(|(t, tile)| {
            let (row0, col0) = (t / per_row * QUANT_BLOCK, t % per_row * QUANT_BLOCK);
            for row in row0..rows.min(row0 + QUANT_BLOCK) {
                for c in (0..QUANT_BLOCK).step_by(16) {
                    let at = tile_offset(row, col0 + c, cols) - t * TILE_BYTES;
                    let from = row * cols + col0 + c;
                    tile[at..at + 16].copy_from_slice(&values[from..from + 16]);
                }
            }
        });
    tiles
}

/// The row-major `[rows, cols]` matrix of tile images.
fn from_tiles(tiles: &[i8], rows: usize, cols: usize) -> Vec<i8> {
    let mut values = vec![0i8; rows * cols];
    values
        .par_chunks_mut(cols.max(1))
        .enumerate()
        .for_each(|(row, out)| {
            for c in (0..cols).step_by(16) {
                let at = tile_offset(row, c, cols);
                out[c..c + 16].copy_from_slice(&tiles[at..at + 16]);
            }
        });
    values
}

/// A `[rows, cols]` matrix on the device in the block format of [`crate::int8`]: int8 values and
/// f32 scales `[ceil(rows/128), cols/128]`. Cheap to clone (the buffers are shared).
#[derive(Clone)]
pub struct CudaInt8Blocks {
    pub(super) rows: usize,
    pub(super) cols: usize,
    /// int8 tile images ([`tile_offset`]), rows past `rows` zero.
    pub(super) values: Arc<DeviceBuffer>,
    /// f32 `[ceil(rows/128), cols/128]`.
    pub(super) scales: CudaTensor,
}

impl std::fmt::Debug for CudaInt8Blocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaInt8Blocks[{}, {}]", self.rows, self.cols)
    }
}

impl CudaInt8Blocks {
    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }
}

/// One 256-thread CTA per 128×128 tile of a `[rows, cols]` matrix, as `quantize_int8_blocks` and
/// `int8_tiles` are launched.
fn per_tile(rows: u32, cols: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (cols / 128, rows.div_ceil(128), 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Buffers for a `[rows, cols]` block matrix (contents unspecified).
fn alloc(dev: &Device, rows: usize, cols: usize, lifetime: Lifetime) -> Result<CudaInt8Blocks> {
    let (bytes, tiles) = (
        tiled_len(rows, cols),
        rows.div_ceil(QUANT_BLOCK) * (cols / QUANT_BLOCK),
    );
    let (values, scales) = lifetime.alloc(dev, bytes, tiles)?;
    Ok(CudaInt8Blocks {
        rows,
        cols,
        values: Arc::new(values),
        scales: CudaTensor::whole(
            &[rows.div_ceil(QUANT_BLOCK), cols / QUANT_BLOCK],
            DType::F32,
            scales,
        ),
    })
}

#[repr(C)]
struct Int8TilesArgs {
    out: u64,
    values: u64,
    rows: u32,
    cols: u32,
}

// SAFETY: `#[repr(C)]` mirror of the kernel's parameter struct (pointers as u64, `unsigned` as
// u32).
unsafe impl DeviceRepr for Int8TilesArgs {}

/// A `-quant` checkpoint's int8 weight `[rows, cols]` (row-major) and its scales, uploaded as they
/// are and rewritten as tile images on the device (`int8_tiles`).
pub(super) fn upload(
    dev: &Device,
    [rows, cols]: [usize; 2],
    values: &[i8],
    scales: &[f32],
) -> Result<CudaInt8Blocks> {
    let tiles = rows.div_ceil(QUANT_BLOCK) * (cols / QUANT_BLOCK);
    if values.len() != rows * cols || scales.len() != tiles || !cols.is_multiple_of(QUANT_BLOCK) {
        return Err(Error::invalid(
            "upload_int8",
            format!(
                "[{rows}, {cols}] (in a multiple of 128) needs {} values and {tiles} scales, got \
                 {} and {}",
                rows * cols,
                values.len(),
                scales.len()
            ),
        ));
    }
    let (Ok(rows32), Ok(cols32)) = (u32::try_from(rows), u32::try_from(cols)) else {
        return Err(Error::invalid(
            "upload_int8",
            format!("[{rows}, {cols}] has 2^32 rows or columns or more"),
        ));
    };
    let q = alloc(dev, rows, cols, Lifetime::Weight)?;
    if rows > 0 && cols > 0 {
        // Freed into the pool once the kernel is queued: the stream orders its reuse after it.
        let row_major = dev.pool.alloc(rows * cols)?;
        dev.upload(
            row_major.ptr(),
            DType::I8,
            bytemuck::cast_slice(values),
            DType::I8,
        )?;
        dev.launch(
            kernels::INT8_TILES,
            per_tile(rows32, cols32),
            &Int8TilesArgs {
                out: q.values.ptr(),
                values: row_major.ptr(),
                rows: rows32,
                cols: cols32,
            },
        )?;
    }
    // `alloc` sized the scales for exactly this length (checked above).
    dev.upload(
        q.scales.ptr(),
        DType::F32,
        bytemuck::cast_slice(scales),
        DType::F32,
    )?;
    Ok(q)
}

#[repr(C)]
struct QuantizeInt8Args {
    out: u64,
    scales: u64,
    x: u64,
    rows: u32,
    cols: u32,
    x_dt: i32,
}

// SAFETY: `#[repr(C)]` mirror of the kernel's parameter struct (device pointers as u64,
// `unsigned` as u32, `int` as i32).
unsafe impl DeviceRepr for QuantizeInt8Args {}

/// `x: [.., K]` (f32 or bf16, K a multiple of 128) quantized in 128×128 tiles of its rows (tokens
/// or output channels) and last dimension.
pub(super) fn quantize(dev: &Device, x: &CudaTensor, lifetime: Lifetime) -> Result<CudaInt8Blocks> {
    let cols = x.cols();
    let rows = x.numel().checked_div(cols).unwrap_or(0);
    let (Ok(rows32), Ok(cols32)) = (u32::try_from(rows), u32::try_from(cols)) else {
        return Err(Error::shape(
            "quantize_int8",
            "expected [.., K] with fewer than 2^32 rows and columns",
            x.shape(),
        ));
    };
    if x.shape().is_empty() || !cols.is_multiple_of(QUANT_BLOCK) {
        return Err(Error::shape(
            "quantize_int8",
            "expected [.., K] with K a multiple of 128 (TurboDiffusion's 128x128 tiles)",
            x.shape(),
        ));
    }
    let q = alloc(dev, rows, cols, lifetime)?;
    if rows > 0 {
        dev.launch(
            kernels::QUANTIZE_INT8_BLOCKS,
            per_tile(rows32, cols32),
            &QuantizeInt8Args {
                out: q.values.ptr(),
                scales: q.scales.ptr(),
                x: x.ptr(),
                rows: rows32,
                cols: cols32,
                x_dt: dt_code(x.dtype()),
            },
        )?;
    }
    Ok(q)
}

/// Why the GEMM cannot take a weight `[n, k]`, if it cannot: upstream's `can_implement`
/// (K % 128, 16-byte bf16 output rows), which upstream fails silently with zeros.
pub(super) fn unsupported(n: usize, k: usize) -> Option<String> {
    (!k.is_multiple_of(QUANT_BLOCK) || !n.is_multiple_of(8) || k == 0).then(|| {
        format!(
            "an INT8 W8A8 layer needs in_features a positive multiple of 128 (the 128x128 scale \
             tiles) and out_features a multiple of 8 (16-byte bf16 output rows), got \
             [out {n}, in {k}]"
        )
    })
}

#[repr(C)]
struct Int8GemmArgs {
    out: u64,
    x: u64,
    w: u64,
    x_scales: u64,
    w_scales: u64,
    bias: u64,
    residual: u64,
    gate: u64,
    m: u32,
    n: u32,
    k: u32,
}

// SAFETY: `#[repr(C)]` mirror of the kernel's parameter struct (pointers as u64, `unsigned` as
// u32; the three u32 fields end the struct, whose C size is padded to 8 like this one's).
unsafe impl DeviceRepr for Int8GemmArgs {}

/// Which GEMM kernel this GPU runs: the wgmma one on sm_90a unless `portable`, the mma.sync one on
/// any other.
pub(super) fn gemm_kernel(dev: &Device, portable: bool) -> kernels::Kernel {
    if dev.info.arch == "sm_90a" && !portable {
        kernels::INT8_GEMM_SM90
    } else {
        kernels::INT8_GEMM
    }
}

/// What an INT8 GEMM adds its output into, in its epilogue: `residual + out·gate`, `residual` bf16
/// `[x.rows, w.rows]` (any leading shape), `gate` f32 `[w.rows]` or none (1).
#[derive(Clone, Copy)]
pub(super) struct Residual<'a> {
    pub residual: &'a CudaTensor,
    pub gate: Option<&'a CudaTensor>,
}

/// `x · wᵀ (+ bias)` -> bf16 `[x.rows, w.rows]` for block matrices with equal `cols`, or with
/// `add` that product (times the gate) plus the residual, in the residual's shape; `bias`, when
/// given, is bf16 `[w.rows]`; on [`gemm_kernel`]'s kernel.
pub(super) fn gemm(
    dev: &Device,
    x: &CudaInt8Blocks,
    w: &CudaInt8Blocks,
    bias: Option<&CudaTensor>,
    add: Option<Residual>,
    portable: bool,
) -> Result<CudaTensor> {
    if let Some(why) = unsupported(w.rows, w.cols) {
        return Err(Error::invalid("linear_int8", why));
    }
    if x.cols != w.cols {
        return Err(Error::shape(
            "linear_int8",
            format!("input features must be {}", w.cols),
            &[x.rows, x.cols],
        ));
    }
    if let Some(b) = bias
        && (b.dtype() != DType::BF16 || b.numel() != w.rows)
    {
        return Err(Error::invalid(
            "linear_int8",
            format!(
                "bias must be bf16 [{}], got {} {:?}",
                w.rows,
                b.dtype(),
                b.shape()
            ),
        ));
    }
    let (Ok(m), Ok(n), Ok(k)) = (
        u32::try_from(x.rows),
        u32::try_from(w.rows),
        u32::try_from(w.cols),
    ) else {
        return Err(Error::shape(
            "linear_int8",
            "expected fewer than 2^32 rows and features",
            &[x.rows, x.cols],
        ));
    };
    if let Some(Residual { residual, gate }) = add {
        if residual.dtype() != DType::BF16
            || residual.cols() != w.rows
            || residual.numel() != x.rows * w.rows
        {
            return Err(Error::invalid(
                "linear_int8",
                format!(
                    "the residual must be bf16 [{}, {}], got {} {:?}",
                    x.rows,
                    w.rows,
                    residual.dtype(),
                    residual.shape()
                ),
            ));
        }
        if let Some(g) = gate
            && (g.dtype() != DType::F32 || g.numel() != w.rows)
        {
            return Err(Error::invalid(
                "linear_int8",
                format!(
                    "the gate must be f32 [{}], got {} {:?}",
                    w.rows,
                    g.dtype(),
                    g.shape()
                ),
            ));
        }
    }
    let shape = add.map_or_else(|| vec![x.rows, w.rows], |r| r.residual.shape().to_vec());
    let out = CudaTensor::alloc_as(dev, &shape, DType::BF16)?;
    let tiles = u64::from(m.div_ceil(128)) * u64::from(n.div_ceil(128));
    if tiles == 0 {
        return Ok(out);
    }
    let Ok(tiles) = u32::try_from(tiles) else {
        return Err(Error::shape(
            "linear_int8",
            "expected fewer than 2^32 output tiles",
            &[x.rows, w.rows],
        ));
    };
    let args = Int8GemmArgs {
        out: out.ptr(),
        x: x.values.ptr(),
        w: w.values.ptr(),
        x_scales: x.scales.ptr(),
        w_scales: w.scales.ptr(),
        bias: bias.map_or(0, CudaTensor::ptr),
        residual: add.map_or(0, |r| r.residual.ptr()),
        gate: add.and_then(|r| r.gate).map_or(0, CudaTensor::ptr),
        m,
        n,
        k,
    };
    // The wgmma kernel is persistent: one CTA an SM walks the tiles.
    let kernel = gemm_kernel(dev, portable);
    let (grid, threads, smem) = if kernel == kernels::INT8_GEMM_SM90 {
        let ctas = dev.persistent_ctas(tiles as usize, 1) as u32;
        (ctas, SM90_THREADS, SM90_SMEM)
    } else {
        (tiles, MMA_THREADS, MMA_SMEM)
    };
    dev.launch(
        kernel,
        LaunchConfig {
            grid_dim: (grid, 1, 1),
            block_dim: (threads, 1, 1),
            shared_mem_bytes: smem,
        },
        &args,
    )?;
    Ok(out)
}

/// `q` copied back to the host.
pub(super) fn download(dev: &Device, q: &CudaInt8Blocks) -> Result<Int8Blocks> {
    let (tiles, scales) = download_parts::<i8>(
        dev,
        "download_int8",
        &q.values,
        tiled_len(q.rows, q.cols),
        &q.scales,
    )?;
    Ok(Int8Blocks {
        rows: q.rows,
        cols: q.cols,
        values: from_tiles(&tiles, q.rows, q.cols),
        scales,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[rows, cols]` with every element distinct modulo 251 (a prime, so no period of 16 or 128).
    fn ramp(rows: usize, cols: usize) -> Vec<i8> {
        (0..rows * cols).map(|i| (i % 251) as u8 as i8).collect()
    }

    #[test]
    fn tile_images_round_trip_with_zero_rows_past_the_end() {
        for (rows, cols) in [(1, 128), (130, 256), (300, 384), (128, 1536)] {
            let values = ramp(rows, cols);
            let tiles = to_tiles(&values, rows, cols);
            assert_eq!(tiles.len(), rows.div_ceil(128) * 128 * cols);
            assert_eq!(from_tiles(&tiles, rows, cols), values);
            let written: usize = tiles.iter().filter(|&&v| v != 0).count();
            let nonzero = values.iter().filter(|&&v| v != 0).count();
            assert_eq!(
                written, nonzero,
                "[{rows}, {cols}]: only the matrix is written"
            );
        }
    }

    #[test]
    fn tile_offsets_follow_the_kernels_swizzle() {
        let cols = 384;
        // Row 0 is unswizzled; row 1's chunk 0 sits in slot 1, its chunk 1 in slot 0.
        assert_eq!(tile_offset(0, 17, cols), 17);
        assert_eq!(tile_offset(1, 0, cols), 128 + 16);
        assert_eq!(tile_offset(1, 16, cols), 128);
        assert_eq!(tile_offset(9, 5, cols), 9 * 128 + 16 + 5);
        // Column block 1 of row tile 0 is the next tile; row tile 1 starts after 3 tiles.
        assert_eq!(tile_offset(0, 128, cols), TILE_BYTES);
        assert_eq!(tile_offset(128, 0, cols), 3 * TILE_BYTES);
        // Every element of a tile has its own byte.
        let mut seen = vec![false; TILE_BYTES];
        for r in 0..128 {
            for c in 0..128 {
                let at = tile_offset(r, c, cols);
                assert!(!seen[at]);
                seen[at] = true;
            }
        }
    }
}
