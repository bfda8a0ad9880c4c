//! `conv3d` on the device: bf16 convolutions onto at most 8 channels on the narrow implicit-GEMM
//! kernel of `kernels/conv.cu`, the rest on cuDNN when it loads, else the direct f32 kernel.

use cudarc::driver::{DeviceRepr, LaunchConfig};

use super::alloc::DeviceBuffer;
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

#[repr(C)]
struct NarrowConvArgs {
    out: u64,
    x: u64,
    w: u64,
    bias: u64,
    residual: u64,
    /// conv.cu's `int` fields in order: input `cin, f, h, w_`, output `cout, fo, ho, wo`, kernel
    /// `kt, kh, kw`, leading padding `pt, ph, pw`.
    ints: [i32; 14],
}

// SAFETY: `#[repr(C)]` mirror of `NarrowConvArgs` in conv.cu (pointers as u64, `int` as i32).
unsafe impl DeviceRepr for NarrowConvArgs {}

/// conv.cu's `NC_FRAMES`, `NC_ROWS`, `NC_BW` and `NC_THREADS`: the output frames, rows and
/// pixels of a CTA of the narrow kernel, and its threads.
const NARROW_TILE: [usize; 3] = [4, 4, 64];
const NARROW_THREADS: u32 = 128;
/// The most output channels the narrow kernel computes (one n8 MMA column).
const NARROW_COUT: usize = 8;
/// Dynamic shared memory a narrow CTA may take: what a block gets on every GPU from sm_80 on
/// (sm_86/89/120 allow 99 KB), three CTAs an SM on Hopper at the VAE head's 69 KB.
const NARROW_SMEM: usize = 99 << 10;

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
    // Both engines take the operands in `dtype`, into one output; the bias and the residual are
    // added in their epilogues.
    let to = |t: &CudaTensor| converted(dev, t, dtype);
    let (xd, wd) = (to(x)?, to(weight)?);
    let bias_d = bias.map(to).transpose()?;
    let residual_d = residual.map(to).transpose()?;
    let y = CudaTensor::alloc_as(dev, &out, dtype)?;
    let ops = |x: &CudaTensor| Operands {
        x: x.ptr(),
        w: wd.ptr(),
        y: y.ptr(),
        bias: bias_d.as_ref().map(CudaTensor::ptr),
        residual: residual_d.as_ref().map(CudaTensor::ptr),
    };
    if let Some(plan) = Narrow::plan(dev, dtype, xd.shape(), wd.shape(), stride, pad)? {
        plan.launch(dev, &ops(&xd))?;
        return Ok(y);
    }
    if let Some(dnn) = dev.cudnn() {
        // cuDNN pads symmetrically; the causal time padding and downsample2d's right/bottom
        // zero column are materialized first.
        let sym = pad.map(|[before, after]| before.min(after));
        let extra: [[usize; 2]; 3] = [0, 1, 2].map(|d| [pad[d][0] - sym[d], pad[d][1] - sym[d]]);
        let xd = if extra.iter().flatten().any(|&p| p > 0) {
            layout::pad_zero(dev, &xd, extra)?
        } else {
            xd
        };
        let s = xd.shape();
        let problem = Problem {
            dtype,
            x: [s[0], s[1], s[2], s[3]],
            w: [0, 1, 2, 3, 4].map(|d| wd.shape()[d]),
            stride,
            pad: sym,
        };
        if let Some(fused) = dnn.forward(&dev.pool, &problem, &ops(&xd))? {
            if fused {
                return Ok(y);
            }
            if let Some(b) = &bias_d {
                elementwise::add_channel_bias(dev, &y, b)?;
            }
            return plus(dev, y, residual_d.as_ref());
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
    let scratch = Scratch::new(dev, p)?;
    let ops = scratch.operands();
    if dnn.forward(&dev.pool, p, &ops)?.is_none() {
        return Ok(None);
    }
    let (median, _) = dev.time(1, iters, || dnn.forward(&dev.pool, p, &ops).map(|_| ()))?;
    Ok(Some(median))
}

/// Device times (ms) of one convolution on each engine, `None` where that engine does not run it.
#[derive(Debug, Clone, Copy)]
pub struct ConvTimes {
    pub cudnn: Option<f64>,
    pub narrow: Option<f64>,
}

/// Device ms (median of `iters`) of the narrow kernel for `p` on scratch operands, `None` where
/// it does not take `p`: timings only, the operands' values are arbitrary.
pub(super) fn time_narrow(dev: &Device, p: &Problem, iters: usize) -> Result<Option<f64>> {
    let pad = p.pad.map(|v| [v, v]);
    let Some(plan) = Narrow::plan(dev, p.dtype, &p.x, &p.w, p.stride, pad)? else {
        return Ok(None);
    };
    let scratch = Scratch::new(dev, p)?;
    let ops = scratch.operands();
    let (median, _) = dev.time(1, iters, || plan.launch(dev, &ops))?;
    Ok(Some(median))
}

/// Operands of `p`'s shapes with arbitrary values, for timing an engine.
struct Scratch {
    x: DeviceBuffer,
    w: DeviceBuffer,
    y: DeviceBuffer,
}

impl Scratch {
    fn new(dev: &Device, p: &Problem) -> Result<Self> {
        let alloc = |s: &[usize]| dev.alloc(s.iter().product(), p.dtype);
        Ok(Scratch {
            x: alloc(&p.x)?,
            w: alloc(&p.w)?,
            y: alloc(&p.out())?,
        })
    }

    fn operands(&self) -> Operands {
        Operands {
            x: self.x.ptr(),
            w: self.w.ptr(),
            y: self.y.ptr(),
            bias: None,
            residual: None,
        }
    }
}

/// One launch of `conv3d_narrow_bf16`: the problem's extents and the grid over its output.
struct Narrow {
    cfg: LaunchConfig,
    ints: [i32; 14],
}

impl Narrow {
    /// The launch for `x: [F, H, W, Cin]` by `w: [Cout, kt, kh, kw, Cin]`, or `None` where the
    /// kernel does not apply: not bf16, not unit stride, more than 8 output channels, input
    /// channels not a multiple of 16, a filter too large for its shared memory, or a GPU before
    /// sm_80.
    fn plan(
        dev: &Device,
        dtype: DType,
        x: &[usize],
        w: &[usize],
        stride: [usize; 3],
        pad: [[usize; 2]; 3],
    ) -> Result<Option<Narrow>> {
        let shapes::Conv3d {
            x: [f, h, width, cin],
            k: [kt, kh, kw],
            out: [fo, ho, wo, cout],
        } = shapes::conv3d(x, w, None, stride, pad)?;
        let taps = kt * kh * kw;
        // B fragments (8 bytes a lane and (tap, 16 channels)) and two input strips.
        let smem = taps * cin / 16 * 256 + 2 * (NARROW_TILE[2] + kw - 1) * (2 * cin + 16);
        let applies = dtype == DType::BF16
            && dev.info.compute_capability.0 >= 8
            && stride == [1; 3]
            && (1..=NARROW_COUT).contains(&cout)
            && cin % 16 == 0
            && smem <= NARROW_SMEM;
        let args = [
            cin, f, h, width, cout, fo, ho, wo, kt, kh, kw, pad[0][0], pad[1][0], pad[2][0],
        ];
        let [frames, rows, pixels] = NARROW_TILE;
        // Grid y and z take at most 65535 CTAs.
        let grid = |n: usize, tile: usize, most: u32| {
            u32::try_from(n.div_ceil(tile)).ok().filter(|&g| g <= most)
        };
        let (true, Some(ints), Some(gx), Some(gy), Some(gz)) = (
            applies,
            ints(args),
            grid(wo, pixels, u32::MAX >> 1),
            grid(ho, rows, 65535),
            grid(fo, frames, 65535),
        ) else {
            return Ok(None);
        };
        Ok(Some(Narrow {
            cfg: LaunchConfig {
                grid_dim: (gx, gy, gz),
                block_dim: (NARROW_THREADS, 1, 1),
                shared_mem_bytes: smem as u32,
            },
            ints,
        }))
    }

    fn launch(&self, dev: &Device, ops: &Operands) -> Result<()> {
        let (gx, gy, gz) = self.cfg.grid_dim;
        if [gx, gy, gz].contains(&0) {
            return Ok(());
        }
        let args = NarrowConvArgs {
            out: ops.y,
            x: ops.x,
            w: ops.w,
            bias: ops.bias.unwrap_or(0),
            residual: ops.residual.unwrap_or(0),
            ints: self.ints,
        };
        dev.launch(kernels::CONV3D_NARROW, self.cfg, &args)
    }
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
    if ints([cin * kt * kh * kw]).is_none() {
        return Err(Error::shape("conv3d", "filter too large", weight.shape()));
    }
    let v = ints([
        cin, f, h, w, cout, fo, ho, wo, kt, kh, kw, stride[0], stride[1], stride[2], pad[0][0],
        pad[1][0], pad[2][0],
    ])
    .ok_or_else(|| Error::invalid("conv3d", "an extent past the kernel's 32-bit ints"))?;
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

/// `v` as a kernel's `int` fields, `None` when one does not fit.
fn ints<const N: usize>(v: [usize; N]) -> Option<[i32; N]> {
    let mut out = [0; N];
    for (o, x) in out.iter_mut().zip(v) {
        *o = i32::try_from(x).ok()?;
    }
    Some(out)
}
