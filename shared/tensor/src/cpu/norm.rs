//! Row norms in f32 with f64-free two-pass statistics (mean first, then centred variance), which is
//! how PyTorch's CPU LayerNorm stays accurate on rows with a large mean.

use rayon::prelude::*;

/// Non-affine LayerNorm of each row, then `finish` on the normalized row (affine or modulation).
pub(super) fn layer_norm(
    x: &[f32],
    cols: usize,
    eps: f32,
    finish: impl Fn(&mut [f32]) + Sync,
) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(cols)
        .zip(x.par_chunks(cols))
        .for_each(|(o, row)| {
            let n = cols as f32;
            let mean = row.iter().sum::<f32>() / n;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
            let inv = 1.0 / (var + eps).sqrt();
            for (o, v) in o.iter_mut().zip(row) {
                *o = (v - mean) * inv;
            }
            finish(o);
        });
    out
}

/// RMSNorm of each row: `x · rsqrt(mean(x²) + eps) · weight`.
pub(super) fn rms_norm(x: &[f32], weight: &[f32], eps: f32) -> Vec<f32> {
    let cols = weight.len();
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(cols)
        .zip(x.par_chunks(cols))
        .for_each(|(o, row)| {
            let ms = row.iter().map(|v| v * v).sum::<f32>() / cols as f32;
            let inv = 1.0 / (ms + eps).sqrt();
            for ((o, v), w) in o.iter_mut().zip(row).zip(weight) {
                *o = v * inv * w;
            }
        });
    out
}
