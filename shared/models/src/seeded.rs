//! Deterministic seeded weights for any model, built in memory: the bundled demo preset and the
//! random-weight benchmark presets need no files.
//!
//! Initialisation follows PyTorch's defaults closely enough for activations to stay O(1) through
//! the networks: matrices and convolutions `U(±1/√fan_in)` (nn.Linear / nn.ConvNd), biases
//! `U(±0.02)`, norm weights `1 + N(0, 0.05²)`, modulation tables `N(0, 1/D)` (diffusers'
//! `scale_shift_table`), embedding tables `N(0, 1)`.

use half::bf16;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use safetensors::{Dtype, tensor::TensorView};
use turbine_checkpoint::TensorStore;

use crate::{Error, Result};

/// Builds a safetensors store holding every `(name, shape)` with seeded values, stored as bf16 (the
/// dtype of TurboWan and umT5 checkpoints).
pub fn seeded_store(tensors: &[(String, Vec<usize>)], seed: u64) -> Result<TensorStore> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut buffers = Vec::with_capacity(tensors.len());
    for (name, shape) in tensors {
        let values = init(name, shape, &mut rng);
        let bytes: Vec<u8> = values
            .iter()
            .flat_map(|v| bf16::from_f32(*v).to_le_bytes())
            .collect();
        buffers.push((name.clone(), shape.clone(), bytes));
    }
    let views = buffers
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::BF16, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::Config(format!("seeded tensor `{name}`: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = [("seed".to_string(), seed.to_string())]
        .into_iter()
        .collect();
    let bytes = safetensors::serialize(views, Some(metadata))
        .map_err(|e| Error::Config(format!("seeded weights: {e}")))?;
    Ok(TensorStore::from_bytes(
        format!("<seeded weights, seed {seed}>"),
        bytes,
    )?)
}

fn init(name: &str, shape: &[usize], rng: &mut ChaCha8Rng) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let leaf = name.rsplit('.').next().unwrap_or(name);
    let normal = |rng: &mut ChaCha8Rng, std: f32| -> f32 {
        let z: f32 = StandardNormal.sample(rng);
        z * std
    };
    if name.ends_with("modulation") {
        let d = shape.last().copied().unwrap_or(1) as f32;
        return (0..n).map(|_| normal(rng, d.sqrt().recip())).collect();
    }
    if name.ends_with("embedding.weight") && shape.len() == 2 {
        return (0..n).map(|_| normal(rng, 1.0)).collect();
    }
    if leaf == "gamma" || (shape.len() == 1 && leaf == "weight" && name.contains("norm")) {
        return (0..n).map(|_| 1.0 + normal(rng, 0.05)).collect();
    }
    if shape.len() == 1 {
        return (0..n).map(|_| rng.random_range(-0.02..=0.02)).collect();
    }
    let fan_in: usize = shape[1..].iter().product();
    let bound = (fan_in.max(1) as f32).sqrt().recip();
    (0..n).map(|_| rng.random_range(-bound..=bound)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_weights() {
        let shapes = vec![
            ("a.weight".to_string(), vec![4, 3]),
            ("a.bias".to_string(), vec![4]),
            ("n.norm_q.weight".to_string(), vec![4]),
        ];
        let (a, b, c) = (
            seeded_store(&shapes, 1).unwrap(),
            seeded_store(&shapes, 1).unwrap(),
            seeded_store(&shapes, 2).unwrap(),
        );
        assert_eq!(a.bytes("a.weight").unwrap(), b.bytes("a.weight").unwrap());
        assert_ne!(a.bytes("a.weight").unwrap(), c.bytes("a.weight").unwrap());
        let w = a.get("a.weight").unwrap().to_f32_vec();
        assert!(w.iter().all(|v| v.abs() <= 1.0 / 3f32.sqrt() + 1e-2));
        let norm = a.get("n.norm_q.weight").unwrap().to_f32_vec();
        assert!(norm.iter().all(|v| (v - 1.0).abs() < 0.5));
    }
}
