//! Launchers for `kernels/elementwise.cu`. Each `#[repr(C)]` struct mirrors the kernel's
//! parameter struct field for field.

use cudarc::driver::DeviceRepr;

use super::device::Device;
use super::kernels::{self, Kernel};
use super::{CudaTensor, dt_code, widest};
use crate::{DType, Error, Result, shapes};

#[repr(C)]
struct UnaryArgs {
    out: u64,
    x: u64,
    n: u64,
    out_dt: i32,
    x_dt: i32,
}

#[repr(C)]
struct BroadcastArgs {
    out: u64,
    a: u64,
    b: u64,
    n: u64,
    nb: u64,
    out_dt: i32,
    a_dt: i32,
    b_dt: i32,
}

#[repr(C)]
struct ClampArgs {
    out: u64,
    x: u64,
    n: u64,
    lo: f32,
    hi: f32,
}

#[repr(C)]
struct GatedResidualArgs {
    out: u64,
    x: u64,
    y: u64,
    gate: u64,
    n: u64,
    cols: u64,
    out_dt: i32,
    x_dt: i32,
    y_dt: i32,
    gate_dt: i32,
}

#[repr(C)]
struct ChannelAffineArgs {
    out: u64,
    x: u64,
    scale: u64,
    shift: u64,
    n: u64,
    channels: u64,
    out_dt: i32,
    x_dt: i32,
    scale_dt: i32,
    shift_dt: i32,
}

#[repr(C)]
struct ChannelBiasArgs {
    out: u64,
    bias: u64,
    n: u64,
    channels: u64,
    out_dt: i32,
    bias_dt: i32,
}

/// Terms per `lincomb_f32` launch (`LINCOMB_TERMS` in the kernel).
const LINCOMB_TERMS: usize = 8;

#[repr(C)]
struct LincombArgs {
    out: u64,
    terms: [u64; LINCOMB_TERMS],
    coefs: [f32; LINCOMB_TERMS],
    n: u64,
    count: i32,
    accumulate: i32,
}

// SAFETY (all seven): `#[repr(C)]` structs of plain integers and floats whose fields match the
// kernels' parameter structs in order, type and size (device pointers as u64).
unsafe impl DeviceRepr for UnaryArgs {}
unsafe impl DeviceRepr for BroadcastArgs {}
unsafe impl DeviceRepr for ClampArgs {}
unsafe impl DeviceRepr for GatedResidualArgs {}
unsafe impl DeviceRepr for ChannelAffineArgs {}
unsafe impl DeviceRepr for ChannelBiasArgs {}
unsafe impl DeviceRepr for LincombArgs {}

/// `kernel` applied elementwise, the output in `x`'s element type.
pub(super) fn unary(dev: &Device, kernel: Kernel, x: &CudaTensor) -> Result<CudaTensor> {
    unary_to(dev, kernel, x, x.dtype())
}

/// `x` converted to `dtype` (a copy even when it already has that type).
pub(super) fn cast(dev: &Device, x: &CudaTensor, dtype: DType) -> Result<CudaTensor> {
    unary_to(dev, kernels::CAST, x, dtype)
}

fn unary_to(dev: &Device, kernel: Kernel, x: &CudaTensor, dtype: DType) -> Result<CudaTensor> {
    let out = CudaTensor::alloc_as(dev, x.shape(), dtype)?;
    let n = x.numel();
    dev.launch_elements(
        kernel,
        n,
        &UnaryArgs {
            out: out.ptr(),
            x: x.ptr(),
            n: n as u64,
            out_dt: dt_code(dtype),
            x_dt: dt_code(x.dtype()),
        },
    )?;
    Ok(out)
}

/// `a ∘ b` with `b`'s shape a suffix of `a`'s, in the wider of the two element types.
pub(super) fn broadcast(
    dev: &Device,
    op: &'static str,
    kernel: Kernel,
    a: &CudaTensor,
    b: &CudaTensor,
) -> Result<CudaTensor> {
    broadcast_as(dev, op, kernel, a, b, widest(&[a, b]))
}

/// [`broadcast`] into a tensor of `dtype`, each element computed in f32 and rounded once.
pub(super) fn broadcast_as(
    dev: &Device,
    op: &'static str,
    kernel: Kernel,
    a: &CudaTensor,
    b: &CudaTensor,
    dtype: DType,
) -> Result<CudaTensor> {
    shapes::suffix_shape(op, a.shape(), b.shape())?;
    let out = CudaTensor::alloc_as(dev, a.shape(), dtype)?;
    let n = a.numel();
    if b.numel() == 0 && n > 0 {
        return Err(Error::shape(op, "empty broadcast operand", b.shape()));
    }
    dev.launch_elements(
        kernel,
        n,
        &BroadcastArgs {
            out: out.ptr(),
            a: a.ptr(),
            b: b.ptr(),
            n: n as u64,
            nb: b.numel() as u64,
            out_dt: dt_code(dtype),
            a_dt: dt_code(a.dtype()),
            b_dt: dt_code(b.dtype()),
        },
    )?;
    Ok(out)
}

pub(super) fn clamp(dev: &Device, x: &CudaTensor, lo: f32, hi: f32) -> Result<CudaTensor> {
    // `f32::clamp`, which the CPU backend uses, requires this too.
    if lo.is_nan() || hi.is_nan() || lo > hi {
        return Err(Error::invalid(
            "clamp",
            format!("bounds must satisfy lo <= hi, got [{lo}, {hi}]"),
        ));
    }
    let out = CudaTensor::alloc(dev, x.shape())?;
    let n = x.numel();
    dev.launch_elements(
        kernels::CLAMP,
        n,
        &ClampArgs {
            out: out.ptr(),
            x: x.ptr(),
            n: n as u64,
            lo,
            hi,
        },
    )?;
    Ok(out)
}

/// `x + y · gate` in the wider of `x`'s and `y`'s element types.
pub(super) fn gated_residual(
    dev: &Device,
    x: &CudaTensor,
    y: &CudaTensor,
    gate: &CudaTensor,
) -> Result<CudaTensor> {
    shapes::same_shape("gated_residual", x.shape(), y.shape())?;
    let cols = x.cols();
    if gate.numel() != cols || cols == 0 {
        return Err(Error::shape(
            "gated_residual",
            format!("gate must be [{cols}]"),
            gate.shape(),
        ));
    }
    let dtype = widest(&[x, y]);
    let out = CudaTensor::alloc_as(dev, x.shape(), dtype)?;
    let n = x.numel();
    dev.launch_elements(
        kernels::GATED_RESIDUAL,
        n,
        &GatedResidualArgs {
            out: out.ptr(),
            x: x.ptr(),
            y: y.ptr(),
            gate: gate.ptr(),
            n: n as u64,
            cols: cols as u64,
            out_dt: dt_code(dtype),
            x_dt: dt_code(x.dtype()),
            y_dt: dt_code(y.dtype()),
            gate_dt: dt_code(gate.dtype()),
        },
    )?;
    Ok(out)
}

/// `x[..., c] · scale[c] + shift[c]` in the widest of the operands' types.
pub(super) fn channel_affine(
    dev: &Device,
    x: &CudaTensor,
    scale: &CudaTensor,
    shift: &CudaTensor,
) -> Result<CudaTensor> {
    for p in [scale, shift] {
        shapes::channel_param("channel_affine", x.shape(), p.shape())?;
    }
    let c = scale.shape()[0];
    let dtype = widest(&[x, scale, shift]);
    let out = CudaTensor::alloc_as(dev, x.shape(), dtype)?;
    let n = x.numel();
    dev.launch_elements(
        kernels::CHANNEL_AFFINE,
        n,
        &ChannelAffineArgs {
            out: out.ptr(),
            x: x.ptr(),
            scale: scale.ptr(),
            shift: shift.ptr(),
            n: n as u64,
            channels: c.max(1) as u64,
            out_dt: dt_code(dtype),
            x_dt: dt_code(x.dtype()),
            scale_dt: dt_code(scale.dtype()),
            shift_dt: dt_code(shift.dtype()),
        },
    )?;
    Ok(out)
}

/// `out[..., c] += bias[c]` in place, on a tensor the caller has just produced.
pub(super) fn add_channel_bias(dev: &Device, out: &CudaTensor, bias: &CudaTensor) -> Result<()> {
    shapes::channel_param("conv3d", out.shape(), bias.shape())?;
    let n = out.numel();
    dev.launch_elements(
        kernels::CHANNEL_BIAS,
        n,
        &ChannelBiasArgs {
            out: out.ptr(),
            bias: bias.ptr(),
            n: n as u64,
            channels: bias.numel().max(1) as u64,
            out_dt: dt_code(out.dtype()),
            bias_dt: dt_code(bias.dtype()),
        },
    )
}

pub(super) fn lincomb(dev: &Device, terms: &[(f32, &CudaTensor)]) -> Result<CudaTensor> {
    let (_, first) = terms
        .first()
        .ok_or_else(|| Error::invalid("lincomb", "no terms"))?;
    for (_, t) in terms {
        shapes::same_shape("lincomb", first.shape(), t.shape())?;
    }
    let out = CudaTensor::alloc(dev, first.shape())?;
    let n = first.numel();
    for (i, chunk) in terms.chunks(LINCOMB_TERMS).enumerate() {
        let mut args = LincombArgs {
            out: out.ptr(),
            terms: [0; LINCOMB_TERMS],
            coefs: [0.0; LINCOMB_TERMS],
            n: n as u64,
            count: chunk.len() as i32,
            accumulate: (i > 0) as i32,
        };
        for (slot, (c, t)) in chunk.iter().enumerate() {
            args.terms[slot] = t.ptr();
            args.coefs[slot] = *c;
        }
        dev.launch_elements(kernels::LINCOMB, n, &args)?;
    }
    Ok(out)
}
