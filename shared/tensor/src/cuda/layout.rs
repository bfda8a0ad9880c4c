//! Launchers for `kernels/layout.cu`: slicing, concatenation, permutes, patch layout, upsampling.
//! All are copies, bit-exact against the CPU backend.

use cudarc::driver::DeviceRepr;

use super::CudaTensor;
use super::device::Device;
use super::kernels;
use crate::{Error, Result};

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
}

#[repr(C)]
struct PermuteArgs {
    out: u64,
    x: u64,
    n: u64,
    out_shape: [u64; PERMUTE_MAX_RANK],
    src_strides: [u64; PERMUTE_MAX_RANK],
    rank: i32,
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
    sf: u32,
    sh: u32,
    sw: u32,
}

// SAFETY (all four): `#[repr(C)]` mirrors of the kernels' parameter structs (device pointers
// as u64, `unsigned` as u32, `int` as i32), in field order.
unsafe impl DeviceRepr for Copy2dArgs {}
unsafe impl DeviceRepr for PermuteArgs {}
unsafe impl DeviceRepr for PatchArgs {}
unsafe impl DeviceRepr for UpsampleArgs {}

const F32: u64 = std::mem::size_of::<f32>() as u64;

/// Copies `rows × cols` elements between two row-pitched regions, offsets in elements.
#[allow(clippy::too_many_arguments)]
fn copy2d(
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
    dev.launch_elements(
        kernels::COPY2D,
        rows * cols,
        &Copy2dArgs {
            dst: dst.ptr() + dst_offset as u64 * F32,
            src: src.ptr() + src_offset as u64 * F32,
            rows: rows as u64,
            cols: cols as u64,
            dst_pitch: dst_pitch as u64,
            src_pitch: src_pitch as u64,
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
    let shape = t.shape();
    if dim >= shape.len() || start.checked_add(len).is_none_or(|end| end > shape[dim]) {
        return Err(Error::shape(
            "slice",
            format!(
                "{start}..{} of dim {dim} is out of range",
                start.saturating_add(len)
            ),
            shape,
        ));
    }
    let outer: usize = shape[..dim].iter().product();
    let inner: usize = shape[dim + 1..].iter().product();
    let mut new_shape = shape.to_vec();
    new_shape[dim] = len;
    let out = CudaTensor::alloc(dev, &new_shape)?;
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
    let first = parts
        .first()
        .ok_or_else(|| Error::invalid("concat", "no tensors"))?;
    if dim >= first.shape().len() {
        return Err(Error::shape(
            "concat",
            format!("dim {dim} out of range"),
            first.shape(),
        ));
    }
    for p in parts {
        let same = p.shape().len() == first.shape().len()
            && p.shape()
                .iter()
                .zip(first.shape())
                .enumerate()
                .all(|(i, (a, b))| i == dim || a == b);
        if !same {
            return Err(Error::shape(
                "concat",
                format!(
                    "{:?} does not match {:?} outside dim {dim}",
                    p.shape(),
                    first.shape()
                ),
                p.shape(),
            ));
        }
    }
    let outer: usize = first.shape()[..dim].iter().product();
    let inner: usize = first.shape()[dim + 1..].iter().product();
    let total: usize = parts.iter().map(|p| p.shape()[dim]).sum();
    let mut shape = first.shape().to_vec();
    shape[dim] = total;
    let out = CudaTensor::alloc(dev, &shape)?;
    let mut at = 0;
    for p in parts {
        let chunk = p.shape()[dim] * inner;
        copy2d(dev, &out, at, total * inner, p, 0, chunk, outer, chunk)?;
        at += chunk;
    }
    Ok(out)
}

pub(super) fn permute(dev: &Device, t: &CudaTensor, perm: &[usize]) -> Result<CudaTensor> {
    let shape = t.shape();
    let rank = shape.len();
    let mut seen = vec![false; rank];
    if perm.len() != rank
        || perm
            .iter()
            .any(|&p| p >= rank || std::mem::replace(&mut seen[p], true))
    {
        return Err(Error::shape(
            "permute",
            format!("{perm:?} is not a permutation of the dims"),
            shape,
        ));
    }
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
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let out = CudaTensor::alloc(dev, &out_shape)?;
    let mut args = PermuteArgs {
        out: out.ptr(),
        x: t.ptr(),
        n: t.numel() as u64,
        out_shape: [1; PERMUTE_MAX_RANK],
        src_strides: [0; PERMUTE_MAX_RANK],
        rank: rank as i32,
    };
    for (d, &p) in perm.iter().enumerate() {
        args.out_shape[d] = shape[p] as u64;
        args.src_strides[d] = strides[p] as u64;
    }
    dev.launch_elements(kernels::PERMUTE, t.numel(), &args)?;
    Ok(out)
}

fn dims4(op: &'static str, t: &CudaTensor) -> Result<[usize; 4]> {
    match *t.shape() {
        [c, f, h, w] => Ok([c, f, h, w]),
        _ => Err(Error::shape(op, "expected [C, F, H, W]", t.shape())),
    }
}

fn u32s<const N: usize>(op: &'static str, values: [usize; N]) -> Result<[u32; N]> {
    let mut out = [0u32; N];
    for (o, v) in out.iter_mut().zip(values) {
        *o = u32::try_from(v).map_err(|_| Error::invalid(op, format!("extent {v} too large")))?;
    }
    Ok(out)
}

pub(super) fn patchify(dev: &Device, x: &CudaTensor, patch: [usize; 3]) -> Result<CudaTensor> {
    let [c, f, h, w] = dims4("patchify", x)?;
    let [pt, ph, pw] = patch;
    if patch.contains(&0) || f % pt != 0 || h % ph != 0 || w % pw != 0 {
        return Err(Error::shape(
            "patchify",
            format!("F, H, W must be multiples of the patch {patch:?}"),
            x.shape(),
        ));
    }
    let grid = [f / pt, h / ph, w / pw];
    let out = CudaTensor::alloc(dev, &[grid.iter().product(), c * pt * ph * pw])?;
    let [c, gf, gh, gw, pt, ph, pw] = u32s("patchify", [c, grid[0], grid[1], grid[2], pt, ph, pw])?;
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
    dev.launch_elements(kernels::PATCHIFY, n, &args)?;
    Ok(out)
}

pub(super) fn unpatchify(
    dev: &Device,
    x: &CudaTensor,
    grid: [usize; 3],
    patch: [usize; 3],
    channels: usize,
) -> Result<CudaTensor> {
    let [gf, gh, gw] = grid;
    let [pt, ph, pw] = patch;
    let feat = pt * ph * pw * channels;
    if x.shape() != [gf * gh * gw, feat] {
        return Err(Error::shape(
            "unpatchify",
            format!("expected [{}, {feat}]", gf * gh * gw),
            x.shape(),
        ));
    }
    let out = CudaTensor::alloc(dev, &[channels, gf * pt, gh * ph, gw * pw])?;
    let [c, gf, gh, gw, pt, ph, pw] = u32s("unpatchify", [channels, gf, gh, gw, pt, ph, pw])?;
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
    dev.launch_elements(kernels::UNPATCHIFY, n, &args)?;
    Ok(out)
}

pub(super) fn upsample_nearest(
    dev: &Device,
    x: &CudaTensor,
    factor: [usize; 3],
) -> Result<CudaTensor> {
    let [c, f, h, w] = dims4("upsample_nearest", x)?;
    if factor.contains(&0) {
        return Err(Error::invalid("upsample_nearest", "factors must be >= 1"));
    }
    let [sf, sh, sw] = factor;
    let out = CudaTensor::alloc(dev, &[c, f * sf, h * sh, w * sw])?;
    let [f, h, w, sf, sh, sw] = u32s("upsample_nearest", [f, h, w, sf, sh, sw])?;
    let n = out.numel();
    let args = UpsampleArgs {
        out: out.ptr(),
        x: x.ptr(),
        n: n as u64,
        f,
        h,
        w,
        sf,
        sh,
        sw,
    };
    dev.launch_elements(kernels::UPSAMPLE_NEAREST, n, &args)?;
    Ok(out)
}
