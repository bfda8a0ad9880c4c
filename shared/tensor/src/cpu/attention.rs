//! Attention on `[L, H, Dh]` token-major tensors: RoPE, dense softmax attention, and the two
//! branches of sparse-linear attention (SLA).

use rayon::prelude::*;

use super::CpuTensor;
use super::matmul::{View, matmul};
use crate::{Error, Result, SlaParams, shapes};

/// Query rows per work item of the dense and sparse kernels.
const QUERY_TILE: usize = 64;

pub(super) use crate::shapes::Dims;

pub(super) fn dims3(op: &'static str, shape: &[usize]) -> Result<[usize; 3]> {
    match *shape {
        [l, h, d] if d % 2 == 0 => Ok([l, h, d]),
        _ => Err(Error::shape(op, "expected [L, H, Dh] with even Dh", shape)),
    }
}

pub(super) fn check_qkv(
    op: &'static str,
    q: &CpuTensor,
    k: &CpuTensor,
    v: &CpuTensor,
) -> Result<Dims> {
    shapes::qkv(op, q.shape(), k.shape(), v.shape(), dims3)
}

pub(super) fn rope(
    x: &[f32],
    cos: &[f32],
    sin: &[f32],
    len: usize,
    heads: usize,
    dh: usize,
) -> Vec<f32> {
    let half = dh / 2;
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(heads * dh)
        .zip(x.par_chunks(heads * dh))
        .enumerate()
        .for_each(|(t, (o, row))| {
            let (c, s) = (
                &cos[t * half..(t + 1) * half],
                &sin[t * half..(t + 1) * half],
            );
            for h in 0..heads {
                for j in 0..half {
                    let i = h * dh + 2 * j;
                    let (re, im) = (row[i], row[i + 1]);
                    o[i] = re * c[j] - im * s[j];
                    o[i + 1] = re * s[j] + im * c[j];
                }
            }
        });
    debug_assert_eq!(out.len(), len * heads * dh);
    out
}

/// Head `h` of a `[L, H, Dh]` tensor as an `[L, Dh]` view.
fn head_view(data: &[f32], h: usize, d: Dims) -> View<'_> {
    View {
        data,
        offset: h * d.dh,
        rs: d.heads * d.dh,
        cs: 1,
    }
}

/// Head `h` of a `[L, H, Dh]` tensor as a transposed `[Dh, L]` view.
fn head_view_t(data: &[f32], h: usize, d: Dims) -> View<'_> {
    View {
        data,
        offset: h * d.dh,
        rs: 1,
        cs: d.heads * d.dh,
    }
}

/// In-place row softmax of `s` (`cols` wide) after scaling by `scale`.
fn softmax_rows(s: &mut [f32], cols: usize, scale: f32) {
    for row in s.chunks_mut(cols) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) * scale;
        let mut sum = 0f32;
        for v in row.iter_mut() {
            *v = (*v * scale - max).exp();
            sum += *v;
        }
        let inv = 1.0 / sum;
        row.iter_mut().for_each(|v| *v *= inv);
    }
}

/// Writes per-(head, row range) results, each `[rows, Dh]`, into a `[L, H, Dh]` output.
fn scatter(parts: Vec<(usize, usize, Vec<f32>)>, d: Dims) -> Vec<f32> {
    let mut out = vec![0f32; d.lq * d.heads * d.dh];
    for (h, q0, block) in parts {
        for (i, row) in block.chunks(d.dh).enumerate() {
            let at = ((q0 + i) * d.heads + h) * d.dh;
            out[at..at + d.dh].copy_from_slice(row);
        }
    }
    out
}

/// Work items: every (head, query tile).
fn tiles(d: Dims, tile: usize) -> Vec<(usize, usize, usize)> {
    (0..d.heads)
        .flat_map(|h| {
            (0..d.lq.div_ceil(tile)).map(move |t| (h, t * tile, ((t + 1) * tile).min(d.lq)))
        })
        .collect()
}

/// `softmax(scale·q kᵀ + bias) v` per head; `bias` is `[H, Lq, Lk]`.
pub(super) fn dense(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    d: Dims,
    scale: f32,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let parts = tiles(d, QUERY_TILE)
        .into_par_iter()
        .map(|(h, q0, q1)| {
            let rows = q1 - q0;
            let mut qv = head_view(q, h, d);
            qv.offset += q0 * qv.rs;
            let mut s = vec![0f32; rows * d.lk];
            matmul(&mut s, rows, d.lk, d.dh, qv, head_view_t(k, h, d), false);
            match bias {
                Some(bias) => {
                    let rows_bias = &bias[(h * d.lq + q0) * d.lk..(h * d.lq + q1) * d.lk];
                    s.iter_mut()
                        .zip(rows_bias)
                        .for_each(|(s, b)| *s = *s * scale + b);
                    softmax_rows(&mut s, d.lk, 1.0);
                }
                None => softmax_rows(&mut s, d.lk, scale),
            }
            let mut o = vec![0f32; rows * d.dh];
            matmul(
                &mut o,
                rows,
                d.dh,
                d.lk,
                View::row_major(&s, d.lk),
                head_view(v, h, d),
                false,
            );
            (h, q0, o)
        })
        .collect();
    scatter(parts, d)
}

/// Mean of rows `start..end` of head `h`, minus `center`.
fn block_mean(
    x: &[f32],
    h: usize,
    d: Dims,
    start: usize,
    end: usize,
    center: Option<&[f32]>,
) -> Vec<f32> {
    let mut m = vec![0f32; d.dh];
    for t in start..end {
        let row = &x[(t * d.heads + h) * d.dh..][..d.dh];
        m.iter_mut().zip(row).for_each(|(m, v)| *m += v);
    }
    let n = (end - start) as f32;
    match center {
        Some(c) => m.iter_mut().zip(c).for_each(|(m, c)| *m = *m / n - c),
        None => m.iter_mut().for_each(|m| *m /= n),
    }
    m
}

/// Key blocks chosen for each query block of head `h`: the `n` best by pooled score
/// (mean-pooled q · mean-pooled smoothed k), ascending block order.
pub(super) fn select_blocks(
    q: &[f32],
    k: &[f32],
    h: usize,
    d: Dims,
    p: &SlaParams,
) -> Vec<Vec<usize>> {
    let k_mean = block_mean(k, h, d, 0, d.lk, None);
    let (qb, kb) = (d.lq.div_ceil(p.block_q), d.lk.div_ceil(p.block_k));
    let pooled_k: Vec<Vec<f32>> = (0..kb)
        .map(|b| {
            block_mean(
                k,
                h,
                d,
                b * p.block_k,
                ((b + 1) * p.block_k).min(d.lk),
                Some(&k_mean),
            )
        })
        .collect();
    let n = p.blocks_kept(kb);
    (0..qb)
        .map(|b| {
            let pq = block_mean(
                q,
                h,
                d,
                b * p.block_q,
                ((b + 1) * p.block_q).min(d.lq),
                None,
            );
            let scores: Vec<f32> = pooled_k
                .iter()
                .map(|pk| pq.iter().zip(pk).map(|(a, b)| a * b).sum())
                .collect();
            top_blocks(&scores, n)
        })
        .collect()
}

/// The `n` blocks of highest score (ties by lowest index), in ascending block order: SLA's
/// top-k over one query block's scores.
pub fn top_blocks(scores: &[f32], n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut chosen = order[..n].to_vec();
    chosen.sort_unstable();
    chosen
}

/// The sparse branch: each query block attends, with softmax renormalized over the selection, to
/// the tokens of its selected key blocks only.
pub(super) fn sla_sparse(q: &[f32], k: &[f32], v: &[f32], d: Dims, p: &SlaParams) -> Vec<f32> {
    let scale = crate::backend::softmax_scale(d.dh);
    let selections: Vec<Vec<Vec<usize>>> = (0..d.heads)
        .into_par_iter()
        .map(|h| select_blocks(q, k, h, d, p))
        .collect();
    let parts = tiles(d, p.block_q)
        .into_par_iter()
        .map(|(h, q0, q1)| {
            let rows = q1 - q0;
            let mut ks = Vec::new();
            let mut vs = Vec::new();
            for &b in &selections[h][q0 / p.block_q] {
                for t in b * p.block_k..((b + 1) * p.block_k).min(d.lk) {
                    let at = (t * d.heads + h) * d.dh;
                    ks.extend_from_slice(&k[at..at + d.dh]);
                    vs.extend_from_slice(&v[at..at + d.dh]);
                }
            }
            let keys = ks.len() / d.dh;
            let mut qv = head_view(q, h, d);
            qv.offset += q0 * qv.rs;
            let kt = View {
                data: &ks,
                offset: 0,
                rs: 1,
                cs: d.dh,
            };
            let mut s = vec![0f32; rows * keys];
            matmul(&mut s, rows, keys, d.dh, qv, kt, false);
            softmax_rows(&mut s, keys, scale);
            let mut o = vec![0f32; rows * d.dh];
            matmul(
                &mut o,
                rows,
                d.dh,
                keys,
                View::row_major(&s, keys),
                View::row_major(&vs, d.dh),
                false,
            );
            (h, q0, o)
        })
        .collect();
    scatter(parts, d)
}

/// The linear branch over all tokens with φ = softmax over the head dim:
/// `φ(Q)·(φ(K)ᵀV) / (1e-5 + φ(Q)·Σφ(K))`, returned as `[L, H, Dh]` before `proj_l`.
pub(super) fn sla_linear(q: &[f32], k: &[f32], v: &[f32], d: Dims) -> Vec<f32> {
    let phi = |x: &[f32]| {
        let mut out = x.to_vec();
        softmax_rows(&mut out, d.dh, 1.0);
        out
    };
    let (fq, fk) = (phi(q), phi(k));
    let parts = (0..d.heads)
        .into_par_iter()
        .map(|h| {
            let mut kv = vec![0f32; d.dh * d.dh];
            matmul(
                &mut kv,
                d.dh,
                d.dh,
                d.lk,
                head_view_t(&fk, h, d),
                head_view(v, h, d),
                false,
            );
            let mut ksum = vec![0f32; d.dh];
            for t in 0..d.lk {
                let row = &fk[(t * d.heads + h) * d.dh..][..d.dh];
                ksum.iter_mut().zip(row).for_each(|(s, v)| *s += v);
            }
            let mut o = vec![0f32; d.lq * d.dh];
            matmul(
                &mut o,
                d.lq,
                d.dh,
                d.dh,
                head_view(&fq, h, d),
                View::row_major(&kv, d.dh),
                false,
            );
            for (t, row) in o.chunks_mut(d.dh).enumerate() {
                let fq_row = &fq[(t * d.heads + h) * d.dh..][..d.dh];
                let den: f32 = fq_row.iter().zip(&ksum).map(|(a, b)| a * b).sum::<f32>() + 1e-5;
                row.iter_mut().for_each(|v| *v /= den);
            }
            (h, 0, o)
        })
        .collect();
    scatter(parts, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(n: usize, step: f32) -> Vec<f32> {
        (0..n).map(|i| (i as f32 * step).sin()).collect()
    }

    #[test]
    fn bias_shifts_scores_before_softmax() {
        let d = Dims {
            lq: 3,
            lk: 5,
            heads: 2,
            dh: 4,
        };
        let (q, k, v) = (ramp(3 * 8, 0.3), ramp(5 * 8, 0.7), ramp(5 * 8, 1.1));
        let plain = dense(&q, &k, &v, d, 0.5, None);
        // A bias constant along each row leaves the softmax unchanged.
        let constant: Vec<f32> = (0..2 * 3 * 5).map(|i| (i / 5) as f32).collect();
        let shifted = dense(&q, &k, &v, d, 0.5, Some(&constant));
        plain
            .iter()
            .zip(&shifted)
            .for_each(|(a, b)| assert!((a - b).abs() < 1e-6));
        // A bias that masks all keys but key 2 returns key 2's value row.
        let only_2: Vec<f32> = (0..2 * 3 * 5)
            .map(|i| if i % 5 == 2 { 0.0 } else { -1e9 })
            .collect();
        let picked = dense(&q, &k, &v, d, 0.5, Some(&only_2));
        for t in 0..3 {
            for h in 0..2 {
                let got = &picked[(t * 2 + h) * 4..][..4];
                let want = &v[(2 * 2 + h) * 4..][..4];
                got.iter()
                    .zip(want)
                    .for_each(|(a, b)| assert!((a - b).abs() < 1e-6));
            }
        }
    }
}
