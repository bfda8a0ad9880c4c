//! FP8 e4m3 and the per-row quantization of the FP8 linear layers, on the host.
//!
//! The format is OCP's `E4M3FN` (`CUDA_R_8F_E4M3`, PyTorch's `float8_e4m3fn`): sign, 4 exponent
//! bits (bias 7), 3 mantissa bits; no infinities, `S.1111.111` is NaN, so the largest finite value
//! is `S.1111.110` = 1.75·2⁸ = **448**; subnormals are `m·2⁻⁹`.
//!
//! A row `x[r, ..]` is stored as `values[r, c] · scales[r]` with `scales[r] = amax_r / 448`: the
//! row's largest magnitude lands on the format's largest value. The CUDA backend quantizes weights
//! per output channel and activations per token this way (`kernels/quant.cu`, the same f32
//! operations in the same order, so the two agree bit for bit); this module is its reference and
//! the source of the simulated-FP8 inputs of the device checks.

use crate::{Error, Result};

/// Largest finite e4m3 value.
pub const E4M3_MAX: f32 = 448.0;

/// Floor of a row's `amax`: an all-zero row gets a tiny positive scale and zero values instead of
/// a division by zero (TurboDiffusion's quantizer floors its int8 tiles the same way).
pub const AMAX_FLOOR: f32 = 1e-8;

/// The most the row maxima of an FP8 layer's weight may differ for [`Fp8Rows::quantize_weight`]
/// to give the matrix one scale: 2⁶. e4m3 is a float, so a row whose values sit a few binades
/// below another's keeps its relative precision, and within 2⁶ every row's largest values stay
/// in the normal range; at worst a row's smallest values round coarser. One scale is what lets
/// cuBLASLt write a layer's output in e4m3 (the FFN's first layer, `cuda/quant.rs`).
pub const UNIFORM_SPREAD: f32 = 64.0;

/// `x` as e4m3 bits: round to nearest even, finite values beyond ±448 saturate to ±448 (PTX's
/// `cvt.rn.satfinite.e4m3x2.f32`), NaN stays NaN.
pub fn e4m3_from_f32(x: f32) -> u8 {
    let sign = if x.is_sign_negative() { 0x80 } else { 0 };
    let a = x.abs();
    if a.is_nan() {
        return sign | 0x7F;
    }
    // Bits = (e + 6)·8 + round(a / 2^(e−3)) for a in [2^e, 2^(e+1)), e ≥ −6, which also covers
    // the subnormals (e = −6, quantum 2⁻⁹) and lets a mantissa that rounds up to 16 carry into the
    // exponent. f32 subnormals have biased exponent 0, far below −6, so they take e = −6 too.
    let e = (((a.to_bits() >> 23) & 0xFF) as i32 - 127).max(-6);
    if e > 8 {
        return sign | 0x7E;
    }
    // Scaling by a power of two is exact; `round_ties_even` is the one rounding.
    let q = (a * 2f32.powi(3 - e)).round_ties_even() as i32;
    let bits = (e + 6) * 8 + q;
    // 127 is the NaN pattern (it would be 480): saturate to 448 instead.
    sign | bits.min(0x7E) as u8
}

/// The value of e4m3 bits.
pub fn e4m3_to_f32(bits: u8) -> f32 {
    let sign = if bits & 0x80 != 0 { -1.0 } else { 1.0 };
    let (exp, man) = (i32::from((bits >> 3) & 0xF), f32::from(bits & 0x7));
    let magnitude = match (exp, man) {
        (15, 7.0) => f32::NAN,
        (0, _) => man * 2f32.powi(-9),
        _ => (8.0 + man) * 2f32.powi(exp - 10),
    };
    sign * magnitude
}

/// A `[rows, cols]` matrix quantized per row: `x[r, c] ≈ e4m3(values[r·cols + c]) · scales[r]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Fp8Rows {
    pub rows: usize,
    pub cols: usize,
    /// e4m3 bits, row-major.
    pub values: Vec<u8>,
    /// `amax / 448` per row.
    pub scales: Vec<f32>,
}

impl Fp8Rows {
    /// Quantizes the row-major `[rows, cols]` matrix `data`.
    pub fn quantize(data: &[f32], rows: usize, cols: usize) -> Result<Self> {
        Error::check_matrix(data, rows, cols)?;
        let mut values = Vec::with_capacity(data.len());
        let mut scales = Vec::with_capacity(rows);
        for row in (0..rows).map(|r| &data[r * cols..(r + 1) * cols]) {
            let amax = row.iter().fold(0f32, |m, v| m.max(v.abs())).max(AMAX_FLOOR);
            let inv = E4M3_MAX / amax;
            values.extend(row.iter().map(|v| e4m3_from_f32(v * inv)));
            scales.push(amax / E4M3_MAX);
        }
        Ok(Self {
            rows,
            cols,
            values,
            scales,
        })
    }

    /// Quantizes `data` with one given scale for every row (the device quantizer's `common`).
    pub fn quantize_with_scale(data: &[f32], rows: usize, cols: usize, scale: f32) -> Result<Self> {
        Error::check_matrix(data, rows, cols)?;
        let amax = (scale * E4M3_MAX).max(AMAX_FLOOR);
        let inv = E4M3_MAX / amax;
        Ok(Self {
            rows,
            cols,
            values: data.iter().map(|v| e4m3_from_f32(v * inv)).collect(),
            scales: vec![amax / E4M3_MAX; rows],
        })
    }

    /// Quantizes an FP8 layer's weight `[rows, cols]`: per row, or with the largest row's scale
    /// for every row where the rows' maxima lie within [`UNIFORM_SPREAD`] of each other.
    pub fn quantize_weight(data: &[f32], rows: usize, cols: usize) -> Result<Self> {
        let per_row = Self::quantize(data, rows, cols)?;
        match uniform_scale(&per_row.scales) {
            Some(scale) => Self::quantize_with_scale(data, rows, cols, scale),
            None => Ok(per_row),
        }
    }

    /// The represented values as f32, row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        (0..self.rows)
            .flat_map(|r| {
                let s = self.scales[r];
                self.values[r * self.cols..(r + 1) * self.cols]
                    .iter()
                    .map(move |&q| e4m3_to_f32(q) * s)
            })
            .collect()
    }
}

/// The one scale a weight with row scales `scales` takes ([`Fp8Rows::quantize_weight`]): the
/// largest, where no row's is more than [`UNIFORM_SPREAD`] below it.
pub fn uniform_scale(scales: &[f32]) -> Option<f32> {
    let (lo, hi) = scales
        .iter()
        .fold((f32::INFINITY, 0f32), |(lo, hi), &s| (lo.min(s), hi.max(s)));
    (hi > 0.0 && hi <= lo * UNIFORM_SPREAD).then_some(hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_take_one_scale_within_the_spread() {
        // Row maxima 1, 0.5 and 0.25: within 2⁶, so one scale, the largest row's.
        let data = [1.0f32, -0.5, 0.5, 0.25, -0.25, 0.125];
        let w = Fp8Rows::quantize_weight(&data, 3, 2).unwrap();
        assert_eq!(w.scales, vec![1.0 / E4M3_MAX; 3]);
        assert_eq!(w.dequantize(), data.to_vec());
        // A row 2⁷ below the largest keeps its own scale.
        let data = [1.0f32, 0.5, 2f32.powi(-7), 2f32.powi(-8)];
        let w = Fp8Rows::quantize_weight(&data, 2, 2).unwrap();
        assert_eq!(w, Fp8Rows::quantize(&data, 2, 2).unwrap());
        assert_eq!(uniform_scale(&[0.0, 0.0]), None);
    }

    #[test]
    fn known_encodings() {
        for (x, bits) in [
            (0.0f32, 0x00u8),
            (-0.0, 0x80),
            (1.0, 0x38),
            (-2.0, 0xC0),
            (1.75, 0x3E),
            (448.0, 0x7E),
            (-448.0, 0xFE),
            (2f32.powi(-6), 0x08),
            (2f32.powi(-9), 0x01),
            (7.0 * 2f32.powi(-9), 0x07),
        ] {
            assert_eq!(e4m3_from_f32(x), bits, "{x}");
            assert_eq!(e4m3_to_f32(bits), x, "{bits:#04x}");
        }
    }

    #[test]
    fn rounds_to_nearest_even_and_saturates() {
        // Halfway between 1.0 (mantissa 0) and 1.125 (1): to the even mantissa, 1.0.
        assert_eq!(e4m3_from_f32(1.0625), 0x38);
        // Halfway between 1.125 (1) and 1.25 (2): up to 1.25.
        assert_eq!(e4m3_from_f32(1.1875), 0x3A);
        assert_eq!(e4m3_from_f32(1.19), 0x3A);
        // Half the smallest subnormal rounds to zero, 1.5 of it to two.
        assert_eq!(e4m3_from_f32(2f32.powi(-10)), 0x00);
        assert_eq!(e4m3_from_f32(3.0 * 2f32.powi(-10)), 0x02);
        // The largest subnormal rounding up into the smallest normal.
        assert_eq!(e4m3_from_f32(7.6 * 2f32.powi(-9)), 0x08);
        // 464 is halfway between 448 (mantissa 6, even) and 480, which e4m3 lacks.
        for x in [464.0f32, 470.0, 1e6, f32::INFINITY, f32::MAX] {
            assert_eq!(e4m3_from_f32(x), 0x7E, "{x}");
            assert_eq!(e4m3_from_f32(-x), 0xFE, "{x}");
        }
        assert_eq!(e4m3_from_f32(f32::MIN_POSITIVE / 4.0), 0x00);
        assert_eq!(e4m3_from_f32(f32::NAN) & 0x7F, 0x7F);
        assert!(e4m3_to_f32(0x7F).is_nan() && e4m3_to_f32(0xFF).is_nan());
    }

    #[test]
    fn every_finite_code_round_trips() {
        for bits in (0..=255u8).filter(|b| b & 0x7F != 0x7F) {
            assert_eq!(e4m3_from_f32(e4m3_to_f32(bits)), bits, "{bits:#04x}");
        }
        // Codes are monotonic in value, so rounding picks a neighbour.
        let values: Vec<f32> = (0..0x7Fu8).map(e4m3_to_f32).collect();
        assert!(values.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn rows_scale_to_their_amax() {
        // Row 0: amax 4, so x·112: 112, −224, 56, 448, all representable.
        // Row 1: zeros, floored scale. Row 2: 3 = 448 · (3/448) exactly, the rest rounded.
        let data = [
            1.0f32, -2.0, 0.5, 4.0, 0.0, 0.0, 0.0, 0.0, 3.0, 0.1, -0.2, 1.0,
        ];
        let q = Fp8Rows::quantize(&data, 3, 4).unwrap();
        assert_eq!(q.scales, [4.0 / 448.0, AMAX_FLOOR / 448.0, 3.0 / 448.0]);
        assert_eq!(&q.values[..8], [0x6E, 0xF6, 0x66, 0x7E, 0, 0, 0, 0]);
        assert_eq!(q.values[8], 0x7E);
        // Row 0 comes back up to the f32 rounding of its scale; the others within half a step
        // of three mantissa bits, 2⁻⁴ relative.
        let back = q.dequantize();
        for (i, (b, x)) in back.iter().zip(&data).enumerate() {
            let tol = if i < 8 { 1e-6 } else { 1.0 / 16.0 } * x.abs();
            assert!((b - x).abs() <= tol, "{i}: {b} vs {x}");
        }
        assert!(Fp8Rows::quantize(&data, 2, 4).is_err());
    }
}
