//! Channel-first video ops: 3-D convolution (im2col + GEMM), nearest upsampling, channel norms.

use rayon::prelude::*;

use super::CpuTensor;
use super::matmul::{View, matmul};
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
        x: [cin, f, h, w],
        k: [kt, kh, kw],
        out: [cout, fo, ho, wo],
    } = shapes::conv3d(x.shape(), weight.shape(), bias_shape, stride, pad)?;
    let k = cin * kt * kh * kw;
    let src = x.data();
    let mut out = vec![0f32; cout * fo * ho * wo];
    let rows_per_chunk = (COL_BUDGET / (k * wo).max(1)).clamp(1, ho);
    let mut col = Vec::new();
    let mut tmp = Vec::new();
    for t in 0..fo {
        for r0 in (0..ho).step_by(rows_per_chunk) {
            let rows = rows_per_chunk.min(ho - r0);
            let n = rows * wo;
            col.clear();
            col.resize(k * n, 0f32);
            // col[(ci, dt, dy, dx), (oy, ox)] = x[ci, t·s + dt − p, oy·s + dy − p, ox·s + dx − p] or 0.
            col.par_chunks_mut(n).enumerate().for_each(|(row, dst)| {
                let dx = row % kw;
                let dy = (row / kw) % kh;
                let dt = (row / (kw * kh)) % kt;
                let ci = row / (kw * kh * kt);
                let Some(fi) = (t * stride[0] + dt)
                    .checked_sub(pad[0][0])
                    .filter(|&fi| fi < f)
                else {
                    return;
                };
                for oy in 0..rows {
                    let Some(yi) = ((r0 + oy) * stride[1] + dy)
                        .checked_sub(pad[1][0])
                        .filter(|&y| y < h)
                    else {
                        continue;
                    };
                    let line = &src[((ci * f + fi) * h + yi) * w..][..w];
                    for ox in 0..wo {
                        if let Some(xi) = (ox * stride[2] + dx)
                            .checked_sub(pad[2][0])
                            .filter(|&xi| xi < w)
                        {
                            dst[oy * wo + ox] = line[xi];
                        }
                    }
                }
            });
            tmp.clear();
            tmp.resize(cout * n, 0f32);
            matmul(
                &mut tmp,
                cout,
                n,
                k,
                View::row_major(weight.data(), k),
                View::row_major(&col, n),
                true,
            );
            for (co, chunk) in tmp.chunks(n).enumerate() {
                let at = ((co * fo + t) * ho + r0) * wo;
                let b = bias.map_or(0.0, |b| b.data()[co]);
                out[at..at + n]
                    .iter_mut()
                    .zip(chunk)
                    .for_each(|(o, v)| *o = v + b);
            }
        }
    }
    CpuTensor::new([cout, fo, ho, wo], out)
}

pub(super) fn upsample_nearest(x: &CpuTensor, [sf, sh, sw]: [usize; 3]) -> Result<CpuTensor> {
    let [c, f, h, w] = shapes::upsample_nearest(x.shape(), [sf, sh, sw])?;
    let (fo, ho, wo) = (f * sf, h * sh, w * sw);
    let src = x.data();
    let mut out = vec![0f32; c * fo * ho * wo];
    out.par_chunks_mut(wo).enumerate().for_each(|(line, dst)| {
        let y = line % ho;
        let t = (line / ho) % fo;
        let ci = line / (ho * fo);
        let row = &src[((ci * f + t / sf) * h + y / sh) * w..][..w];
        dst.iter_mut()
            .enumerate()
            .for_each(|(x, d)| *d = row[x / sw]);
    });
    CpuTensor::new([c, fo, ho, wo], out)
}

/// Per-channel parameters `[C]` of a `[C, ...]` tensor, checked.
fn channel_params<'a>(op: &'static str, x: &CpuTensor, p: &'a CpuTensor) -> Result<&'a [f32]> {
    shapes::channel_param(op, x.shape(), p.shape())?;
    Ok(p.data())
}

pub(super) fn channel_rms_norm(x: &CpuTensor, gamma: &CpuTensor) -> Result<CpuTensor> {
    let gamma = channel_params("channel_rms_norm", x, gamma)?;
    let c = gamma.len();
    let inner = x.data().len() / c.max(1);
    let src = x.data();
    let mut norms = vec![0f32; inner];
    for ci in 0..c {
        norms
            .iter_mut()
            .zip(&src[ci * inner..(ci + 1) * inner])
            .for_each(|(n, v)| *n += v * v);
    }
    let sqrt_c = (c as f32).sqrt();
    norms
        .iter_mut()
        .for_each(|n| *n = sqrt_c / n.sqrt().max(1e-12));
    let mut out = vec![0f32; src.len()];
    out.par_chunks_mut(inner)
        .zip(src.par_chunks(inner))
        .zip(gamma.par_iter())
        .for_each(|((o, s), g)| {
            o.iter_mut()
                .zip(s)
                .zip(&norms)
                .for_each(|((o, v), n)| *o = v * n * g);
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
    let inner = x.data().len() / scale.len().max(1);
    let mut out = vec![0f32; x.data().len()];
    out.par_chunks_mut(inner)
        .zip(x.data().par_chunks(inner))
        .enumerate()
        .for_each(|(c, (o, s))| {
            o.iter_mut()
                .zip(s)
                .for_each(|(o, v)| *o = v * scale[c] + shift[c]);
        });
    CpuTensor::new(x.shape().to_vec(), out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct 7-loop convolution.
    fn naive(x: &CpuTensor, w: &CpuTensor, stride: [usize; 3], pad: [[usize; 2]; 3]) -> Vec<f32> {
        let [cin, f, h, wd] = shapes::dims4("t", x.shape()).unwrap();
        let &[cout, _, kt, kh, kw] = w.shape() else {
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
                                        acc += x.data()[((ci * f + fi) * h + yi) * wd + xi]
                                            * w.data()
                                                [(((co * cin + ci) * kt + dt) * kh + dy) * kw + dx];
                                    }
                                }
                            }
                        }
                        out[((co * fo + t) * ho + y) * wo + xo] = acc;
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
        let x = arange(&[3, 4, 5, 7], 0.37);
        for (kshape, stride, pad) in [
            ([2, 3, 3, 3, 3], [1, 1, 1], [[2, 0], [1, 1], [1, 1]]),
            ([4, 3, 1, 3, 3], [1, 2, 2], [[0, 0], [0, 1], [0, 1]]),
            ([2, 3, 3, 1, 1], [2, 1, 1], [[0, 0], [0, 0], [0, 0]]),
        ] {
            let w = arange(&kshape, 0.11);
            let got = conv3d(&x, &w, None, stride, pad).unwrap();
            let want = naive(&x, &w, stride, pad);
            for (a, b) in got.data().iter().zip(&want) {
                assert!((a - b).abs() < 1e-4, "{kshape:?}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn upsample_and_channel_norm() {
        let x = arange(&[2, 1, 2, 2], 1.0);
        let up = upsample_nearest(&x, [1, 2, 2]).unwrap();
        assert_eq!(up.shape(), [2, 1, 4, 4]);
        assert_eq!(up.data()[5], x.data()[0]);
        assert_eq!(up.data()[7], x.data()[1]);
        let g = CpuTensor::new([2], vec![1.0, 2.0]).unwrap();
        let n = channel_rms_norm(&x, &g).unwrap();
        let norm0 = (x.data()[0].powi(2) + x.data()[4].powi(2)).sqrt();
        assert!((n.data()[4] - x.data()[4] / norm0 * 2f32.sqrt() * 2.0).abs() < 1e-6);
    }
}
