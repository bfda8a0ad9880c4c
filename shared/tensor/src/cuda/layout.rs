//! Launchers for `kernels/layout.cu`: slicing, concatenation, permutes, patch layout, upsampling.
//! All are copies, bit-exact against the CPU backend.

use cudarc::driver::{DeviceRepr, result as driver};

use super::device::Device;
use super::kernels;
use super::{CudaTensor, Wrap};
use crate::{Error, Result, shapes};

/// `PERMUTE_MAX_RANK` of layout.cu.
const PERMUTE_MAX_RANK: usize = 8;

#[repr(C)]
struct Copy2dArgs {
    dst: u64,
    src: u64,
    rows: u64,
    cols: u64,
    dst_pitch: u64,
    src_pitch: u64,
    esize: i32,
}

#[repr(C)]
struct PermuteArgs {
    out: u64,
    x: u64,
    n: u64,
    out_shape: [u64; PERMUTE_MAX_RANK],
    src_strides: [u64; PERMUTE_MAX_RANK],
    rank: i32,
    esize: i32,
}

#[repr(C)]
struct PatchArgs {
    out: u64,
    x: u64,
    n: u64,
    c: u32,
    gf: u32,
    gh: u32,
    gw: u32,
    pt: u32,
    ph: u32,
    pw: u32,
}

#[repr(C)]
struct UpsampleArgs {
    out: u64,
    x: u64,
    n: u64,
    f: u32,
    h: u32,
    w: u32,
    c: u32,
    sf: u32,
    sh: u32,
    sw: u32,
    esize: i32,
    vec16: i32,
}

#[repr(C)]
struct PadArgs {
    out: u64,
    x: u64,
    n: u64,
    /// Channels `c`, input `f, h, w`, output `fo, ho, wo`, leading padding `f0, h0, w0`.
    dims: [u32; 10],
    esize: i32,
}

// SAFETY (all five): `#[repr(C)]` mirrors of the kernels' parameter structs (device pointers
// as u64, `unsigned` as u32, `int` as i32), in field order.
unsafe impl DeviceRepr for Copy2dArgs {}
unsafe impl DeviceRepr for PermuteArgs {}
unsafe impl DeviceRepr for PatchArgs {}
unsafe impl DeviceRepr for UpsampleArgs {}
unsafe impl DeviceRepr for PadArgs {}

/// Copies `rows × cols` elements between two row-pitched regions of the same element type,
/// offsets in elements.
#[allow(clippy::too_many_arguments)]
pub(super) fn copy2d(
    dev: &Device,
    dst: &CudaTensor,
    dst_offset: usize,
    dst_pitch: usize,
    src: &CudaTensor,
    src_offset: usize,
    src_pitch: usize,
    rows: usize,
    cols: usize,
) -> Result<()> {
    let esize = src.dtype().size_in_bytes();
    // One contiguous run (a slice or concatenation along the outermost dim, the VAE's cached
    // frames) goes through the driver's device-to-device copy, at full bandwidth.
    if rows == 1 || (dst_pitch == cols && src_pitch == cols) {
        let bytes = rows * cols * esize;
        if bytes > 0 {
            dev.stream.context().bind_to_thread().w("copy")?;
            // SAFETY: both ranges lie inside their tensors (the callers' shape checks), are
            // distinct buffers, and the copy is ordered on the backend's stream.
            unsafe {
                driver::memcpy_dtod_async(
                    dst.ptr() + (dst_offset * esize) as u64,
                    src.ptr() + (src_offset * esize) as u64,
                    bytes,
                    dev.stream.cu_stream(),
                )
            }
            .w("copy")?;
        }
        return Ok(());
    }
    dev.launch_elements(
        kernels::COPY2D,
        rows * cols,
        &Copy2dArgs {
            dst: dst.ptr() + (dst_offset * esize) as u64,
            src: src.ptr() + (src_offset * esize) as u64,
            rows: rows as u64,
            cols: cols as u64,
            dst_pitch: dst_pitch as u64,
            src_pitch: src_pitch as u64,
            esize: esize as i32,
        },
    )
}

pub(super) fn slice(
    dev: &Device,
    t: &CudaTensor,
    dim: usize,
    start: usize,
    len: usize,
) -> Result<CudaTensor> {
    let new_shape = shapes::slice(t.shape(), dim, start, len)?;
    let shape = t.shape();
    let outer: usize = shape[..dim].iter().product();
    let inner: usize = shape[dim + 1..].iter().product();
    let out = CudaTensor::alloc_as(dev, &new_shape, t.dtype())?;
    copy2d(
        dev,
        &out,
        0,
        len * inner,
        t,
        start * inner,
        shape[dim] * inner,
        outer,
        len * inner,
    )?;
    Ok(out)
}

pub(super) fn concat(dev: &Device, parts: &[&CudaTensor], dim: usize) -> Result<CudaTensor> {
    let shape = shapes::concat(&parts.iter().map(|p| p.shape()).collect::<Vec<_>>(), dim)?;
    let first = parts[0];
    let outer: usize = first.shape()[..dim].iter().product();
    let inner: usize = first.shape()[dim + 1..].iter().product();
    let total = shape[dim];
    let out = CudaTensor::alloc_as(dev, &shape, first.dtype())?;
    let mut at = 0;
    for p in parts {
        let chunk = p.shape()[dim] * inner;
        copy2d(dev, &out, at, total * inner, p, 0, chunk, outer, chunk)?;
        at += chunk;
    }
    Ok(out)
}

pub(super) fn permute(dev: &Device, t: &CudaTensor, perm: &[usize]) -> Result<CudaTensor> {
    let out_shape = shapes::permute(t.shape(), perm)?;
    let shape = t.shape();
    let rank = shape.len();
    if rank > PERMUTE_MAX_RANK {
        return Err(Error::shape(
            "permute",
            format!("at most {PERMUTE_MAX_RANK} dims"),
            shape,
        ));
    }
    let mut strides = vec![1usize; rank];
    for d in (0..rank.saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    let out = CudaTensor::alloc_as(dev, &out_shape, t.dtype())?;
    let mut args = PermuteArgs {
        out: out.ptr(),
        x: t.ptr(),
        n: t.numel() as u64,
        out_shape: [1; PERMUTE_MAX_RANK],
        src_strides: [0; PERMUTE_MAX_RANK],
        rank: rank as i32,
        esize: t.dtype().size_in_bytes() as i32,
    };
    for (d, &p) in perm.iter().enumerate() {
        args.out_shape[d] = shape[p] as u64;
        args.src_strides[d] = strides[p] as u64;
    }
    dev.launch_elements(kernels::PERMUTE, t.numel(), &args)?;
    Ok(out)
}

fn u32s<const N: usize>(op: &'static str, values: [usize; N]) -> Result<[u32; N]> {
    let mut out = [0u32; N];
    for (o, v) in out.iter_mut().zip(values) {
        *o = u32::try_from(v).map_err(|_| Error::invalid(op, format!("extent {v} too large")))?;
    }
    Ok(out)
}

/// Launches `kernel` (patchify or unpatchify) between `x` and `out` for `channels` over a `grid`
/// of `patch`es.
fn launch_patch(
    dev: &Device,
    (kernel, op): (kernels::Kernel, &'static str),
    x: &CudaTensor,
    out: &CudaTensor,
    [c, gf, gh, gw]: [usize; 4],
    [pt, ph, pw]: [usize; 3],
) -> Result<()> {
    let [c, gf, gh, gw, pt, ph, pw] = u32s(op, [c, gf, gh, gw, pt, ph, pw])?;
    let n = out.numel();
    let args = PatchArgs {
        out: out.ptr(),
        x: x.ptr(),
        n: n as u64,
        c,
        gf,
        gh,
        gw,
        pt,
        ph,
        pw,
    };
    dev.launch_elements(kernel, n, &args)
}

pub(super) fn patchify(dev: &Device, x: &CudaTensor, patch: [usize; 3]) -> Result<CudaTensor> {
    let ([c, ..], [gf, gh, gw]) = shapes::patchify(x.shape(), patch)?;
    let [pt, ph, pw] = patch;
    let out = CudaTensor::alloc(dev, &[gf * gh * gw, c * pt * ph * pw])?;
    let kernel = (kernels::PATCHIFY, "patchify");
    launch_patch(dev, kernel, x, &out, [c, gf, gh, gw], patch)?;
    Ok(out)
}

pub(super) fn unpatchify(
    dev: &Device,
    x: &CudaTensor,
    grid: [usize; 3],
    patch: [usize; 3],
    channels: usize,
) -> Result<CudaTensor> {
    shapes::unpatchify(x.shape(), grid, patch, channels)?;
    let [gf, gh, gw] = grid;
    let [pt, ph, pw] = patch;
    let out = CudaTensor::alloc(dev, &[channels, gf * pt, gh * ph, gw * pw])?;
    let kernel = (kernels::UNPATCHIFY, "unpatchify");
    launch_patch(dev, kernel, x, &out, [channels, gf, gh, gw], patch)?;
    Ok(out)
}

pub(super) fn upsample_nearest(
    dev: &Device,
    x: &CudaTensor,
    factor: [usize; 3],
) -> Result<CudaTensor> {
    let [f, h, w, c] = shapes::upsample_nearest(x.shape(), factor)?;
    let [sf, sh, sw] = factor;
    let out = CudaTensor::alloc_as(dev, &[f * sf, h * sh, w * sw, c], x.dtype())?;
    let esize = x.dtype().size_in_bytes();
    let vec16 = (c * esize).is_multiple_of(16);
    let [f, h, w, c, sf, sh, sw] = u32s("upsample_nearest", [f, h, w, c, sf, sh, sw])?;
    let n = if vec16 {
        out.numel() * esize / 16
    } else {
        out.numel()
    };
    let args = UpsampleArgs {
        out: out.ptr(),
        x: x.ptr(),
        n: n as u64,
        f,
        h,
        w,
        c,
        sf,
        sh,
        sw,
        esize: esize as i32,
        vec16: vec16 as i32,
    };
    dev.launch_elements(kernels::UPSAMPLE_NEAREST, n, &args)?;
    Ok(out)
}

/// `x: [F, H, W, C]` with `pad[d] = (before, after)` zeros around it per (F, H, W).
pub(super) fn pad_zero(dev: &Device, x: &CudaTensor, pad: [[usize; 2]; 3]) -> Result<CudaTensor> {
    let &[f, h, w, c] = x.shape() else {
        return Err(Error::shape("pad", "expected [F, H, W, C]", x.shape()));
    };
    let [fo, ho, wo] = [0, 1, 2].map(|d| [f, h, w][d] + pad[d][0] + pad[d][1]);
    let out = CudaTensor::alloc_as(dev, &[fo, ho, wo, c], x.dtype())?;
    let dims = u32s(
        "pad",
        [c, f, h, w, fo, ho, wo, pad[0][0], pad[1][0], pad[2][0]],
    )?;
    let n = out.numel();
    let args = PadArgs {
        out: out.ptr(),
        x: x.ptr(),
        n: n as u64,
        dims,
        esize: x.dtype().size_in_bytes() as i32,
    };
    dev.launch_elements(kernels::PAD_ZERO, n, &args)?;
    Ok(out)
}
