//! Launcher for `kernels/quant.cu`: matrices quantized per row to FP8 e4m3, the operands of the
//! FP8 linear layers.

use std::sync::Arc;

use cudarc::driver::{DeviceRepr, LaunchConfig};

use super::alloc::DeviceBuffer;
use super::device::Device;
use super::{CudaTensor, Wrap, dt_code, kernels};
use crate::fp8::Fp8Rows;
use crate::{DType, Error, Result};

/// Columns one warp holds in registers (`8 * CHUNKS * 32` in the kernel).
const COLS_PER_WARP: usize = 2048;
/// Warps of a block when rows are narrow (several rows per block).
const BLOCK_WARPS: u32 = 8;
/// A block's warp limit (1024 threads), hence the widest row.
const MAX_WARPS: usize = 32;

/// A `[rows, cols]` matrix on the device quantized per row (the layout of [`crate::fp8`]):
/// `x[r, c] ≈ e4m3(values[r, c]) · scales[r]`. Cheap to clone (the buffers are shared).
#[derive(Clone)]
pub struct CudaFp8Rows {
    pub(super) rows: usize,
    pub(super) cols: usize,
    /// `rows·cols` e4m3 bytes, row-major.
    pub(super) values: Arc<DeviceBuffer>,
    /// f32 `[rows]`.
    pub(super) scales: CudaTensor,
}

impl std::fmt::Debug for CudaFp8Rows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaFp8Rows[{}, {}]", self.rows, self.cols)
    }
}

impl CudaFp8Rows {
    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }
}

/// How long a quantized matrix lives, which decides its allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lifetime {
    /// A weight, kept as long as the model: exact sizes.
    Weight,
    /// An activation, gone after one GEMM: size classes, reused by the next.
    Activation,
}

#[repr(C)]
struct QuantizeFp8Args {
    out: u64,
    scales: u64,
    x: u64,
    rows: u32,
    cols: u32,
    warps_per_row: u32,
    rows_per_block: u32,
    x_dt: i32,
}

// SAFETY: `#[repr(C)]` mirror of the kernel's parameter struct (device pointers as u64,
// `unsigned` as u32, `int` as i32).
unsafe impl DeviceRepr for QuantizeFp8Args {}

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
            return Err("expected [.., K] with K at most 65536 (one block holds a row)");
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

    pub fn launch(&self) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (self.rows.div_ceil(self.rows_per_block), 1, 1),
            block_dim: (32 * self.warps_per_row * self.rows_per_block, 1, 1),
            shared_mem_bytes: 0,
        }
    }
}

impl CudaFp8Rows {
    /// `rows·cols` values and `rows` scales, unwritten.
    pub(super) fn alloc(
        dev: &Device,
        rows: usize,
        cols: usize,
        lifetime: Lifetime,
    ) -> Result<Self> {
        let bytes = rows * cols;
        let (values, scales) = match lifetime {
            Lifetime::Weight => (
                dev.pool.alloc_exact(bytes)?,
                dev.alloc_exact(rows, DType::F32)?,
            ),
            Lifetime::Activation => (dev.pool.alloc(bytes)?, dev.alloc(rows, DType::F32)?),
        };
        Ok(CudaFp8Rows {
            rows,
            cols,
            values: Arc::new(values),
            scales: CudaTensor {
                shape: vec![rows],
                dtype: DType::F32,
                buf: Arc::new(scales),
            },
        })
    }
}

/// `x: [.., cols]` (f32 or bf16, `cols` a multiple of 8) quantized per row of its last dimension.
pub(super) fn quantize_rows(
    dev: &Device,
    x: &CudaTensor,
    lifetime: Lifetime,
) -> Result<CudaFp8Rows> {
    let layout =
        RowLayout::of(x, &[x.ptr()]).map_err(|why| Error::shape("quantize_fp8", why, x.shape()))?;
    let q = CudaFp8Rows::alloc(dev, layout.rows as usize, layout.cols as usize, lifetime)?;
    if layout.rows > 0 {
        dev.launch(
            kernels::QUANTIZE_FP8_ROWS,
            layout.launch(),
            &QuantizeFp8Args {
                out: q.values.ptr(),
                scales: q.scales.ptr(),
                x: x.ptr(),
                rows: layout.rows,
                cols: layout.cols,
                warps_per_row: layout.warps_per_row,
                rows_per_block: layout.rows_per_block,
                x_dt: dt_code(x.dtype()),
            },
        )?;
    }
    Ok(q)
}

/// `q` copied back to the host.
pub(super) fn download(dev: &Device, q: &CudaFp8Rows) -> Result<Fp8Rows> {
    let (values, scales) =
        download_parts(dev, "download_fp8", &q.values, q.rows * q.cols, &q.scales)?;
    Ok(Fp8Rows {
        rows: q.rows,
        cols: q.cols,
        values,
        scales,
    })
}

/// The first `bytes` bytes of `values` and all of the f32 tensor `scales`, copied to the host:
/// a quantized matrix's two parts.
pub(super) fn download_parts<T: bytemuck::Pod + Default>(
    dev: &Device,
    op: &str,
    values: &DeviceBuffer,
    len: usize,
    scales: &CudaTensor,
) -> Result<(Vec<T>, Vec<f32>)> {
    let mut out = vec![T::default(); len];
    let mut sc = vec![0f32; scales.numel()];
    dev.stream.context().bind_to_thread().w(op)?;
    // SAFETY: `values` holds at least `len` elements of `T` (one byte each for the 8-bit
    // formats) and `scales` `sc.len()` f32 values; the copies are queued behind the work that
    // produces them, and both vectors outlive the synchronize below.
    unsafe {
        if len > 0 {
            cudarc::driver::result::memcpy_dtoh_async(
                bytemuck::cast_slice_mut::<T, u8>(&mut out),
                values.ptr(),
                dev.stream.cu_stream(),
            )
            .w(op)?;
        }
        if !sc.is_empty() {
            cudarc::driver::result::memcpy_dtoh_async(
                &mut sc,
                scales.ptr(),
                dev.stream.cu_stream(),
            )
            .w(op)?;
        }
    }
    dev.stream.synchronize().w(op)?;
    Ok((out, sc))
}
