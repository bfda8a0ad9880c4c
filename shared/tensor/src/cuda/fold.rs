//! A causal convolution's normalized input with its time taps folded into channels
//! ([`crate::Backend::causal_rms_norm_silu_folded`]): the norm writes each frame of the cached
//! frames and of x into every output frame that reads it, and the next chunk caches frames as
//! they came in, before the norm (normalizing two frames again costs less than gathering them
//! from the folded rows). Where x alone holds them, the norm's pass over x copies them out too.

use super::device::Device;
use super::norm::{self, Fold};
use super::{CudaTensor, layout};
use crate::{DType, Error, Result};

const OP: &str = "causal_rms_norm_silu_folded";

/// Whether [`fold_time`] takes these operands: bf16 x `[F, H, W, C]` with C = 24·n (n | 32) and
/// cached frames of the same type and frame shape.
pub(super) fn applies(past: Option<&CudaTensor>, x: &CudaTensor, taps: usize) -> bool {
    let frame = |t: &CudaTensor| t.shape().get(1..).map(<[usize]>::to_vec);
    x.dtype() == DType::BF16
        && taps > 0
        && x.shape().len() == 4
        && norm::folds_channels(x.shape()[3])
        && past.is_none_or(|p| p.dtype() == DType::BF16 && frame(p) == frame(x))
}

/// The folded input `[F, H, W, taps·C]` and the next chunk's cached frames, for operands
/// [`applies`] takes.
pub(super) fn fold_time(
    dev: &Device,
    past: Option<&CudaTensor>,
    x: &CudaTensor,
    gamma: &CudaTensor,
    taps: usize,
) -> Result<(CudaTensor, CudaTensor)> {
    let &[f, h, w, c] = x.shape() else {
        return Err(Error::shape(OP, "x must be [F, H, W, C]", x.shape()));
    };
    let behind = taps - 1;
    let cached = past.map_or(0, |p| p.shape()[0]);
    // The cached frames in use, and the zero frames in front of them.
    let used = cached.min(behind);
    let zeros = behind - used;
    let out = CudaTensor::alloc_as(dev, &[f, h, w, taps * c], DType::BF16)?;
    if zeros > 0 {
        dev.zero(out.ptr(), out.numel() * 2)?;
    }
    // Frame s of [zeros, past, x] lands in block dt of output frame s − dt: the cached frames
    // from s = zeros, x's from s = taps − 1.
    if let Some(p) = past.filter(|_| used > 0) {
        let p = match cached - used {
            0 => p.clone(),
            old => layout::slice(dev, p, 0, old, used)?,
        };
        let fold = Fold {
            taps,
            frames: f,
            shift: zeros,
        };
        norm::channel_rms_norm_folded(dev, &out, &p, gamma, &fold, None)?;
    }
    let fold = Fold {
        taps,
        frames: f,
        shift: behind,
    };
    // The next chunk's past: the last taps − 1 frames of [past, x], before the norm. Where x
    // holds them all, the norm's pass over x copies them out.
    let keep = behind.min(cached + f);
    let kept = (keep <= f)
        .then(|| CudaTensor::alloc_as(dev, &[keep, h, w, c], DType::BF16))
        .transpose()?;
    norm::channel_rms_norm_folded(dev, &out, x, gamma, &fold, kept.as_ref())?;
    let tail = match (kept, past) {
        (Some(kept), _) => kept,
        (None, Some(p)) => {
            let older = layout::slice(dev, p, 0, cached - (keep - f), keep - f)?;
            layout::concat(dev, &[&older, x], 0)?
        }
        (None, None) => unreachable!("without cached frames, x holds every frame kept"),
    };
    Ok((out, tail))
}
