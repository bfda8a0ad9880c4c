//! Launchers for `kernels/norm.cu`.

use cudarc::driver::{DeviceRepr, LaunchConfig};

use super::device::Device;
use super::{CudaTensor, dt_code, kernels};
use crate::{DType, Error, Result, shapes};

/// Threads per row of the row norms: 256 keeps a 1536- to 5120-wide row at 6–20 elements per
/// thread; narrower rows (the tiny model's 256) simply leave threads idle.
const ROW_THREADS: u32 = 256;

#[repr(C)]
struct LayerNormArgs {
    out: u64,
    x: u64,
    mul: u64,
    add: u64,
    mul_offset: f32,
    eps: f32,
    rows: u32,
    cols: u32,
    out_dt: i32,
    x_dt: i32,
    param_dt: i32,
}

#[repr(C)]
struct RmsNormArgs {
    out: u64,
    x: u64,
    weight: u64,
    eps: f32,
    rows: u32,
    cols: u32,
    out_dt: i32,
    x_dt: i32,
    weight_dt: i32,
}

#[repr(C)]
struct RmsNormRopeArgs {
    out: u64,
    x: u64,
    weight: u64,
    cos: u64,
    sin: u64,
    eps: f32,
    rows: u32,
    cols: u32,
    half: u32,
    out_dt: i32,
    x_dt: i32,
    weight_dt: i32,
}

#[repr(C)]
struct ChannelRmsNormArgs {
    out: u64,
    x: u64,
    gamma: u64,
    rows: u64,
    channels: u32,
    width: u32,
    out_dt: i32,
    x_dt: i32,
    gamma_dt: i32,
    silu: i32,
}

// SAFETY (all four): `#[repr(C)]` mirrors of the kernels' parameter structs (device pointers
// as u64, `unsigned` as u32).
unsafe impl DeviceRepr for LayerNormArgs {}
unsafe impl DeviceRepr for RmsNormArgs {}
unsafe impl DeviceRepr for RmsNormRopeArgs {}
unsafe impl DeviceRepr for ChannelRmsNormArgs {}

/// `(rows, cols)` of a row-norm input, which the kernels index with 32-bit counters.
fn rows_cols(op: &'static str, x: &CudaTensor) -> Result<(u32, u32)> {
    let cols = x.cols();
    let rows = x.numel().checked_div(cols).unwrap_or(0);
    match (u32::try_from(rows), u32::try_from(cols)) {
        (Ok(r), Ok(c)) if !x.shape().is_empty() => Ok((r, c)),
        _ => Err(Error::shape(
            op,
            "expected [.., D] with fewer than 2^32 rows",
            x.shape(),
        )),
    }
}

fn per_row(rows: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows, 1, 1),
        block_dim: (ROW_THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// `LN(x)·(mul + mul_offset) + add` per row in `out_dtype`; `params` = `(mul, add)` each `[D]`,
/// both of one element type.
#[allow(clippy::too_many_arguments)]
pub(super) fn layer_norm(
    dev: &Device,
    op: &'static str,
    x: &CudaTensor,
    params: Option<(&CudaTensor, &CudaTensor)>,
    mul_offset: f32,
    eps: f32,
    out_dtype: DType,
) -> Result<CudaTensor> {
    let (rows, cols) = rows_cols(op, x)?;
    if let Some((m, a)) = params {
        for p in [m, a] {
            if p.numel() != cols as usize {
                return Err(Error::shape(
                    op,
                    format!("per-feature parameters must be [{cols}]"),
                    p.shape(),
                ));
            }
        }
    }
    if let Some((m, a)) = params
        && m.dtype() != a.dtype()
    {
        return Err(Error::invalid(
            op,
            "scale and shift must have one element type",
        ));
    }
    let out = CudaTensor::alloc_as(dev, x.shape(), out_dtype)?;
    if rows == 0 || cols == 0 {
        return Ok(out);
    }
    let args = LayerNormArgs {
        out: out.ptr(),
        x: x.ptr(),
        mul: params.map_or(0, |(m, _)| m.ptr()),
        add: params.map_or(0, |(_, a)| a.ptr()),
        mul_offset,
        eps,
        rows,
        cols,
        out_dt: dt_code(out_dtype),
        x_dt: dt_code(x.dtype()),
        param_dt: params.map_or(0, |(m, _)| dt_code(m.dtype())),
    };
    dev.launch(kernels::LAYER_NORM, per_row(rows), &args)?;
    Ok(out)
}

/// RMSNorm per row in `out_dtype`.
pub(super) fn rms_norm(
    dev: &Device,
    x: &CudaTensor,
    weight: &CudaTensor,
    eps: f32,
    out_dtype: DType,
) -> Result<CudaTensor> {
    let (rows, cols) = rows_cols("rms_norm", x)?;
    if weight.numel() != cols as usize {
        return Err(Error::shape(
            "rms_norm",
            format!("weight must be [{cols}]"),
            weight.shape(),
        ));
    }
    let out = CudaTensor::alloc_as(dev, x.shape(), out_dtype)?;
    if rows == 0 || cols == 0 {
        return Ok(out);
    }
    let args = RmsNormArgs {
        out: out.ptr(),
        x: x.ptr(),
        weight: weight.ptr(),
        eps,
        rows,
        cols,
        out_dt: dt_code(out_dtype),
        x_dt: dt_code(x.dtype()),
        weight_dt: dt_code(weight.dtype()),
    };
    dev.launch(kernels::RMS_NORM, per_row(rows), &args)?;
    Ok(out)
}

/// RMSNorm per row of `x: [L, H·Dh]` then RoPE per head with f32 `cos`/`sin: [L, Dh/2]`, in
/// `out_dtype`, returned as `[L, H, Dh]`.
#[allow(clippy::too_many_arguments)]
pub(super) fn rms_norm_rope(
    dev: &Device,
    x: &CudaTensor,
    weight: &CudaTensor,
    eps: f32,
    cos: &CudaTensor,
    sin: &CudaTensor,
    heads: usize,
    out_dtype: DType,
) -> Result<CudaTensor> {
    let (len, dh) = shapes::head_split(x.shape(), heads)?;
    let (rows, cols) = rows_cols("rms_norm_rope", x)?;
    let width = cols as usize;
    if weight.numel() != width {
        return Err(Error::shape(
            "rms_norm_rope",
            format!("weight must be [{width}]"),
            weight.shape(),
        ));
    }
    shapes::rope_tables(len, dh, [cos.shape(), sin.shape()])?;
    let out = CudaTensor::alloc_as(dev, &[len, heads, dh], out_dtype)?;
    if rows == 0 {
        return Ok(out);
    }
    let args = RmsNormRopeArgs {
        out: out.ptr(),
        x: x.ptr(),
        weight: weight.ptr(),
        cos: cos.ptr(),
        sin: sin.ptr(),
        eps,
        rows,
        cols,
        half: (dh / 2) as u32,
        out_dt: dt_code(out_dtype),
        x_dt: dt_code(x.dtype()),
        weight_dt: dt_code(weight.dtype()),
    };
    dev.launch(kernels::RMS_NORM_ROPE, per_row(rows), &args)?;
    Ok(out)
}

/// The Wan VAE's channel RMS norm of `x: [..., C]` into `dtype`, followed by SiLU when `silu`.
pub(super) fn channel_rms_norm(
    dev: &Device,
    x: &CudaTensor,
    gamma: &CudaTensor,
    silu: bool,
    dtype: DType,
) -> Result<CudaTensor> {
    let out = CudaTensor::alloc_as(dev, x.shape(), dtype)?;
    channel_rms_norm_into(dev, &out, 0, x, gamma, silu)?;
    Ok(out)
}

/// [`channel_rms_norm`] written into `out` from element `offset` on, in `out`'s type, rows as wide
/// as `out`'s last dim (≥ C; the channels past C written as zeros).
pub(super) fn channel_rms_norm_into(
    dev: &Device,
    out: &CudaTensor,
    offset: usize,
    x: &CudaTensor,
    gamma: &CudaTensor,
    silu: bool,
) -> Result<()> {
    shapes::channel_param("channel_rms_norm", x.shape(), gamma.shape())?;
    let c = gamma.shape()[0];
    let width = out.shape().last().copied().unwrap_or(0);
    if width < c {
        return Err(Error::shape(
            "channel_rms_norm",
            format!(
                "output rows at least {c} channels wide, got {:?}",
                out.shape()
            ),
            x.shape(),
        ));
    }
    let rows = x.numel() / c.max(1);
    if offset + rows * width > out.numel() {
        return Err(Error::shape(
            "channel_rms_norm",
            format!("output {:?} too small from element {offset}", out.shape()),
            x.shape(),
        ));
    }
    let too_wide = |_| Error::shape("channel_rms_norm", "too many channels", x.shape());
    let (channels, width) = (
        u32::try_from(c).map_err(too_wide)?,
        u32::try_from(width).map_err(too_wide)?,
    );
    // bf16 rows of 24·n channels (n | 32): n lanes a row; otherwise one warp per row.
    let bf16 = x.dtype() == DType::BF16 && out.dtype() == DType::BF16;
    let lanes = c / 24;
    let out_ptr = out.ptr() + (offset * out.dtype().size_in_bytes()) as u64;
    let aligned = x.ptr().is_multiple_of(16) && out_ptr.is_multiple_of(16) && width % 8 == 0;
    let (kernel, threads) =
        if bf16 && aligned && c.is_multiple_of(24) && lanes > 0 && 32 % lanes == 0 {
            (
                kernels::CHANNEL_RMS_NORM_BF16,
                rows.div_ceil(32 / lanes) * 32,
            )
        } else {
            (kernels::CHANNEL_RMS_NORM, rows * 32 * (c > 0) as usize)
        };
    dev.launch_elements(
        kernel,
        threads,
        &ChannelRmsNormArgs {
            out: out_ptr,
            x: x.ptr(),
            gamma: gamma.ptr(),
            rows: rows as u64,
            channels,
            width,
            out_dt: dt_code(out.dtype()),
            x_dt: dt_code(x.dtype()),
            gamma_dt: dt_code(gamma.dtype()),
            silu: silu as i32,
        },
    )
}
