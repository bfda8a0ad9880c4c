//! Host-side tables for Wan's 3-D rotary position embedding.
//!
//! The head dimension is viewed as `Dh/2` complex pairs `(x[2j], x[2j+1])`; with `c = Dh/2` pairs the
//! first `c − 2·(c/3)` rotate with the frame index, the next `c/3` with the row and the last `c/3`
//! with the column (44/42/42 dims for `Dh = 128`). Axis `a` (in dims) uses frequencies
//! `θ^(−2j/a)`. Angles are computed in f64, as upstream does, and stored as f32.

use crate::{HostTensor, Result};

/// Pairs of the head dimension given to (time, height, width).
pub fn axis_pairs(head_dim: usize) -> [usize; 3] {
    let c = head_dim / 2;
    [c - 2 * (c / 3), c / 3, c / 3]
}

/// `(cos, sin)`, each `[F·H·W, head_dim/2]`, for the token grid `[F, H, W]` in raster order.
pub fn rope_tables(
    grid: [usize; 3],
    head_dim: usize,
    theta: f64,
) -> Result<(HostTensor, HostTensor)> {
    let pairs = axis_pairs(head_dim);
    // Per pair: which axis it follows and its angular frequency.
    let mut freqs: Vec<(usize, f64)> = Vec::with_capacity(head_dim / 2);
    for (axis, &n) in pairs.iter().enumerate() {
        let axis_dim = (2 * n) as f64;
        for j in 0..n {
            freqs.push((axis, theta.powf(-((2 * j) as f64) / axis_dim)));
        }
    }
    let [f, h, w] = grid;
    let len = f * h * w;
    let half = head_dim / 2;
    let mut cos = Vec::with_capacity(len * half);
    let mut sin = Vec::with_capacity(len * half);
    for fi in 0..f {
        for hi in 0..h {
            for wi in 0..w {
                let pos = [fi as f64, hi as f64, wi as f64];
                for &(axis, omega) in &freqs {
                    let angle = pos[axis] * omega;
                    cos.push(angle.cos() as f32);
                    sin.push(angle.sin() as f32);
                }
            }
        }
    }
    Ok((
        HostTensor::from_f32([len, half], cos)?,
        HostTensor::from_f32([len, half], sin)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wan_split_is_44_42_42() {
        assert_eq!(axis_pairs(128), [22, 21, 21]);
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
