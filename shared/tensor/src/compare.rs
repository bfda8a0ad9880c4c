//! The error measure of Turbine's golden tests: each model stage and kernel is checked against its
//! PyTorch reference by [`max_rel_err`] under a per-test tolerance.

/// `max|got − want| / max|want|`: the error relative to the reference's scale, so near-zero
/// reference entries do not dominate.
///
/// NaN when `got` holds a NaN (which `f32::max` would otherwise skip), so a `<= tolerance` check
/// fails.
///
/// # Panics
///
/// If `got` and `want` differ in length.
pub fn max_rel_err(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "lengths differ");
    if got.iter().any(|v| v.is_nan()) {
        return f32::NAN;
    }
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = got
        .iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / scale
}

/// `‖got − want‖₂ / ‖want‖₂` in f64: the whole-tensor measure of the bf16 parity gates (PyTorch
/// peers report it), NaN when `got` holds a NaN.
///
/// # Panics
///
/// If `got` and `want` differ in length.
pub fn rel_l2(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len(), "lengths differ");
    if got.iter().any(|v| v.is_nan()) {
        return f64::NAN;
    }
    let (diff, norm) = got.iter().zip(want).fold((0f64, 0f64), |(d, n), (a, b)| {
        let (a, b) = (f64::from(*a), f64::from(*b));
        (d + (a - b) * (a - b), n + b * b)
    });
    (diff / norm).sqrt()
}

/// `Σ|got − want| / Σ|want|` in f64: SageAttention's and SpargeAttn's accuracy measure for
/// quantized and sparse attention (kernels.md §12), NaN when `got` holds a NaN.
///
/// # Panics
///
/// If `got` and `want` differ in length.
pub fn rel_l1(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len(), "lengths differ");
    if got.iter().any(|v| v.is_nan()) {
        return f64::NAN;
    }
    let (diff, norm) = got.iter().zip(want).fold((0f64, 0f64), |(d, n), (a, b)| {
        (d + f64::from(a - b).abs(), n + f64::from(*b).abs())
    });
    diff / norm
}

/// Cosine similarity of the flattened tensors in f64 (the companion of [`rel_l1`]), NaN when
/// `got` holds a NaN.
///
/// # Panics
///
/// If `got` and `want` differ in length.
pub fn cosine(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len(), "lengths differ");
    if got.iter().any(|v| v.is_nan()) {
        return f64::NAN;
    }
    let (dot, gg, ww) = got
        .iter()
        .zip(want)
        .fold((0f64, 0f64, 0f64), |(d, g, w), (a, b)| {
            let (a, b) = (f64::from(*a), f64::from(*b));
            (d + a * b, g + a * a, w + b * b)
        });
    dot / (gg.sqrt() * ww.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l1_and_cosine() {
        assert_eq!(rel_l1(&[1.0, -1.5], &[1.0, -2.0]), 0.5 / 3.0);
        assert!((cosine(&[2.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-12);
        assert!(cosine(&[0.0, 1.0], &[1.0, 0.0]).abs() < 1e-12);
        assert!(rel_l1(&[f32::NAN], &[1.0]).is_nan());
    }

    #[test]
    fn relative_to_the_reference_scale() {
        assert_eq!(max_rel_err(&[1.0, -1.5], &[1.0, -2.0]), 0.25);
        assert!(max_rel_err(&[f32::NAN, 0.0], &[1.0, 0.0]).is_nan());
    }

    #[test]
    fn rel_l2_is_the_norm_ratio() {
        assert!((rel_l2(&[3.0, 3.0], &[3.0, 4.0]) - 0.2).abs() < 1e-12);
        assert!(rel_l2(&[f32::NAN], &[1.0]).is_nan());
    }
}
