//! Host-side tables for Wan's 3-D rotary position embedding.
//!
//! The head dimension is viewed as `Dh/2` complex pairs `(x[2j], x[2j+1])`; with `c = Dh/2` pairs the
//! first `c − 2·(c/3)` rotate with the frame index, the next `c/3` with the row and the last `c/3`
//! with the column (44/42/42 dims for `Dh = 128`). Axis `a` (in dims) uses frequencies
//! `θ^(−2j/a)`. Angles are computed in f64, as upstream does, and stored as f32.

use rayon::prelude::*;

use crate::{HostTensor, Result};

/// Pairs of the head dimension given to (time, height, width).
pub fn axis_pairs(head_dim: usize) -> [usize; 3] {
    let c = head_dim / 2;
    [c - 2 * (c / 3), c / 3, c / 3]
}

/// `(cos, sin)`, each `[F·H·W, head_dim/2]`, for the token grid `[F, H, W]` in raster order.
///
/// A token's row is its frame's time pairs, its row's height pairs and its column's width pairs,
/// so the trigonometry runs once per axis position (a few thousand values) and the rows (millions
/// at 480p) are copies of those, assembled in parallel.
pub fn rope_tables(
    grid: [usize; 3],
    head_dim: usize,
    theta: f64,
) -> Result<(HostTensor, HostTensor)> {
    let pairs = axis_pairs(head_dim);
    let half = head_dim / 2;
    // Per axis, position by position, the cos and sin of its pairs' angles pos · θ^(−2j/a).
    let (cos_axes, sin_axes): (Vec<Vec<f32>>, Vec<Vec<f32>>) = (0..3)
        .map(|axis| {
            let (n, extent) = (pairs[axis], grid[axis]);
            let axis_dim = (2 * n) as f64;
            let omegas: Vec<f64> = (0..n)
                .map(|j| theta.powf(-((2 * j) as f64) / axis_dim))
                .collect();
            (0..extent)
                .flat_map(|pos| omegas.iter().map(move |&omega| pos as f64 * omega))
                .map(|angle| (angle.cos() as f32, angle.sin() as f32))
                .unzip()
        })
        .unzip();
    let [f, h, w] = grid;
    let len = f * h * w;
    let table = |axes: &[Vec<f32>]| -> Vec<f32> {
        let mut out = vec![0f32; len * half];
        if half > 0 {
            out.par_chunks_mut(half).enumerate().for_each(|(t, row)| {
                let pos = [t / (h * w), t / w % h, t % w];
                let mut at = 0;
                for (axis, &p) in pos.iter().enumerate() {
                    let n = pairs[axis];
                    row[at..at + n].copy_from_slice(&axes[axis][p * n..][..n]);
                    at += n;
                }
            });
        }
        out
    };
    Ok((
        HostTensor::from_f32([len, half], table(&cos_axes))?,
        HostTensor::from_f32([len, half], table(&sin_axes))?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wan_split_is_44_42_42() {
        assert_eq!(axis_pairs(128), [22, 21, 21]);
    }

    /// Every entry of a small grid, against the angle computed for that token and pair directly:
    /// bit for bit, at Wan's head size and at one whose pairs split unevenly.
    #[test]
    fn tables_hold_each_tokens_angles() {
        for head_dim in [128usize, 14] {
            let grid = [3usize, 4, 5];
            let (cos, sin) = rope_tables(grid, head_dim, 1e4).unwrap();
            let (cos, sin) = (cos.to_f32_vec(), sin.to_f32_vec());
            let pairs = axis_pairs(head_dim);
            let half = head_dim / 2;
            let mut t = 0;
            for fi in 0..grid[0] {
                for hi in 0..grid[1] {
                    for wi in 0..grid[2] {
                        let pos = [fi, hi, wi];
                        let mut k = 0;
                        for axis in 0..3 {
                            for j in 0..pairs[axis] {
                                let omega =
                                    1e4f64.powf(-((2 * j) as f64) / (2 * pairs[axis]) as f64);
                                let angle = pos[axis] as f64 * omega;
                                assert_eq!(cos[t * half + k], angle.cos() as f32);
                                assert_eq!(sin[t * half + k], angle.sin() as f32);
                                k += 1;
                            }
                        }
                        t += 1;
                    }
                }
            }
        }
    }

    #[test]
    fn first_pair_of_each_axis_rotates_by_its_index() {
        let (cos, _) = rope_tables([2, 3, 4], 128, 1e4).unwrap();
        let cos = cos.to_f32_vec();
        // token (1, 2, 3): pair 0 (time, ω=1), pair 22 (height, ω=1), pair 43 (width, ω=1)
        let t = (3 + 2) * 4 + 3;
        assert!((cos[t * 64] - 1f32.cos()).abs() < 1e-7);
        assert!((cos[t * 64 + 22] - 2f32.cos()).abs() < 1e-7);
        assert!((cos[t * 64 + 43] - 3f32.cos()).abs() < 1e-7);
    }
}
