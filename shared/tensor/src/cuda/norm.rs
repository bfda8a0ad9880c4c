//! Launchers for `kernels/norm.cu`.

use cudarc::driver::{DeviceRepr, LaunchConfig};

use super::device::Device;
use super::elementwise;
use super::quant::{self, CudaFp8Rows, Lifetime};
use super::rows::RowLayout;
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
struct LayerNormRowsArgs {
    out: u64,
    scales: u64,
    x: u64,
    y: u64,
    gate: u64,
    sum: u64,
    mul: u64,
    add: u64,
    mul_offset: f32,
    eps: f32,
    rows: u32,
    cols: u32,
    warps_per_row: u32,
    rows_per_block: u32,
    out_dt: i32,
    x_dt: i32,
    y_dt: i32,
    gate_dt: i32,
    sum_dt: i32,
    param_dt: i32,
    common: u64,
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
struct RmsNormRopeRowsArgs {
    out: u64,
    x: u64,
    weight: u64,
    cos: u64,
    sin: u64,
    eps: f32,
    rows: u32,
    cols: u32,
    half: u32,
    warps_per_row: u32,
    rows_per_block: u32,
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
    frame_rows: u64,
    taps: i32,
    frames: i32,
    shift: i32,
    kept: u64,
    kept_from: u64,
}

// SAFETY (all six): `#[repr(C)]` mirrors of the kernels' parameter structs (device pointers
// as u64, `unsigned` as u32).
unsafe impl DeviceRepr for LayerNormArgs {}
unsafe impl DeviceRepr for LayerNormRowsArgs {}
unsafe impl DeviceRepr for RmsNormArgs {}
unsafe impl DeviceRepr for RmsNormRopeArgs {}
unsafe impl DeviceRepr for RmsNormRopeRowsArgs {}
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

/// The affine parameters of a LayerNorm, `LN(x)·(mul + mul_offset) + add` with `mul`/`add: [D]`
/// of one element type: affine LayerNorm is `(weight, bias)` with offset 0, the DiT's modulation
/// `(scale, shift)` with offset 1.
#[derive(Clone, Copy)]
pub(super) struct NormParams<'a> {
    pub mul_add: Option<(&'a CudaTensor, &'a CudaTensor)>,
    pub mul_offset: f32,
    pub eps: f32,
}

impl NormParams<'_> {
    fn check(&self, op: &'static str, cols: usize) -> Result<()> {
        let Some((m, a)) = self.mul_add else {
            return Ok(());
        };
        for p in [m, a] {
            if p.numel() != cols {
                return Err(Error::shape(
                    op,
                    format!("per-feature parameters must be [{cols}]"),
                    p.shape(),
                ));
            }
        }
        if m.dtype() != a.dtype() {
            return Err(Error::invalid(
                op,
                "scale and shift must have one element type",
            ));
        }
        Ok(())
    }

    pub(super) fn pointers(&self) -> [u64; 2] {
        self.mul_add.map_or([0, 0], |(m, a)| [m.ptr(), a.ptr()])
    }

    pub(super) fn param_dt(&self) -> i32 {
        self.mul_add.map_or(0, |(m, _)| dt_code(m.dtype()))
    }
}

/// The residual add a norm may do first: `x + y·gate` (`gate: [D]`), or `x + y` without a gate,
/// as [`elementwise::gated_residual`] and the `add` op compute them.
#[derive(Clone, Copy)]
pub(super) struct Residual<'a> {
    pub y: &'a CudaTensor,
    pub gate: Option<&'a CudaTensor>,
}

impl Residual<'_> {
    fn check(&self, op: &'static str, x: &CudaTensor) -> Result<()> {
        shapes::same_shape(op, x.shape(), self.y.shape())?;
        if let Some(g) = self.gate
            && g.numel() != x.cols()
        {
            return Err(Error::shape(
                op,
                format!("gate must be [{}]", x.cols()),
                g.shape(),
            ));
        }
        Ok(())
    }

    /// The sum in the wider of `x`'s and `y`'s element types, by the elementwise kernels.
    fn add(&self, dev: &Device, x: &CudaTensor) -> Result<CudaTensor> {
        match self.gate {
            Some(g) => elementwise::gated_residual(dev, x, self.y, g),
            None => elementwise::broadcast(dev, "add", kernels::ADD, x, self.y),
        }
    }
}

/// The rows a norm normalizes: `x`, or with `residual` the sum `x + y·gate` in the wider of x's
/// and y's types (allocated here, for the rows kernel to write). With it, the layout of
/// `layer_norm_rows` when that kernel takes the rows.
fn norm_rows(
    dev: &Device,
    op: &'static str,
    x: &CudaTensor,
    residual: Option<Residual>,
    p: &NormParams,
) -> Result<(CudaTensor, Option<RowLayout>)> {
    p.check(op, x.cols())?;
    if let Some(r) = &residual {
        r.check(op, x)?;
    }
    let [mul, add] = p.pointers();
    let mut pointers = vec![x.ptr(), mul, add];
    if let Some(r) = &residual {
        pointers.extend([r.y.ptr(), r.gate.map_or(0, |g| g.ptr())]);
    }
    let layout = RowLayout::of(x, &pointers).ok();
    let rows = match (residual, layout) {
        (None, _) => x.clone(),
        (Some(r), Some(_)) => CudaTensor::alloc_as(dev, x.shape(), super::widest(&[x, r.y]))?,
        (Some(r), None) => r.add(dev, x)?,
    };
    Ok((rows, layout))
}

/// Launches `layer_norm_rows` on `x` (plus `residual`, written to `rows`) into `out`, the values
/// of `round`, or FP8 rows with `scales` (each row's own, or the one at `common` where nonzero).
#[allow(clippy::too_many_arguments)]
fn launch_norm_rows(
    dev: &Device,
    layout: &RowLayout,
    x: &CudaTensor,
    residual: Option<Residual>,
    rows: &CudaTensor,
    p: &NormParams,
    (out, scales, common): (u64, u64, u64),
    round: DType,
) -> Result<()> {
    if layout.rows == 0 {
        return Ok(());
    }
    let layout = layout.fit(dev, kernels::LAYER_NORM_ROWS)?;
    let [mul, add] = p.pointers();
    let gate = residual.and_then(|r| r.gate);
    dev.launch(
        kernels::LAYER_NORM_ROWS,
        layout.launch(),
        &LayerNormRowsArgs {
            out,
            scales,
            x: x.ptr(),
            y: residual.map_or(0, |r| r.y.ptr()),
            gate: gate.map_or(0, |g| g.ptr()),
            sum: residual.map_or(0, |_| rows.ptr()),
            mul,
            add,
            mul_offset: p.mul_offset,
            eps: p.eps,
            rows: layout.rows,
            cols: layout.cols,
            warps_per_row: layout.warps_per_row,
            rows_per_block: layout.rows_per_block,
            out_dt: dt_code(round),
            x_dt: dt_code(x.dtype()),
            y_dt: residual.map_or(0, |r| dt_code(r.y.dtype())),
            gate_dt: gate.map_or(0, |g| dt_code(g.dtype())),
            sum_dt: dt_code(rows.dtype()),
            param_dt: p.param_dt(),
            common,
        },
    )
}

/// `LN(r)·(mul + mul_offset) + add` per row in `out_dtype`, of `r` = `x` or, with `residual`, the
/// sum `x + y·gate`: returns `r` (x itself without a residual) and the norm. One pass where the
/// rows kernel takes the rows, else the residual and norm kernels in turn.
pub(super) fn layer_norm(
    dev: &Device,
    op: &'static str,
    x: &CudaTensor,
    residual: Option<Residual>,
    p: &NormParams,
    out_dtype: DType,
) -> Result<(CudaTensor, CudaTensor)> {
    let (rows, layout) = norm_rows(dev, op, x, residual, p)?;
    let Some(layout) = layout else {
        let out = layer_norm_blocks(dev, op, &rows, p, out_dtype)?;
        return Ok((rows, out));
    };
    let out = CudaTensor::alloc_as(dev, x.shape(), out_dtype)?;
    launch_norm_rows(
        dev,
        &layout,
        x,
        residual,
        &rows,
        p,
        (out.ptr(), 0, 0),
        out_dtype,
    )?;
    Ok((rows, out))
}

/// [`layer_norm`] rounded to `round`, then quantized per row to FP8 as an FP8 layer quantizes its
/// input: in the norm's pass where the rows kernel takes the rows (equal, bit for bit, to the
/// norm followed by the quantizer, which run otherwise). With `bounded`, the rows kernel
/// quantizes every row with the one scale of the norm's output bound ([`quant::norm_bound`],
/// kept as the rows' `common`), equal to the quantizer given that scale.
pub(super) fn layer_norm_fp8(
    dev: &Device,
    op: &'static str,
    x: &CudaTensor,
    residual: Option<Residual>,
    p: &NormParams,
    round: DType,
    bounded: bool,
) -> Result<(CudaTensor, CudaFp8Rows)> {
    let (rows, layout) = norm_rows(dev, op, x, residual, p)?;
    let Some(layout) = layout else {
        let normed = layer_norm_blocks(dev, op, &rows, p, round)?;
        return Ok((
            rows,
            quant::quantize_rows(dev, &normed, Lifetime::Activation)?,
        ));
    };
    let mut q = CudaFp8Rows::alloc(
        dev,
        layout.rows as usize,
        layout.cols as usize,
        Lifetime::Activation,
    )?;
    if bounded {
        q.common = Some(quant::norm_bound(dev, p, layout.cols)?);
    }
    let common = q.common.as_ref().map_or(0, CudaTensor::ptr);
    let out = (q.values.ptr(), q.scales.ptr(), common);
    launch_norm_rows(dev, &layout, x, residual, &rows, p, out, round)?;
    Ok((rows, q))
}

/// [`layer_norm`] by the one-block-a-row kernel, which takes any row width and alignment.
fn layer_norm_blocks(
    dev: &Device,
    op: &'static str,
    x: &CudaTensor,
    p: &NormParams,
    out_dtype: DType,
) -> Result<CudaTensor> {
    let (rows, cols) = rows_cols(op, x)?;
    let out = CudaTensor::alloc_as(dev, x.shape(), out_dtype)?;
    if rows == 0 || cols == 0 {
        return Ok(out);
    }
    let [mul, add] = p.pointers();
    let args = LayerNormArgs {
        out: out.ptr(),
        x: x.ptr(),
        mul,
        add,
        mul_offset: p.mul_offset,
        eps: p.eps,
        rows,
        cols,
        out_dt: dt_code(out_dtype),
        x_dt: dt_code(x.dtype()),
        param_dt: p.param_dt(),
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
    if let Ok(layout) = RowLayout::of(x, &[x.ptr(), weight.ptr(), out.ptr()]) {
        launch_rms_rows(dev, &layout, &out, x, weight, eps, None)?;
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
    let pointers = [x.ptr(), weight.ptr(), cos.ptr(), sin.ptr(), out.ptr()];
    // The rows kernel loads a chunk's cos/sin as one float4: Dh/2 a multiple of 4.
    if dh.is_multiple_of(8)
        && let Ok(layout) = RowLayout::of(x, &pointers)
    {
        launch_rms_rows(dev, &layout, &out, x, weight, eps, Some((cos, sin, dh / 2)))?;
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

/// `rms_norm_rope_rows` of `x` into `out`: RMSNorm, then the rotation by `tables` (cos, sin,
/// Dh/2) when given.
fn launch_rms_rows(
    dev: &Device,
    layout: &RowLayout,
    out: &CudaTensor,
    x: &CudaTensor,
    weight: &CudaTensor,
    eps: f32,
    tables: Option<(&CudaTensor, &CudaTensor, usize)>,
) -> Result<()> {
    let layout = layout.fit(dev, kernels::RMS_NORM_ROPE_ROWS)?;
    dev.launch(
        kernels::RMS_NORM_ROPE_ROWS,
        layout.launch(),
        &RmsNormRopeRowsArgs {
            out: out.ptr(),
            x: x.ptr(),
            weight: weight.ptr(),
            cos: tables.map_or(0, |(c, _, _)| c.ptr()),
            sin: tables.map_or(0, |(_, s, _)| s.ptr()),
            eps,
            rows: layout.rows,
            cols: layout.cols,
            half: tables.map_or(0, |(_, _, h)| h as u32),
            warps_per_row: layout.warps_per_row,
            rows_per_block: layout.rows_per_block,
            out_dt: dt_code(out.dtype()),
            x_dt: dt_code(x.dtype()),
            weight_dt: dt_code(weight.dtype()),
        },
    )
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
    channel_rms_norm_into(dev, &out, 0, x, gamma, silu, None)?;
    Ok(out)
}

/// [`channel_rms_norm`] written into `out` from element `offset` on, in `out`'s type, rows as wide
/// as `out`'s last dim (≥ C; the channels past C written as zeros). With `kept` (as wide, at most
/// x's rows), the last rows written are stored into it too, where the bf16 kernel runs; returns
/// whether they were.
pub(super) fn channel_rms_norm_into(
    dev: &Device,
    out: &CudaTensor,
    offset: usize,
    x: &CudaTensor,
    gamma: &CudaTensor,
    silu: bool,
    kept: Option<&CudaTensor>,
) -> Result<bool> {
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
    // bf16 rows of 24·n channels (n | 32), fewer than 2^31 of them (the kernel counts in 32
    // bits): n lanes a row; otherwise one warp per row.
    let bf16 =
        x.dtype() == DType::BF16 && out.dtype() == DType::BF16 && i32::try_from(rows).is_ok();
    let out_ptr = out.ptr() + (offset * out.dtype().size_in_bytes()) as u64;
    let aligned = x.ptr().is_multiple_of(16) && out_ptr.is_multiple_of(16) && width % 8 == 0;
    let (kernel, threads) = match bf16_lanes(c) {
        Some(lanes) if bf16 && aligned => (
            kernels::CHANNEL_RMS_NORM_BF16,
            rows.div_ceil(32 / lanes) * 32,
        ),
        _ => (kernels::CHANNEL_RMS_NORM, rows * 32 * (c > 0) as usize),
    };
    let kept = kept.filter(|_| kernel == kernels::CHANNEL_RMS_NORM_BF16);
    // The bf16 kernel runs with rows at least 24 channels wide: `wide` is not zero.
    let wide = width as usize;
    let kept_rows = match kept {
        None => 0,
        Some(k)
            if k.dtype() == DType::BF16
                && k.shape().last() == Some(&wide)
                && k.numel() / wide <= rows =>
        {
            k.numel() / wide
        }
        Some(k) => {
            return Err(Error::shape(
                "channel_rms_norm",
                format!("bf16 rows {width} wide, at most {rows}, for the kept rows"),
                k.shape(),
            ));
        }
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
            frame_rows: rows as u64,
            taps: 1,
            frames: 1,
            shift: 0,
            kept: kept.map_or(0, CudaTensor::ptr),
            kept_from: (rows - kept_rows) as u64,
        },
    )?;
    Ok(kept.is_some())
}

/// Lanes a row of the bf16 channel-norm kernel takes for `c` channels: `c / 24` where that
/// divides 32, else `None` (the one-warp-per-row kernel).
fn bf16_lanes(c: usize) -> Option<usize> {
    let lanes = c / 24;
    (c.is_multiple_of(24) && lanes > 0 && 32 % lanes == 0).then_some(lanes)
}

/// Whether [`channel_rms_norm_folded`] takes rows of `c` channels (24·n with n dividing 32).
pub(super) fn folds_channels(c: usize) -> bool {
    bf16_lanes(c).is_some()
}

/// Where [`channel_rms_norm_folded`] writes: x's frame f goes to block dt of output frame
/// `shift + f − dt` for each dt < `taps` whose frame lies in `[0, frames)`.
pub(super) struct Fold {
    pub taps: usize,
    pub frames: usize,
    pub shift: usize,
}

/// `silu(channel_rms_norm(x, gamma))` of bf16 `x: [F, H, W, C]` into a causal convolution's input
/// with its time taps folded into channels, `out: [frames, H, W, taps·C]` bf16 (see [`Fold`]);
/// blocks no frame of x reaches are left as they are. With `kept: [K, H, W, C]` (K ≤ F), x's
/// last K frames are also copied into it as they are (the next chunk's cached frames).
pub(super) fn channel_rms_norm_folded(
    dev: &Device,
    out: &CudaTensor,
    x: &CudaTensor,
    gamma: &CudaTensor,
    fold: &Fold,
    kept: Option<&CudaTensor>,
) -> Result<()> {
    const OP: &str = "causal_rms_norm_silu_folded";
    shapes::channel_param(OP, x.shape(), gamma.shape())?;
    let c = gamma.shape()[0];
    let (Some(lanes), &[f, h, w, _], &[fo, ho, wo, wide]) = (
        bf16_lanes(c).filter(|_| x.dtype() == DType::BF16 && out.dtype() == DType::BF16),
        x.shape(),
        out.shape(),
    ) else {
        return Err(Error::shape(
            OP,
            format!(
                "bf16 [F, H, W, 24·n] in and [F, H, W, taps·C] out, got out {:?}",
                out.shape()
            ),
            x.shape(),
        ));
    };
    if [ho, wo, wide] != [h, w, fold.taps * c] || fo != fold.frames {
        return Err(Error::shape(
            OP,
            format!(
                "output {:?} for {} taps of {c} channels",
                out.shape(),
                fold.taps
            ),
            x.shape(),
        ));
    }
    let kept_frames = match kept.map(|k| (k.dtype(), k.shape())) {
        None => 0,
        Some((DType::BF16, &[k, kh, kw, kc])) if k <= f && [kh, kw, kc] == [h, w, c] => k,
        Some((_, shape)) => {
            return Err(Error::shape(
                OP,
                format!("bf16 [at most {f}, {h}, {w}, {c}] for the kept frames, got {shape:?}"),
                x.shape(),
            ));
        }
    };
    let small =
        |v: usize| i32::try_from(v).map_err(|_| Error::shape(OP, "extent past 32 bits", x.shape()));
    let rows = f * h * w;
    // The kernel counts its work items in 32 bits.
    small(rows)?;
    dev.launch_elements(
        kernels::CHANNEL_RMS_NORM_BF16,
        rows.div_ceil(32 / lanes) * 32,
        &ChannelRmsNormArgs {
            out: out.ptr(),
            x: x.ptr(),
            gamma: gamma.ptr(),
            rows: rows as u64,
            channels: c as u32,
            width: c as u32,
            out_dt: dt_code(DType::BF16),
            x_dt: dt_code(DType::BF16),
            gamma_dt: dt_code(gamma.dtype()),
            silu: 1,
            frame_rows: (h * w) as u64,
            taps: small(fold.taps)?,
            frames: small(fo)?,
            shift: small(fold.shift)?,
            kept: kept.map_or(0, CudaTensor::ptr),
            kept_from: ((f - kept_frames) * h * w) as u64,
        },
    )
}
