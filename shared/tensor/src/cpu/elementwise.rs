//! Elementwise kernels over contiguous f32 slices.

use rayon::prelude::*;

const CHUNK: usize = 1 << 14;

pub(super) fn map(x: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(o, i)| o.iter_mut().zip(i).for_each(|(o, &v)| *o = f(v)));
    out
}

/// `f(a[i], b[i % b.len()])`: `b` broadcast over the leading dims of `a`.
pub(super) fn broadcast(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    let mut out = vec![0f32; a.len()];
    let n = b.len();
    out.par_chunks_mut(n)
        .zip(a.par_chunks(n))
        .for_each(|(o, a)| {
            for ((o, &x), &y) in o.iter_mut().zip(a).zip(b) {
                *o = f(x, y);
            }
        });
    out
}

/// Adds `bias` to every row of `out` in place.
pub(super) fn add_rows(out: &mut [f32], bias: &[f32]) {
    out.par_chunks_mut(bias.len()).for_each(|row| {
        row.iter_mut().zip(bias).for_each(|(o, b)| *o += b);
    });
}

/// GELU, tanh approximation, as `torch.nn.GELU(approximate="tanh")`.
pub(super) fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)).tanh())
}
