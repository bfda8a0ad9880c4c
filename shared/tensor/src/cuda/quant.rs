//! Launcher for `kernels/quant.cu`: matrices quantized per row to FP8 e4m3, the operands of the
//! FP8 linear layers.

use std::sync::Arc;

use cudarc::driver::{DeviceRepr, LaunchConfig};

use super::alloc::DeviceBuffer;
use super::device::Device;
use super::norm::NormParams;
use super::rows::RowLayout;
use super::{CudaTensor, dt_code, kernels};
use crate::fp8::Fp8Rows;
use crate::{DType, Error, Result};

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
    /// Where every row has one scale under a bound (kernels/quant.cu): f32 `[2]`, that scale and
    /// a bound on every dequantized row's 2-norm.
    pub(super) common: Option<CudaTensor>,
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
    /// An activation, gone after the layers that read it: size classes, reused by the next.
    Activation,
}

impl Lifetime {
    /// Buffers for `bytes` 8-bit values and `scales` f32 scales: exact sizes for a weight, the
    /// pool's size classes for an activation.
    pub(super) fn alloc(
        self,
        dev: &Device,
        bytes: usize,
        scales: usize,
    ) -> Result<(DeviceBuffer, DeviceBuffer)> {
        Ok(match self {
            Lifetime::Weight => (
                dev.pool.alloc_exact(bytes)?,
                dev.alloc_exact(scales, DType::F32)?,
            ),
            Lifetime::Activation => (dev.pool.alloc(bytes)?, dev.alloc(scales, DType::F32)?),
        })
    }
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
    common: u64,
}

// SAFETY: `#[repr(C)]` mirror of the kernel's parameter struct (device pointers as u64,
// `unsigned` as u32, `int` as i32).
unsafe impl DeviceRepr for QuantizeFp8Args {}

impl CudaFp8Rows {
    /// `rows·cols` values and `rows` scales, unwritten.
    pub(super) fn alloc(
        dev: &Device,
        rows: usize,
        cols: usize,
        lifetime: Lifetime,
    ) -> Result<Self> {
        let (values, scales) = lifetime.alloc(dev, rows * cols, rows)?;
        Ok(CudaFp8Rows {
            rows,
            cols,
            values: Arc::new(values),
            scales: CudaTensor::whole(&[rows], DType::F32, scales),
            common: None,
        })
    }
}

/// `x: [.., cols]` (f32 or bf16, `cols` a multiple of 8) quantized per row of its last dimension.
pub(super) fn quantize_rows(
    dev: &Device,
    x: &CudaTensor,
    lifetime: Lifetime,
) -> Result<CudaFp8Rows> {
    quantize_rows_with(dev, x, lifetime, None)
}

/// [`quantize_rows`], or with `common` (f32 `[1]`) every row with that one scale.
pub(super) fn quantize_rows_with(
    dev: &Device,
    x: &CudaTensor,
    lifetime: Lifetime,
    common: Option<&CudaTensor>,
) -> Result<CudaFp8Rows> {
    let layout =
        RowLayout::of(x, &[x.ptr()]).map_err(|why| Error::shape("quantize_fp8", why, x.shape()))?;
    let q = CudaFp8Rows::alloc(dev, layout.rows as usize, layout.cols as usize, lifetime)?;
    if layout.rows > 0 {
        let layout = layout.fit(dev, kernels::QUANTIZE_FP8_ROWS)?;
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
                common: common.map_or(0, CudaTensor::ptr),
            },
        )?;
    }
    Ok(q)
}

#[repr(C)]
struct WeightBoundArgs {
    bound: u64,
    values: u64,
    scales: u64,
    bias: u64,
    bias_dt: i32,
    rows: u32,
    cols: u32,
}

#[repr(C)]
struct NormBoundArgs {
    out: u64,
    mul: u64,
    add: u64,
    mul_offset: f32,
    param_dt: i32,
    cols: u32,
}

#[repr(C)]
struct HiddenScaleArgs {
    out_scale: u64,
    scales: u64,
    common: u64,
    x_common: u64,
    w_bound: u64,
    rows: u32,
    cols: u32,
}

// SAFETY: `#[repr(C)]` mirrors of quant.cu's argument structs (u64 for pointers, i32 for int,
// u32 for unsigned, f32 for float, in declaration order), passed by value as the kernels' single
// parameter.
unsafe impl DeviceRepr for NormBoundArgs {}
unsafe impl DeviceRepr for WeightBoundArgs {}
unsafe impl DeviceRepr for HiddenScaleArgs {}

/// An FP8 layer's output bound (`fp8_weight_bound`): f32 `[2]`, the largest row norm of the
/// dequantized `weight` and the largest |bias|. Computed once, at load.
pub(super) fn weight_bound(
    dev: &Device,
    weight: &CudaFp8Rows,
    bias: Option<&CudaTensor>,
) -> Result<CudaTensor> {
    let bound = CudaTensor::whole(&[2], DType::F32, dev.alloc_exact(2, DType::F32)?);
    dev.zero(bound.ptr(), 8)?;
    if weight.rows > 0 {
        dev.launch(
            kernels::FP8_WEIGHT_BOUND,
            LaunchConfig {
                grid_dim: (weight.rows.div_ceil(8) as u32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            },
            &WeightBoundArgs {
                bound: bound.ptr(),
                values: weight.values.ptr(),
                scales: weight.scales.ptr(),
                bias: bias.map_or(0, CudaTensor::ptr),
                bias_dt: bias.map_or(0, |b| dt_code(b.dtype())),
                rows: weight.rows as u32,
                cols: weight.cols as u32,
            },
        )?;
    }
    Ok(bound)
}

/// The bounds of a LayerNorm's output with parameters `p` over `cols` columns
/// (`fp8_norm_bound`): f32 `[2]`, the one scale of its FP8 rows and a bound on every row's
/// 2-norm, the rows' `common`.
pub(super) fn norm_bound(dev: &Device, p: &NormParams, cols: u32) -> Result<CudaTensor> {
    let out = CudaTensor::alloc_as(dev, &[2], DType::F32)?;
    let [mul, add] = p.pointers();
    dev.launch(
        kernels::FP8_NORM_BOUND,
        LaunchConfig {
            grid_dim: (1, 1, 1),
            block_dim: (1024, 1, 1),
            shared_mem_bytes: 0,
        },
        &NormBoundArgs {
            out: out.ptr(),
            mul,
            add,
            mul_offset: p.mul_offset,
            param_dt: p.param_dt(),
            cols,
        },
    )?;
    Ok(out)
}

/// The scales of a GEMM's e4m3 output `hidden` through a layer of output bound `w_bound`
/// ([`weight_bound`]) from input rows of bounds `x_common` (`fp8_hidden_scale`; kernels/quant.cu
/// says why no output can exceed the bound): `out_scale` (f32 `[1]`) gets the GEMM's output
/// scale, 448 / bound, `common` (f32 `[2]`) `hidden`'s, and its rows their one scale, bound / 448.
pub(super) fn hidden_scale(
    dev: &Device,
    x_common: &CudaTensor,
    w_bound: &CudaTensor,
    hidden: &CudaFp8Rows,
    (out_scale, common): (&CudaTensor, &CudaTensor),
) -> Result<()> {
    dev.launch(
        kernels::FP8_HIDDEN_SCALE,
        LaunchConfig {
            grid_dim: (hidden.rows.div_ceil(1024).max(1) as u32, 1, 1),
            block_dim: (1024, 1, 1),
            shared_mem_bytes: 0,
        },
        &HiddenScaleArgs {
            out_scale: out_scale.ptr(),
            scales: hidden.scales.ptr(),
            common: common.ptr(),
            x_common: x_common.ptr(),
            w_bound: w_bound.ptr(),
            rows: hidden.rows as u32,
            cols: hidden.cols as u32,
        },
    )
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

/// The first `len` elements of `values` and all of the f32 tensor `scales`, copied to the host:
/// a quantized matrix's two parts.
pub(super) fn download_parts<T: bytemuck::Pod + Default>(
    dev: &Device,
    op: &'static str,
    values: &DeviceBuffer,
    len: usize,
    scales: &CudaTensor,
) -> Result<(Vec<T>, Vec<f32>)> {
    Ok((
        dev.read(op, values, len)?,
        dev.read(op, &scales.buf, scales.numel())?,
    ))
}
