//! Launcher for `kernels/conv.cu`.

use cudarc::driver::DeviceRepr;

use super::CudaTensor;
use super::device::Device;
use super::kernels;
use crate::{Error, Result, shapes};

#[repr(C)]
struct Conv3dArgs {
    out: u64,
    x: u64,
    w: u64,
    bias: u64,
    n: u64,
    /// The `int` fields in conv.cu's order: input `cin, f, h, w_`, output `fo, ho, wo`, kernel
    /// `kt, kh, kw`, stride `st, sh, sw`, leading padding `pt, ph, pw`.
    ints: [i32; 16],
}

// SAFETY: `#[repr(C)]` mirror of `Conv3dArgs` in conv.cu (pointers as u64, `int` as i32).
unsafe impl DeviceRepr for Conv3dArgs {}

pub(super) fn conv3d(
    dev: &Device,
    x: &CudaTensor,
    weight: &CudaTensor,
    bias: Option<&CudaTensor>,
    stride: [usize; 3],
    pad: [[usize; 2]; 3],
) -> Result<CudaTensor> {
    let bias_shape = bias.map(CudaTensor::shape);
    let shapes::Conv3d {
        x: [cin, f, h, w],
        k: [kt, kh, kw],
        out: [cout, fo, ho, wo],
    } = shapes::conv3d(x.shape(), weight.shape(), bias_shape, stride, pad)?;
    let out = CudaTensor::alloc(dev, &[cout, fo, ho, wo])?;
    // The kernel indexes within one filter with 32-bit ints.
    let small = |v: usize| i32::try_from(v).ok();
    if small(cin * kt * kh * kw).is_none() {
        return Err(Error::shape("conv3d", "filter too large", weight.shape()));
    }
    let ints = [
        cin, f, h, w, fo, ho, wo, kt, kh, kw, stride[0], stride[1], stride[2], pad[0][0],
        pad[1][0], pad[2][0],
    ];
    let mut v = [0i32; 16];
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
