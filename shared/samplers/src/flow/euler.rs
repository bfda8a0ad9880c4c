/// One rectified-flow Euler step, `x ← x + (σ_{k+1} − σ_k)·v`: the first-order fallback to UniPC.
pub(crate) fn step(x: &[f64], v: &[f64], sigma: f64, sigma_next: f64) -> Vec<f64> {
    let dt = sigma_next - sigma;
    x.iter().zip(v).map(|(&x, &v)| x + dt * v).collect()
}
