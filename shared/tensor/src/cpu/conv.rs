//! Channels-last video ops: 3-D convolution (im2col + GEMM), nearest upsampling, channel norms.

use rayon::prelude::*;

use super::CpuTensor;
use super::matmul::x_wt;
use crate::{Result, shapes};

/// Column-buffer budget (f32 elements) per GEMM; bounds memory at full-resolution VAE layers.
const COL_BUDGET: usize = 1 << 24;

pub(super) fn conv3d(
    x: &CpuTensor,
    weight: &CpuTensor,
    bias: Option<&CpuTensor>,
    stride: [usize; 3],
    pad: [[usize; 2]; 3],
) -> Result<CpuTensor> {
    let bias_shape = bias.map(CpuTensor::shape);
    let shapes::Conv3d {
        x: [f, h, w, cin],
        k: [kt, kh, kw],
        out: [fo, ho, wo, cout],
    } = shapes::conv3d(x.shape(), weight.shape(), bias_shape, stride, pad)?;
    let k = kt * kh * kw * cin;
    let src = x.data();
    let mut out = vec![0f32; fo * ho * wo * cout];
    let rows_per_chunk = (COL_BUDGET / (k * wo).max(1)).clamp(1, ho);
    let mut col = Vec::new();
    for t in 0..fo {
        for r0 in (0..ho).step_by(rows_per_chunk) {
            let rows = rows_per_chunk.min(ho - r0);
            let n = rows * wo;
            col.clear();
            col.resize(n * k, 0f32);
            // col[(oy, ox), (dt, dy, dx, ci)] = x[t·s + dt − p, oy·s + dy − p, ox·s + dx − p, ci]
            // or 0: the filter's own (kt, kh, kw, Cin) order, so each tap is one contiguous run.
            col.par_chunks_mut(k).enumerate().for_each(|(pos, dst)| {
                let (oy, ox) = (r0 + pos / wo, pos % wo);
                for (tap, run) in dst.chunks_mut(cin).enumerate() {
                    let dx = tap % kw;
                    let dy = (tap / kw) % kh;
                    let dt = tap / (kw * kh);
                    let at = |o: usize, s: usize, d: usize, p: usize, len: usize| {
                        (o * s + d).checked_sub(p).filter(|&i| i < len)
                    };
                    if let (Some(fi), Some(yi), Some(xi)) = (
                        at(t, stride[0], dt, pad[0][0], f),
                        at(oy, stride[1], dy, pad[1][0], h),
                        at(ox, stride[2], dx, pad[2][0], w),
                    ) {
                        run.copy_from_slice(&src[((fi * h + yi) * w + xi) * cin..][..cin]);
                    }
                }
            });
            let at = (t * ho + r0) * wo * cout;
            let dst = &mut out[at..at + n * cout];
            x_wt(dst, &col, weight.data(), n, k, cout);
            if let Some(b) = bias {
                dst.par_chunks_mut(cout).for_each(|row| {
                    row.iter_mut().zip(b.data()).for_each(|(o, b)| *o += b);
                });
            }
        }
    }
    CpuTensor::new([fo, ho, wo, cout], out)
}

pub(super) fn interleave_phases(x: &CpuTensor) -> Result<CpuTensor> {
    let [f, ho, wo, c] = shapes::interleave_phases(x.shape())?;
    let (h1, w1) = (ho / 2 + 1, wo / 2 + 1);
    let src = x.data();
    let mut out = vec![0f32; f * ho * wo * c];
    out.par_chunks_mut(wo * c)
        .enumerate()
        .for_each(|(line, dst)| {
            let (t, yo) = (line / ho, line % ho);
            // Output row 2y + a is phase a of low-resolution row y + a = (yo + 1) / 2.
            let row = &src[(t * h1 + yo.div_ceil(2)) * w1 * 4 * c..][..w1 * 4 * c];
            for (xo, px) in dst.chunks_mut(c).enumerate() {
                let phase = 2 * (yo % 2) + xo % 2;
                px.copy_from_slice(&row[(xo.div_ceil(2) * 4 + phase) * c..][..c]);
            }
        });
    CpuTensor::new([f, ho, wo, c], out)
}

/// Per-channel parameters `[C]` of a `[..., C]` tensor, checked.
fn channel_params<'a>(op: &'static str, x: &CpuTensor, p: &'a CpuTensor) -> Result<&'a [f32]> {
    shapes::channel_param(op, x.shape(), p.shape())?;
    Ok(p.data())
}

pub(super) fn channel_rms_norm(x: &CpuTensor, gamma: &CpuTensor) -> Result<CpuTensor> {
    let gamma = channel_params("channel_rms_norm", x, gamma)?;
    let c = gamma.len().max(1);
    let sqrt_c = (gamma.len() as f32).sqrt();
    let mut out = vec![0f32; x.data().len()];
    out.par_chunks_mut(c)
        .zip(x.data().par_chunks(c))
        .for_each(|(o, s)| {
            let norm = s.iter().map(|v| v * v).sum::<f32>().sqrt();
            let scale = sqrt_c / norm.max(1e-12);
            o.iter_mut()
                .zip(s)
                .zip(gamma)
                .for_each(|((o, v), g)| *o = v * scale * g);
        });
    CpuTensor::new(x.shape().to_vec(), out)
}

pub(super) fn channel_affine(
    x: &CpuTensor,
    scale: &CpuTensor,
    shift: &CpuTensor,
) -> Result<CpuTensor> {
    let scale = channel_params("channel_affine", x, scale)?;
    let shift = channel_params("channel_affine", x, shift)?;
    let mut out = vec![0f32; x.data().len()];
    out.par_chunks_mut(scale.len().max(1))
        .zip(x.data().par_chunks(scale.len().max(1)))
        .for_each(|(o, s)| {
            for (((o, v), a), b) in o.iter_mut().zip(s).zip(scale).zip(shift) {
                *o = v * a + b;
            }
        });
    CpuTensor::new(x.shape().to_vec(), out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct 7-loop convolution.
    fn naive(x: &CpuTensor, w: &CpuTensor, stride: [usize; 3], pad: [[usize; 2]; 3]) -> Vec<f32> {
        let &[f, h, wd, cin] = x.shape() else {
            unreachable!()
        };
        let &[cout, kt, kh, kw, _] = w.shape() else {
            unreachable!()
        };
        let fo = (f + pad[0][0] + pad[0][1] - kt) / stride[0] + 1;
        let ho = (h + pad[1][0] + pad[1][1] - kh) / stride[1] + 1;
        let wo = (wd + pad[2][0] + pad[2][1] - kw) / stride[2] + 1;
        let mut out = vec![0f32; cout * fo * ho * wo];
        for co in 0..cout {
            for t in 0..fo {
                for y in 0..ho {
                    for xo in 0..wo {
                        let mut acc = 0f32;
                        for ci in 0..cin {
                            for dt in 0..kt {
                                for dy in 0..kh {
                                    for dx in 0..kw {
                                        let fi = (t * stride[0] + dt) as isize - pad[0][0] as isize;
                                        let yi = (y * stride[1] + dy) as isize - pad[1][0] as isize;
                                        let xi =
                                            (xo * stride[2] + dx) as isize - pad[2][0] as isize;
                                        if fi < 0
                                            || yi < 0
                                            || xi < 0
                                            || fi >= f as isize
                                            || yi >= h as isize
                                            || xi >= wd as isize
                                        {
                                            continue;
                                        }
                                        let (fi, yi, xi) = (fi as usize, yi as usize, xi as usize);
                                        acc += x.data()[((fi * h + yi) * wd + xi) * cin + ci]
                                            * w.data()
                                                [(((co * kt + dt) * kh + dy) * kw + dx) * cin + ci];
                                    }
                                }
                            }
                        }
                        out[((t * ho + y) * wo + xo) * cout + co] = acc;
                    }
                }
            }
        }
        out
    }

    fn arange(shape: &[usize], step: f32) -> CpuTensor {
        let n = shape.iter().product();
        CpuTensor::new(
            shape.to_vec(),
            (0..n).map(|i| ((i as f32) * step).sin()).collect(),
        )
        .unwrap()
    }

    #[test]
    fn conv3d_matches_direct_loops() {
        let x = arange(&[4, 5, 7, 3], 0.37);
        for (kshape, stride, pad) in [
            ([2, 3, 3, 3, 3], [1, 1, 1], [[2, 0], [1, 1], [1, 1]]),
            ([4, 1, 3, 3, 3], [1, 2, 2], [[0, 0], [0, 1], [0, 1]]),
            ([2, 3, 1, 1, 3], [2, 1, 1], [[0, 0], [0, 0], [0, 0]]),
        ] {
            let w = arange(&kshape, 0.11);
            let bias = arange(&kshape[..1], 0.7);
            let got = conv3d(&x, &w, Some(&bias), stride, pad).unwrap();
            let want = naive(&x, &w, stride, pad);
            assert_eq!(got.data().len(), want.len());
            for (i, (a, b)) in got.data().iter().zip(&want).enumerate() {
                let b = b + bias.data()[i % kshape[0]];
                assert!((a - b).abs() < 1e-4, "{kshape:?}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn interleave_phases_and_channel_norm() {
        // [F, H + 1, W + 1, 4C] = [1, 2, 3, 4]: low pixel (p, q) holds phase k at 4·(3p + q) + k.
        let low = arange(&[1, 2, 3, 4], 1.0);
        let out = interleave_phases(&low).unwrap();
        assert_eq!(out.shape(), [1, 2, 4, 1]);
        // Output (2y + a, 2x + b) is low pixel (y + a, x + b), phase 2a + b.
        let at = |p: usize, q: usize, k: usize| low.data()[4 * (3 * p + q) + k];
        let want = [
            at(0, 0, 0),
            at(0, 1, 1),
            at(0, 1, 0),
            at(0, 2, 1),
            at(1, 0, 2),
            at(1, 1, 3),
            at(1, 1, 2),
            at(1, 2, 3),
        ];
        assert_eq!(out.data(), want);
        // No output row or column, or channels that are not four phases: errors naming the shape.
        for bad in [[1, 1, 3, 4], [1, 2, 1, 4], [1, 2, 3, 6]] {
            let err = interleave_phases(&arange(&bad, 1.0))
                .unwrap_err()
                .to_string();
            assert!(err.contains("[F, H + 1, W + 1, 4C]"), "{bad:?}: {err}");
        }
        let x = arange(&[1, 2, 2, 2], 1.0);
        let g = CpuTensor::new([2], vec![1.0, 2.0]).unwrap();
        let n = channel_rms_norm(&x, &g).unwrap();
        let norm0 = (x.data()[0].powi(2) + x.data()[1].powi(2)).sqrt();
        assert!((n.data()[1] - x.data()[1] / norm0 * 2f32.sqrt() * 2.0).abs() < 1e-6);
    }
}
