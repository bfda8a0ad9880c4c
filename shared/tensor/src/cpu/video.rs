//! Patch embedding layout: video latents to token rows and back.

use super::CpuTensor;
use crate::{Error, Result};

pub(super) fn patchify(x: &CpuTensor, [pt, ph, pw]: [usize; 3]) -> Result<CpuTensor> {
    let &[c, f, h, w] = x.shape() else {
        return Err(Error::shape("patchify", "expected [C, F, H, W]", x.shape()));
    };
    if f % pt != 0 || h % ph != 0 || w % pw != 0 {
        return Err(Error::shape(
            "patchify",
            format!("F, H, W must be multiples of the patch {:?}", [pt, ph, pw]),
            x.shape(),
        ));
    }
    let (gf, gh, gw) = (f / pt, h / ph, w / pw);
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
    let feat = pt * ph * pw * c;
    if x.shape() != [gf * gh * gw, feat] {
        return Err(Error::shape(
            "unpatchify",
            format!("expected [{}, {feat}]", gf * gh * gw),
            x.shape(),
        ));
    }
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
