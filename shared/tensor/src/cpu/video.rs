//! Patch embedding layout: video latents to token rows and back.

use super::CpuTensor;
use crate::{Result, shapes};

pub(super) fn patchify(x: &CpuTensor, patch: [usize; 3]) -> Result<CpuTensor> {
    let ([c, f, h, w], [gf, gh, gw]) = shapes::patchify(x.shape(), patch)?;
    let [pt, ph, pw] = patch;
    let feat = c * pt * ph * pw;
    let src = x.data();
    let mut out = Vec::with_capacity(gf * gh * gw * feat);
    for tf in 0..gf {
        for th in 0..gh {
            for tw in 0..gw {
                for ci in 0..c {
                    for kt in 0..pt {
                        for kh in 0..ph {
                            let row = ((ci * f + tf * pt + kt) * h + th * ph + kh) * w + tw * pw;
                            out.extend_from_slice(&src[row..row + pw]);
                        }
                    }
                }
            }
        }
    }
    CpuTensor::new([gf * gh * gw, feat], out)
}

pub(super) fn unpatchify(
    x: &CpuTensor,
    [gf, gh, gw]: [usize; 3],
    [pt, ph, pw]: [usize; 3],
    c: usize,
) -> Result<CpuTensor> {
    shapes::unpatchify(x.shape(), [gf, gh, gw], [pt, ph, pw], c)?;
    let feat = pt * ph * pw * c;
    let (f, h, w) = (gf * pt, gh * ph, gw * pw);
    let src = x.data();
    let mut out = vec![0f32; c * f * h * w];
    for tf in 0..gf {
        for th in 0..gh {
            for tw in 0..gw {
                let token = (tf * gh + th) * gw + tw;
                for kt in 0..pt {
                    for kh in 0..ph {
                        for kw in 0..pw {
                            let base = token * feat + ((kt * ph + kh) * pw + kw) * c;
                            for ci in 0..c {
                                let dst =
                                    ((ci * f + tf * pt + kt) * h + th * ph + kh) * w + tw * pw + kw;
                                out[dst] = src[base + ci];
                            }
                        }
                    }
                }
            }
        }
    }
    CpuTensor::new([c, f, h, w], out)
}
