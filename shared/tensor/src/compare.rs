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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_to_the_reference_scale() {
        assert_eq!(max_rel_err(&[1.0, -1.5], &[1.0, -2.0]), 0.25);
        assert!(max_rel_err(&[f32::NAN, 0.0], &[1.0, 0.0]).is_nan());
    }
}
