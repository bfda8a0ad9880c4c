//! TurboDiffusion's W8A8 INT8 format and its block-scaled GEMM, on the host.
//!
//! A `[rows, cols]` matrix is cut into 128×128 tiles ([`QUANT_BLOCK`]), each stored as int8 values
//! and one f32 scale: `x[r, c] ≈ values[r, c] · scales[r/128, c/128]`. Upstream's `quant_cuda`
//! (`ops/quant/quant.hpp`, shared/reference/turbodiffusion.md §3) takes the tile's
//! `amax = max(1e-8, max |x|)`, multiplies by `128 / amax` and converts with `cvt.rni.sat.s8.f32`
//! (round to nearest even, saturating to [−128, 127]: the constant is 128, so +amax lands on 127),
//! and stores `amax / 128`. Weights (`[out, in]`, offline, a `-quant` checkpoint's `int8_weight`
//! and `scale`) and activations (`[tokens, in]`, before every GEMM) use the same quantizer, so an
//! activation's scale covers 128 tokens × 128 channels.
//!
//! The GEMM multiplies int8 with int32 sums over each 128-deep K block and promotes them into an
//! f32 accumulator with the two tiles' scales: `y[i, j] = Σ_kb acc_kb · (sa[i/128, kb] ·
//! sw[j/128, kb]) + b[j]`. [`gemm`] does these f32 operations in the CUDA kernel's order (an FMA per
//! K block, then the bias), so the two agree bit for bit before the kernel's bf16 rounding. This
//! module is the reference of `kernels/quant.cu`'s `quantize_int8_blocks` and
//! `kernels/int8_gemm.cu`.

use crate::{Error, QUANT_BLOCK, Result};

/// Floor of a tile's `amax`, as upstream's quantizer seeds its maximum.
pub const AMAX_FLOOR: f32 = 1e-8;

/// Upstream's `int8_max`: values are scaled so the tile's amax maps to 128 (saturating to 127).
pub const INT8_SCALE: f32 = 128.0;

/// `x` to int8 as `cvt.rni.sat.s8.f32`: round to nearest even, saturate, NaN to 0.
pub fn int8_from_f32(x: f32) -> i8 {
    // `as` saturates and maps NaN to 0; the rounding is the one step that must match.
    x.round_ties_even() as i8
}

/// A `[rows, cols]` matrix in 128×128 tiles: `x[r, c] ≈ values[r·cols + c] · scales[(r/128)·
/// (cols/128) + c/128]`; `cols` is a multiple of 128, `rows` any (the last row tile may be short).
#[derive(Debug, Clone, PartialEq)]
pub struct Int8Blocks {
    pub rows: usize,
    pub cols: usize,
    /// Row-major.
    pub values: Vec<i8>,
    /// `[ceil(rows/128), cols/128]`, row-major: `amax / 128` per tile.
    pub scales: Vec<f32>,
}

impl Int8Blocks {
    /// Scale tiles along the columns.
    pub fn col_blocks(&self) -> usize {
        self.cols / QUANT_BLOCK
    }

    /// Quantizes the row-major `[rows, cols]` matrix `data` tile by tile.
    pub fn quantize(data: &[f32], rows: usize, cols: usize) -> Result<Self> {
        Error::check_matrix(data, rows, cols)?;
        if !cols.is_multiple_of(QUANT_BLOCK) {
            return Err(Error::shape(
                "quantize_int8",
                "expected [rows, K] with K a multiple of 128 (TurboDiffusion's 128x128 tiles)",
                &[rows, cols],
            ));
        }
        let (row_blocks, col_blocks) = (rows.div_ceil(QUANT_BLOCK), cols / QUANT_BLOCK);
        let mut values = vec![0i8; data.len()];
        let mut scales = Vec::with_capacity(row_blocks * col_blocks);
        for rb in 0..row_blocks {
            let tile_rows = rb * QUANT_BLOCK..rows.min((rb + 1) * QUANT_BLOCK);
            for cb in 0..col_blocks {
                let tile_cols = cb * QUANT_BLOCK..(cb + 1) * QUANT_BLOCK;
                let amax = tile_rows
                    .clone()
                    .flat_map(|r| &data[r * cols + tile_cols.start..r * cols + tile_cols.end])
                    .fold(AMAX_FLOOR, |m, v| m.max(v.abs()));
                let inv = INT8_SCALE / amax;
                for r in tile_rows.clone() {
                    for c in tile_cols.clone() {
                        values[r * cols + c] = int8_from_f32(data[r * cols + c] * inv);
                    }
                }
                scales.push(amax / INT8_SCALE);
            }
        }
        Ok(Self {
            rows,
            cols,
            values,
            scales,
        })
    }

    /// The represented values as f32, row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        let cb = self.col_blocks();
        self.values
            .iter()
            .enumerate()
            .map(|(i, &q)| {
                let (r, c) = (i / self.cols, i % self.cols);
                f32::from(q) * self.scales[(r / QUANT_BLOCK) * cb + c / QUANT_BLOCK]
            })
            .collect()
    }

    /// Row tiles `first .. first + count` as a matrix of their own (the tiles keep their scales).
    pub fn row_blocks(&self, first: usize, count: usize) -> Result<Self> {
        let start = first * QUANT_BLOCK;
        let end = self.rows.min((first + count) * QUANT_BLOCK);
        if count == 0 || start >= self.rows {
            return Err(Error::invalid(
                "int8 row_blocks",
                format!(
                    "row tiles {first}..{} of a [{}, {}] matrix",
                    first + count,
                    self.rows,
                    self.cols
                ),
            ));
        }
        let cb = self.col_blocks();
        let tiles = end.div_ceil(QUANT_BLOCK) - first;
        Ok(Self {
            rows: end - start,
            cols: self.cols,
            values: self.values[start * self.cols..end * self.cols].to_vec(),
            scales: self.scales[first * cb..(first + tiles) * cb].to_vec(),
        })
    }
}

/// `x · wᵀ (+ bias)` for `x: [m, K]` and `w: [n, K]` in the block format, as f32 `[m, n]`: per
/// output, per K block an exact int32 dot product, converted (exactly: |sum| ≤ 128³ < 2²⁴) and
/// added by one FMA with the product of the two tiles' scales, then the bias.
pub fn gemm(x: &Int8Blocks, w: &Int8Blocks, bias: Option<&[f32]>) -> Result<Vec<f32>> {
    if x.cols != w.cols {
        return Err(Error::shape(
            "int8 gemm",
            format!("input features must be {}", w.cols),
            &[x.rows, x.cols],
        ));
    }
    if let Some(b) = bias
        && b.len() != w.rows
    {
        return Err(Error::shape(
            "int8 gemm",
            format!("bias must be [{}]", w.rows),
            &[b.len()],
        ));
    }
    let (k, kb) = (x.cols, x.col_blocks());
    let mut out = Vec::with_capacity(x.rows * w.rows);
    for i in 0..x.rows {
        let xr = &x.values[i * k..(i + 1) * k];
        let xs = &x.scales[(i / QUANT_BLOCK) * kb..];
        for j in 0..w.rows {
            let wr = &w.values[j * k..(j + 1) * k];
            let ws = &w.scales[(j / QUANT_BLOCK) * kb..];
            let mut acc = 0f32;
            for b in 0..kb {
                let block = b * QUANT_BLOCK..(b + 1) * QUANT_BLOCK;
                let sum: i32 = xr[block.clone()]
                    .iter()
                    .zip(&wr[block])
                    .map(|(&a, &c)| i32::from(a) * i32::from(c))
                    .sum();
                acc = (sum as f32).mul_add(xs[b] * ws[b], acc);
            }
            out.push(bias.map_or(acc, |b| acc + b[j]));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_like_cvt_rni_sat() {
        for (x, q) in [
            (0.5f32, 0i8),
            (1.5, 2),
            (2.5, 2),
            (-0.5, 0),
            (-1.5, -2),
            (-2.5, -2),
            (126.5, 126),
            (127.4, 127),
            (128.0, 127),
            (-128.0, -128),
            (-200.0, -128),
            (f32::INFINITY, 127),
            (f32::NAN, 0),
        ] {
            assert_eq!(int8_from_f32(x), q, "{x}");
        }
    }

    /// One 128×128 tile by hand: amax 4 (scale 1/32), so x·32: 4 -> 127 (128 saturates),
    /// −4 -> −128, 1 -> 32, 0.015625 = 0.5/32 -> 0 (tie to even), 0.046875 = 1.5/32 -> 2.
    #[test]
    fn a_tile_by_hand() {
        let mut data = vec![0f32; 128 * 128];
        data[0] = 4.0;
        data[1] = -4.0;
        data[2] = 1.0;
        data[3] = 0.015625;
        data[128] = 0.046875;
        let q = Int8Blocks::quantize(&data, 128, 128).unwrap();
        assert_eq!(q.scales, [4.0 / 128.0]);
        assert_eq!(&q.values[..4], [127, -128, 32, 0]);
        assert_eq!(q.values[128], 2);
        assert!(q.values[129..].iter().all(|&v| v == 0));
    }

    /// Tiles scale independently, a zero tile takes the floor, and a short last row tile (rows not
    /// a multiple of 128) has its own scale over its real rows only.
    #[test]
    fn tiles_are_independent() {
        let (rows, cols) = (130usize, 256usize);
        let data: Vec<f32> = (0..rows * cols)
            .map(|i| {
                let (r, c) = (i / cols, i % cols);
                match (r / 128, c / 128) {
                    (0, 0) => (c as f32 - 64.0) / 8.0, // amax 8
                    (0, 1) => 0.0,
                    (1, 0) => 0.25 * if c % 2 == 0 { 1.0 } else { -1.0 },
                    _ => 3.0,
                }
            })
            .collect();
        let q = Int8Blocks::quantize(&data, rows, cols).unwrap();
        assert_eq!(
            q.scales,
            [8.0 / 128.0, AMAX_FLOOR / 128.0, 0.25 / 128.0, 3.0 / 128.0]
        );
        // (c − 64)/8 · 16 = 2c − 128, exact; ±0.25 · 512 = ±128, of which only −128 fits.
        assert_eq!(q.values[0], -128);
        assert_eq!(q.values[127], 126);
        assert!(q.values[128..256].iter().all(|&v| v == 0));
        assert_eq!(&q.values[128 * cols..128 * cols + 2], [127, -128]);
        assert_eq!(q.values[129 * cols + 200], 127);
        // Every value comes back within half a step of its tile, +amax (saturated) within one.
        let back = q.dequantize();
        for (i, (b, x)) in back.iter().zip(&data).enumerate() {
            let step = q.scales[(i / cols / 128) * 2 + (i % cols) / 128];
            let tol = if *b == 127.0 * step { step } else { 0.5 * step };
            assert!((b - x).abs() <= tol + 1e-7, "{i}: {b} vs {x}");
        }
        assert!(Int8Blocks::quantize(&data, rows, cols - 1).is_err());
        assert!(Int8Blocks::quantize(&data[..rows * 96], rows, 96).is_err());
    }

    /// upstream's formula `y[i,j] = Σ_kb (Σ_k qa·qw) · sa · sw + b` on a 2-block K by hand.
    #[test]
    fn gemm_by_hand() {
        let k = 256;
        let mut xv = vec![0i8; 2 * k];
        let mut wv = vec![0i8; k];
        // Row 0: block 0 sum 3·5 + (−2)·7 = 1, block 1 sum 100·100 = 10000.
        xv[0] = 3;
        xv[1] = -2;
        xv[128] = 100;
        wv[0] = 5;
        wv[1] = 7;
        wv[128] = 100;
        // Row 1: −128·−128 in block 1 = 16384.
        xv[k + 128] = -128;
        wv[129] = -128;
        xv[k + 129] = -128;
        let x = Int8Blocks {
            rows: 2,
            cols: k,
            values: xv,
            scales: vec![0.5, 0.25],
        };
        let w = Int8Blocks {
            rows: 1,
            cols: k,
            values: wv,
            scales: vec![2.0, 0.125],
        };
        let y = gemm(&x, &w, Some(&[0.75])).unwrap();
        // Row 0: 1·(0.5·2) + 10000·(0.25·0.125) + 0.75; row 1: 16384·(0.25·0.125) + 0.75, with
        // row 1's −128 at column 128 meeting w's 100: −12800·(1/32) more.
        assert_eq!(y, [1.0 + 312.5 + 0.75, 512.0 - 400.0 + 0.75]);
        // Dequantized f32 arithmetic agrees (every term is exact here).
        let (xd, wd) = (x.dequantize(), w.dequantize());
        for (i, yi) in y.iter().enumerate() {
            let dot: f32 = (0..k).map(|c| xd[i * k + c] * wd[c]).sum();
            assert_eq!(*yi, dot + 0.75);
        }
        assert!(gemm(&x, &w, Some(&[1.0, 2.0])).is_err());
        let narrow = Int8Blocks::quantize(&[1.0; 128], 1, 128).unwrap();
        assert!(gemm(&narrow, &w, None).is_err());
    }

    #[test]
    fn row_blocks_keep_their_scales() {
        let data: Vec<f32> = (0..300 * 128)
            .map(|i| ((i * 7919) % 211) as f32 - 105.0)
            .collect();
        let q = Int8Blocks::quantize(&data, 300, 128).unwrap();
        let tail = q.row_blocks(2, 1).unwrap();
        assert_eq!((tail.rows, tail.scales.len()), (44, 1));
        assert_eq!(tail.values, q.values[256 * 128..]);
        assert_eq!(tail.scales, q.scales[2..]);
        let head = q.row_blocks(0, 2).unwrap();
        assert_eq!(head.rows, 256);
        assert!(q.row_blocks(3, 1).is_err());
    }
}
