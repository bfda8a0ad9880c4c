//! Launcher for `kernels/conv.cu`.

use cudarc::driver::DeviceRepr;

use super::CudaTensor;
use super::device::Device;
use super::kernels;
use crate::{Error, Result};

#[repr(C)]
struct Conv3dArgs {
    out: u64,
    x: u64,
    w: u64,
    bias: u64,
    n: u64,
    cin: i32,
    f: i32,
    h: i32,
    w_: i32,
    fo: i32,
    ho: i32,
    wo: i32,
    kt: i32,
    kh: i32,
    kw: i32,
    st: i32,
    sh: i32,
    sw: i32,
    pt: i32,
    ph: i32,
    pw: i32,
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
    let &[cin, f, h, w] = x.shape() else {
        return Err(Error::shape("conv3d", "expected [C, F, H, W]", x.shape()));
    };
    let &[cout, wcin, kt, kh, kw] = weight.shape() else {
        return Err(Error::shape(
            "conv3d",
            "weight must be [Cout, Cin, kt, kh, kw]",
            weight.shape(),
        ));
    };
    if wcin != cin || stride.contains(&0) {
        return Err(Error::shape(
            "conv3d",
            format!(
                "weight {:?} / stride {stride:?} do not fit input {:?}",
                weight.shape(),
                x.shape()
            ),
            weight.shape(),
        ));
    }
    if let Some(b) = bias
        && b.shape() != [cout]
    {
        return Err(Error::shape(
            "conv3d",
            format!("bias must be [{cout}]"),
            b.shape(),
        ));
    }
    let padded = [
        f + pad[0][0] + pad[0][1],
        h + pad[1][0] + pad[1][1],
        w + pad[2][0] + pad[2][1],
    ];
    if padded[0] < kt || padded[1] < kh || padded[2] < kw {
        return Err(Error::shape(
            "conv3d",
            "kernel larger than the padded input",
            x.shape(),
        ));
    }
    let fo = (padded[0] - kt) / stride[0] + 1;
    let ho = (padded[1] - kh) / stride[1] + 1;
    let wo = (padded[2] - kw) / stride[2] + 1;
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
    let [
        cin,
        f,
        h,
        w_,
        fo,
        ho,
        wo,
        kt,
        kh,
        kw,
        st,
        sh,
        sw,
        pt,
        ph,
        pw,
    ] = v;
    let n = out.numel();
    let args = Conv3dArgs {
        out: out.ptr(),
        x: x.ptr(),
        w: weight.ptr(),
        bias: bias.map_or(0, CudaTensor::ptr),
        n: n as u64,
        cin,
        f,
        h,
        w_,
        fo,
        ho,
        wo,
        kt,
        kh,
        kw,
        st,
        sh,
        sw,
        pt,
        ph,
        pw,
    };
    dev.launch_elements(kernels::CONV3D, n, &args)?;
    Ok(out)
}
