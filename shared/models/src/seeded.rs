//! Deterministic seeded weights for any model: the bundled demo preset and the random-weight
//! benchmark presets need no files.
//!
//! Initialisation follows PyTorch's defaults closely enough for activations to stay O(1) through
//! the networks: matrices and convolutions `U(±1/√fan_in)` (nn.Linear / nn.ConvNd), biases
//! `U(±0.02)`, norm weights `1 + N(0, 0.05²)`, modulation tables `N(0, 1/D)` (diffusers'
//! `scale_shift_table`), embedding tables `N(0, 1)`.
//!
//! Values come from turbine-tensor's counter-based generator ([`turbine_tensor::seeded`]): tensor
//! number `n` of the list, element `i`, is a function of `(seed, n, i)` alone, computed the same
//! on the host and on the GPU. [`seeded_store`] holds only the generators, so a CUDA backend writes
//! the linear weights straight into device memory; [`seeded_safetensors`] writes the same values
//! into a safetensors image, which is what a weights export saves.

use std::collections::BTreeMap;

use rayon::prelude::*;
use turbine_checkpoint::TensorStore;
use turbine_tensor::{SeededInit, SeededValues};

use crate::{Error, Result};

/// A store holding every `(name, shape)` as seeded bf16 values (the dtype of TurboWan and umT5
/// checkpoints), generated when read.
pub fn seeded_store(tensors: &[(String, Vec<usize>)], seed: u64) -> Result<TensorStore> {
    let generators = tensors
        .iter()
        .zip(generators(tensors, seed))
        .map(|((name, shape), values)| (name.clone(), shape.clone(), values));
    Ok(TensorStore::from_seeded(generators, metadata(seed))?)
}

/// The safetensors file image of [`seeded_store`]'s tensors: what a weights export writes to disk.
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
    header.insert("__metadata__".into(), serde_json::json!(metadata(seed)));
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
    for ((_, shape), values) in tensors.iter().zip(generators(tensors, seed)) {
        let (region, tail) = rest.split_at_mut(shape.iter().product::<usize>() * 2);
        regions.push((values, region));
        rest = tail;
    }
    regions
        .into_par_iter()
        .for_each(|(values, region)| values.fill(region));
    Ok(image)
}

/// The generator of each tensor, by its position in the list.
fn generators(
    tensors: &[(String, Vec<usize>)],
    seed: u64,
) -> impl Iterator<Item = SeededValues> + '_ {
    tensors
        .iter()
        .enumerate()
        .map(move |(index, (name, shape))| SeededValues::new(init(name, shape), seed, index as u64))
}

/// The `__metadata__` of seeded weights: the seed.
fn metadata(seed: u64) -> BTreeMap<String, String> {
    BTreeMap::from([("seed".to_string(), seed.to_string())])
}

/// The distribution one tensor's values are drawn from, by its name and shape.
fn init(name: &str, shape: &[usize]) -> SeededInit {
    let leaf = name.rsplit('.').next().unwrap_or(name);
    if name.ends_with("modulation") {
        let d = shape.last().copied().unwrap_or(1) as f32;
        return SeededInit::Normal {
            mean: 0.0,
            std: d.sqrt().recip(),
        };
    }
    if name.ends_with("embedding.weight") && shape.len() == 2 {
        return SeededInit::Normal {
            mean: 0.0,
            std: 1.0,
        };
    }
    if leaf == "gamma" || (shape.len() == 1 && leaf == "weight" && name.contains("norm")) {
        return SeededInit::Normal {
            mean: 1.0,
            std: 0.05,
        };
    }
    if shape.len() == 1 {
        return SeededInit::Uniform { bound: 0.02 };
    }
    let fan_in: usize = shape[1..].iter().product();
    SeededInit::Uniform {
        bound: (fan_in.max(1) as f32).sqrt().recip(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shapes() -> Vec<(String, Vec<usize>)> {
        [
            ("a.weight", vec![40, 30]),
            ("a.bias", vec![40]),
            ("n.norm_q.weight", vec![40]),
            ("blocks.0.modulation", vec![1, 6, 64]),
            ("patch_embedding.weight", vec![8, 4, 1, 2, 2]),
            ("shared.embedding.weight", vec![70, 16]),
            ("enc.gamma", vec![16]),
        ]
        .into_iter()
        .map(|(n, s)| (n.to_string(), s))
        .collect()
    }

    #[test]
    fn same_seed_same_weights() {
        let shapes = shapes();
        let (a, b, c) = (
            seeded_store(&shapes, 1).unwrap(),
            seeded_store(&shapes, 1).unwrap(),
            seeded_store(&shapes, 2).unwrap(),
        );
        let w = |s: &TensorStore| s.get("a.weight").unwrap();
        assert_eq!(w(&a), w(&b));
        assert_ne!(w(&a), w(&c));
        assert_eq!(a.metadata("seed"), Some("1"));
    }

    #[test]
    fn each_rule_applies_to_its_tensors() {
        let store = seeded_store(&shapes(), 4).unwrap();
        let values = |name: &str| store.get(name).unwrap().to_f32_vec();
        // Within the rule's bounds, widened by the bf16 rounding (2⁻⁸ relative at most).
        let within = |name: &str, lo: f32, hi: f32| {
            let slack = 1.0 + 2f32.powi(-8);
            let v = values(name);
            let min = v.iter().copied().fold(f32::INFINITY, f32::min);
            let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let (lo, hi) = (lo * if lo < 0.0 { slack } else { 1.0 / slack }, hi * slack);
            assert!(lo <= min && max <= hi, "{name}: [{min}, {max}]");
        };
        within("a.weight", -1.0 / 30f32.sqrt(), 1.0 / 30f32.sqrt());
        within("patch_embedding.weight", -0.5, 0.5);
        within("a.bias", -0.02, 0.02);
        // Irwin–Hall normals reach at most √12 ≈ 3.46 standard deviations.
        within("n.norm_q.weight", 1.0 - 3.5 * 0.05, 1.0 + 3.5 * 0.05);
        within("enc.gamma", 1.0 - 3.5 * 0.05, 1.0 + 3.5 * 0.05);
        within("blocks.0.modulation", -3.5 / 8.0, 3.5 / 8.0);
        within("shared.embedding.weight", -3.5, 3.5);
        let emb = values("shared.embedding.weight");
        assert!(
            emb.iter().any(|x| x.abs() > 1.5),
            "N(0, 1) rows look too narrow"
        );
    }

    #[test]
    fn the_image_holds_the_store_values() {
        let shapes = shapes();
        let image =
            TensorStore::from_bytes("image", seeded_safetensors(&shapes, 9).unwrap()).unwrap();
        let store = seeded_store(&shapes, 9).unwrap();
        assert_eq!(image.metadata("seed"), Some("9"));
        for (name, shape) in &shapes {
            assert_eq!(image.get(name).unwrap(), store.get(name).unwrap(), "{name}");
            let generated = store.mapped(name, shape).unwrap();
            assert_eq!(
                image.bytes(name).unwrap(),
                generated.tensor_bytes().bytes(),
                "{name}"
            );
        }
        assert_eq!(image.data_bytes(), store.data_bytes());
        assert!(store.bytes("a.weight").is_err());
    }
}
