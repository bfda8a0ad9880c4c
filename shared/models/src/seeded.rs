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
use rayon::prelude::*;
use turbine_checkpoint::TensorStore;

use crate::{Error, Result};

/// Elements drawn from one RNG stream: tensors are filled in chunks of this many values in
/// parallel, each chunk from its own stream, so the weights do not depend on the thread count.
const CHUNK: usize = 1 << 20;

/// Builds a safetensors store holding every `(name, shape)` with seeded values, stored as bf16 (the
/// dtype of TurboWan and umT5 checkpoints).
pub fn seeded_store(tensors: &[(String, Vec<usize>)], seed: u64) -> Result<TensorStore> {
    Ok(TensorStore::from_bytes(
        format!("<seeded weights, seed {seed}>"),
        seeded_safetensors(tensors, seed)?,
    )?)
}

/// The safetensors file image of [`seeded_store`]: what a weights export writes to disk.
///
/// The values are written straight into the image, in parallel: the 14B preset (28.6 GB) takes
/// seconds.
pub fn seeded_safetensors(tensors: &[(String, Vec<usize>)], seed: u64) -> Result<Vec<u8>> {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, shape) in tensors {
        let bytes = shape.iter().product::<usize>() * 2;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    header.insert(
        "__metadata__".into(),
        serde_json::json!({"seed": seed.to_string()}),
    );
    let mut json = serde_json::to_vec(&header)
        .map_err(|e| Error::Config(format!("seeded weights header: {e}")))?;
    // Keep the data 8-byte aligned, as safetensors writers do.
    json.resize(json.len().next_multiple_of(8), b' ');
    let start = 8 + json.len();
    let mut image = vec![0u8; start + offset];
    image[..8].copy_from_slice(&(json.len() as u64).to_le_bytes());
    image[8..start].copy_from_slice(&json);

    let mut rest = &mut image[start..];
    let mut regions = Vec::with_capacity(tensors.len());
    for (name, shape) in tensors {
        let (region, tail) = rest.split_at_mut(shape.iter().product::<usize>() * 2);
        regions.push((name, shape, region));
        rest = tail;
    }
    regions
        .into_par_iter()
        .enumerate()
        .for_each(|(index, (name, shape, region))| {
            let rule = Init::for_tensor(name, shape);
            region
                .par_chunks_mut(CHUNK * 2)
                .enumerate()
                .for_each(|(chunk, bytes)| {
                    let mut rng = ChaCha8Rng::seed_from_u64(
                        seed ^ (chunk as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    );
                    rng.set_stream(index as u64);
                    for out in bytes.chunks_exact_mut(2) {
                        out.copy_from_slice(&bf16::from_f32(rule.sample(&mut rng)).to_le_bytes());
                    }
                });
        });
    Ok(image)
}

/// The distribution one tensor's values are drawn from.
#[derive(Debug, Clone, Copy)]
enum Init {
    Normal { mean: f32, std: f32 },
    Uniform { bound: f32 },
}

impl Init {
    fn for_tensor(name: &str, shape: &[usize]) -> Self {
        let leaf = name.rsplit('.').next().unwrap_or(name);
        if name.ends_with("modulation") {
            let d = shape.last().copied().unwrap_or(1) as f32;
            return Init::Normal {
                mean: 0.0,
                std: d.sqrt().recip(),
            };
        }
        if name.ends_with("embedding.weight") && shape.len() == 2 {
            return Init::Normal {
                mean: 0.0,
                std: 1.0,
            };
        }
        if leaf == "gamma" || (shape.len() == 1 && leaf == "weight" && name.contains("norm")) {
            return Init::Normal {
                mean: 1.0,
                std: 0.05,
            };
        }
        if shape.len() == 1 {
            return Init::Uniform { bound: 0.02 };
        }
        let fan_in: usize = shape[1..].iter().product();
        Init::Uniform {
            bound: (fan_in.max(1) as f32).sqrt().recip(),
        }
    }

    fn sample(self, rng: &mut ChaCha8Rng) -> f32 {
        match self {
            Init::Normal { mean, std } => {
                let z: f32 = StandardNormal.sample(rng);
                mean + z * std
            }
            Init::Uniform { bound } => rng.random_range(-bound..=bound),
        }
    }
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
