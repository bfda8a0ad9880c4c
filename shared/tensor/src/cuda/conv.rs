//! `conv3d` on the device: cuDNN when it loads, else the direct kernel of `kernels/conv.cu`.

use cudarc::driver::DeviceRepr;

use super::cudnn::{Operands, Problem};
use super::device::Device;
use super::{CudaTensor, converted, elementwise, kernels, layout};
use crate::{DType, Error, Result, shapes};

#[repr(C)]
struct Conv3dArgs {
    out: u64,
    x: u64,
    w: u64,
    bias: u64,
    n: u64,
    /// The `int` fields in conv.cu's order: input `cin, f, h, w_`, output `cout, fo, ho, wo`,
    /// kernel `kt, kh, kw`, stride `st, sh, sw`, leading padding `pt, ph, pw`.
    ints: [i32; 17],
}

// SAFETY: `#[repr(C)]` mirror of `Conv3dArgs` in conv.cu (pointers as u64, `int` as i32).
unsafe impl DeviceRepr for Conv3dArgs {}

/// `conv(x, weight) + bias (+ residual)` into `dtype` (f32 or bf16), channels last: operands
/// are converted to `dtype`; cuDNN adds the bias and the residual in the convolution's epilogue
/// where it can, a pass each otherwise.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv3d(
    dev: &Device,
    x: &CudaTensor,
    weight: &CudaTensor,
    bias: Option<&CudaTensor>,
    stride: [usize; 3],
    pad: [[usize; 2]; 3],
    residual: Option<&CudaTensor>,
    dtype: DType,
) -> Result<CudaTensor> {
    let shapes::Conv3d { out, .. } = shapes::conv3d(
        x.shape(),
        weight.shape(),
        bias.map(CudaTensor::shape),
        stride,
        pad,
    )?;
    if let Some(r) = residual {
        shapes::same_shape("conv3d_add", &out, r.shape())?;
    }
    if let Some(dnn) = dev.cudnn() {
        let x = converted(dev, x, dtype)?;
        let w = converted(dev, weight, dtype)?;
        // cuDNN pads symmetrically; the causal time padding and downsample2d's right/bottom
        // zero column are materialized first.
        let sym = pad.map(|[before, after]| before.min(after));
        let extra: [[usize; 2]; 3] = [0, 1, 2].map(|d| [pad[d][0] - sym[d], pad[d][1] - sym[d]]);
        let x = if extra.iter().flatten().any(|&p| p > 0) {
            layout::pad_zero(dev, &x, extra)?
        } else {
            x
        };
        let s = x.shape();
        let problem = Problem {
            dtype,
            x: [s[0], s[1], s[2], s[3]],
            w: [0, 1, 2, 3, 4].map(|d| w.shape()[d]),
            stride,
            pad: sym,
        };
        let out = CudaTensor::alloc_as(dev, &problem.out(), dtype)?;
        let bias = bias.map(|b| converted(dev, b, dtype)).transpose()?;
        let residual_in = residual.map(|r| converted(dev, r, dtype)).transpose()?;
        let ops = Operands {
            x: x.ptr(),
            w: w.ptr(),
            y: out.ptr(),
            bias: bias.as_ref().map(CudaTensor::ptr),
            residual: residual_in.as_ref().map(CudaTensor::ptr),
        };
        if let Some(fused) = dnn.forward(&dev.pool, &problem, &ops)? {
            if fused {
                return Ok(out);
            }
            if let Some(b) = &bias {
                elementwise::add_channel_bias(dev, &out, b)?;
            }
            return plus(dev, out, residual_in.as_ref());
        }
    }
    let f32 = |t: &CudaTensor| converted(dev, t, DType::F32);
    let bias = bias.map(f32).transpose()?;
    let out = direct(dev, &f32(x)?, &f32(weight)?, bias.as_ref(), stride, pad)?;
    converted(dev, &plus(dev, out, residual)?, dtype)
}

/// `out + residual`, a pass of its own, where the convolution did not add it.
fn plus(dev: &Device, out: CudaTensor, residual: Option<&CudaTensor>) -> Result<CudaTensor> {
    match residual {
        Some(r) => elementwise::broadcast(dev, "add", kernels::ADD, &out, r),
        None => Ok(out),
    }
}

/// Device ms (median of `iters`) of cuDNN's convolution for `p` on scratch operands, `None`
/// without cuDNN or an algorithm for `p`: timings only, the operands' values are arbitrary.
pub(super) fn time_cudnn(dev: &Device, p: &Problem, iters: usize) -> Result<Option<f64>> {
    let Some(dnn) = dev.cudnn() else {
        return Ok(None);
    };
    let count = |s: &[usize]| s.iter().product::<usize>();
    let x = dev.alloc(count(&p.x), p.dtype)?;
    let w = dev.alloc(count(&p.w), p.dtype)?;
    let y = dev.alloc(count(&p.out()), p.dtype)?;
    let ops = Operands {
        x: x.ptr(),
        w: w.ptr(),
        y: y.ptr(),
        bias: None,
        residual: None,
    };
    if dnn.forward(&dev.pool, p, &ops)?.is_none() {
        return Ok(None);
    }
    let (median, _) = dev.time(1, iters, || dnn.forward(&dev.pool, p, &ops).map(|_| ()))?;
    Ok(Some(median))
}

/// The direct f32 kernel: one thread per output element.
fn direct(
    dev: &Device,
    x: &CudaTensor,
    weight: &CudaTensor,
    bias: Option<&CudaTensor>,
    stride: [usize; 3],
    pad: [[usize; 2]; 3],
) -> Result<CudaTensor> {
    let bias_shape = bias.map(CudaTensor::shape);
    let shapes::Conv3d {
        x: [f, h, w, cin],
        k: [kt, kh, kw],
        out: [fo, ho, wo, cout],
    } = shapes::conv3d(x.shape(), weight.shape(), bias_shape, stride, pad)?;
    let out = CudaTensor::alloc(dev, &[fo, ho, wo, cout])?;
    // The kernel indexes within one filter with 32-bit ints.
    let small = |v: usize| i32::try_from(v).ok();
    if small(cin * kt * kh * kw).is_none() {
        return Err(Error::shape("conv3d", "filter too large", weight.shape()));
    }
    let ints = [
        cin, f, h, w, cout, fo, ho, wo, kt, kh, kw, stride[0], stride[1], stride[2], pad[0][0],
        pad[1][0], pad[2][0],
    ];
    let mut v = [0i32; 17];
    for (o, x) in v.iter_mut().zip(ints) {
        *o = small(x).ok_or_else(|| Error::invalid("conv3d", format!("extent {x} too large")))?;
    }
    let n = out.numel();
    let args = Conv3dArgs {
        out: out.ptr(),
        x: x.ptr(),
        w: weight.ptr(),
        bias: bias.map_or(0, CudaTensor::ptr),
        n: n as u64,
        ints: v,
    };
    dev.launch_elements(kernels::CONV3D, n, &args)?;
    Ok(out)
}
