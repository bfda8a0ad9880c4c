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
struct PhaseArgs {
    out: u64,
    x: u64,
    n: u64,
    ho: u32,
    wo: u32,
    run: u32,
    esize: i32,
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
unsafe impl DeviceRepr for PhaseArgs {}
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
    let out = CudaTensor::alloc_as(dev, &out_shape, t.dtype())?;
    let esize = t.dtype().size_in_bytes();
    let walk = PermuteWalk::new(shape, perm).in_units(esize, [out.ptr(), t.ptr()]);
    let mut args = PermuteArgs {
        out: out.ptr(),
        x: t.ptr(),
        n: (t.numel() / walk.per_unit) as u64,
        out_shape: [1; PERMUTE_MAX_RANK],
        src_strides: [0; PERMUTE_MAX_RANK],
        rank: walk.dims.len() as i32,
        esize: (esize * walk.per_unit) as i32,
    };
    for (d, &(extent, stride)) in walk.dims.iter().enumerate() {
        args.out_shape[d] = extent as u64;
        args.src_strides[d] = stride as u64;
    }
    dev.launch_elements(kernels::PERMUTE, args.n as usize, &args)?;
    Ok(out)
}

/// How a permute's output, in order, walks its input: `(extent, input stride)` per output
/// dimension, outermost first, in units of `per_unit` elements.
#[derive(Debug, PartialEq)]
struct PermuteWalk {
    dims: Vec<(usize, usize)>,
    per_unit: usize,
}

impl PermuteWalk {
    /// The walk of `perm` over a row-major `shape`, with size-1 dimensions dropped and each
    /// output dimension merged into the one before it where the two step through the input as
    /// one (the outer's stride is the inner's extent times its stride): the permute's arithmetic
    /// per element is then the fewest digits.
    fn new(shape: &[usize], perm: &[usize]) -> Self {
        let strides = shapes::strides(shape);
        let mut dims: Vec<(usize, usize)> = Vec::new();
        for &p in perm.iter().filter(|&&p| shape[p] != 1) {
            match dims.last_mut() {
                Some((extent, stride)) if *stride == shape[p] * strides[p] => {
                    *extent *= shape[p];
                    *stride = strides[p];
                }
                _ => dims.push((shape[p], strides[p])),
            }
        }
        if dims.is_empty() {
            dims.push((1, 1));
        }
        Self { dims, per_unit: 1 }
    }

    /// The walk in 16-byte units where the innermost dimension is contiguous in the input and
    /// every row it copies, and both tensors, start on 16 bytes (`esize`-byte elements at
    /// `ptrs`): a thread then moves 16 bytes instead of 2 or 4. Otherwise unchanged.
    fn in_units(mut self, esize: usize, ptrs: [u64; 2]) -> Self {
        let k = 16 / esize.max(1);
        let Some(&(inner, inner_stride)) = self.dims.last() else {
            return self;
        };
        let aligned = 16 % esize == 0
            && inner_stride == 1
            && inner % k == 0
            && self.dims.iter().all(|&(_, s)| s == 1 || s % k == 0)
            && ptrs.iter().all(|p| p % 16 == 0);
        if aligned && k > 1 {
            for (extent, stride) in self.dims.iter_mut() {
                if *stride == 1 {
                    *extent /= k;
                } else {
                    *stride /= k;
                }
            }
            self.per_unit = k;
        }
        self
    }
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

pub(super) fn interleave_phases(dev: &Device, x: &CudaTensor) -> Result<CudaTensor> {
    let [f, ho, wo, c] = shapes::interleave_phases(x.shape())?;
    let out = CudaTensor::alloc_as(dev, &[f, ho, wo, c], x.dtype())?;
    let esize = x.dtype().size_in_bytes();
    // 16-byte units when a pixel's channels are a whole number of them.
    let (unit, run) = if (c * esize).is_multiple_of(16) {
        (16, c * esize / 16)
    } else {
        (esize, c)
    };
    let [ho, wo, run] = u32s("interleave_phases", [ho, wo, run])?;
    let n = out.numel() * esize / unit;
    let args = PhaseArgs {
        out: out.ptr(),
        x: x.ptr(),
        n: n as u64,
        ho,
        wo,
        run,
        esize: unit as i32,
    };
    dev.launch_elements(kernels::INTERLEAVE_PHASES, n, &args)?;
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

#[cfg(test)]
mod tests {
    use super::PermuteWalk;

    fn walk(dims: &[(usize, usize)], per_unit: usize) -> PermuteWalk {
        PermuteWalk {
            dims: dims.to_vec(),
            per_unit,
        }
    }

    #[test]
    fn dimensions_that_step_through_the_input_as_one_merge() {
        // The VAE's channels-last frames to channel-first: frames, rows, columns walk as one.
        let w = PermuteWalk::new(&[4, 5, 6, 3], &[3, 0, 1, 2]);
        assert_eq!(w, walk(&[(3, 1), (120, 3)], 1));
        // Its time upsample's interleave [t, h, w, 2, c] -> [t, 2, h, w, c]: rows and columns merge.
        let w = PermuteWalk::new(&[2, 3, 4, 2, 8], &[0, 3, 1, 2, 4]);
        assert_eq!(w, walk(&[(2, 192), (2, 8), (12, 16), (8, 1)], 1));
        // Size-1 dimensions drop out; the identity is one dimension.
        let w = PermuteWalk::new(&[1, 5, 1, 7], &[2, 1, 3, 0]);
        assert_eq!(w, walk(&[(35, 1)], 1));
        assert_eq!(PermuteWalk::new(&[1, 1], &[1, 0]), walk(&[(1, 1)], 1));
        assert_eq!(
            PermuteWalk::new(&[3, 4, 5, 6], &[3, 1, 0, 2]),
            walk(&[(6, 1), (4, 30), (3, 120), (5, 6)], 1)
        );
    }

    #[test]
    fn contiguous_aligned_rows_move_in_16_byte_units() {
        let upsample = || PermuteWalk::new(&[2, 3, 4, 2, 8], &[0, 3, 1, 2, 4]);
        // bf16: 8 elements a unit.
        assert_eq!(
            upsample().in_units(2, [0, 4096]),
            walk(&[(2, 24), (2, 1), (12, 2), (1, 1)], 8)
        );
        // f32: 4 a unit.
        assert_eq!(
            upsample().in_units(4, [64, 128]),
            walk(&[(2, 48), (2, 2), (12, 4), (2, 1)], 4)
        );
        // A pointer off 16 bytes, a strided innermost dimension, rows of a part of a unit: as is.
        assert_eq!(upsample().in_units(2, [0, 8]), upsample());
        let channel_first = || PermuteWalk::new(&[4, 5, 6, 3], &[3, 0, 1, 2]);
        assert_eq!(channel_first().in_units(2, [0, 0]), channel_first());
        let short_rows = || PermuteWalk::new(&[3, 4, 6], &[1, 0, 2]);
        assert_eq!(short_rows().in_units(2, [0, 0]), short_rows());
    }
}
