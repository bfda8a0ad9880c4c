//! Reading a Wan DiT's tensors from a checkpoint in any of the layouts it ships in.
//!
//! The model asks for tensors by their original Wan name (`blocks.3.self_attn.q.weight`); this module
//! maps that name to the checkpoint's own layout, checks shape and dtype, and names the stored key
//! in every error. Layouts (shared/reference/wan.md §1.7, turbodiffusion.md §2.3):
//! - original Wan (`WanModel` state dict; fp32, Conv3d patch embedding `[D, C, 1, 2, 2]`);
//! - TurboWan: the original names, a Linear patch embedding `[D, C·4]`, fp32 norm weights, and
//!   `blocks.N.self_attn.attn_op.local_attn.proj_l.*`; its `-quant` files store block linears as
//!   `int8_weight` + `scale` `[⌈out/128⌉, ⌈in/128⌉]` + `bias`;
//! - diffusers (`WanTransformer3DModel`).
//!
//! A common key prefix (`net.`, `model.diffusion_model.`) is detected and stripped.

use turbine_checkpoint::{Error as CkptError, TensorStore};
use turbine_tensor::{DType, HostTensor, LinearWeight, LinearWeights};

use crate::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Original Wan names (also TurboWan's).
    Original,
    Diffusers,
}

/// A checkpoint seen through the original Wan names.
pub struct WanWeights<'a> {
    store: &'a TensorStore,
    layout: Layout,
    prefix: String,
}

/// Keys that exist exactly once in every DiT checkpoint of each layout, used to detect it.
const ORIGINAL_MARKER: &str = "time_projection.1.bias";
const DIFFUSERS_MARKER: &str = "condition_embedder.time_proj.bias";

impl<'a> WanWeights<'a> {
    pub fn new(store: &'a TensorStore) -> Result<Self> {
        for name in store.names() {
            for (marker, layout) in [
                (ORIGINAL_MARKER, Layout::Original),
                (DIFFUSERS_MARKER, Layout::Diffusers),
            ] {
                if let Some(prefix) = name.strip_suffix(marker)
                    && (prefix.is_empty() || prefix.ends_with('.'))
                {
                    return Ok(WanWeights {
                        store,
                        layout,
                        prefix: prefix.to_string(),
                    });
                }
            }
        }
        Err(CkptError::Missing {
            key: ORIGINAL_MARKER.into(),
            hint: format!(
                " (or `{DIFFUSERS_MARKER}`): not a Wan DiT checkpoint ({} tensors)",
                store.len()
            ),
        }
        .into())
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The stored key of an original-layout name.
    pub fn key(&self, name: &str) -> String {
        let mapped = match self.layout {
            Layout::Original => name.to_string(),
            Layout::Diffusers => to_diffusers(name),
        };
        format!("{}{mapped}", self.prefix)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.store.contains(&self.key(name))
    }

    /// A float tensor of exactly `shape`.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<HostTensor> {
        let key = self.key(name);
        let t = self.store.get_shaped(&key, shape)?;
        float_only(&key, &t)?;
        Ok(t)
    }

    /// A float tensor of any of the given shapes, returned as-is.
    fn tensor_one_of(&self, name: &str, shapes: &[Vec<usize>]) -> Result<HostTensor> {
        let key = self.key(name);
        let info = self
            .store
            .info(&key)
            .ok_or_else(|| CkptError::missing(&key))?;
        if !shapes.contains(&info.shape) {
            return Err(CkptError::ShapeMismatch {
                key,
                expected: shapes[0].clone(),
                found: info.shape.clone(),
            }
            .into());
        }
        let t = self.store.get(&key)?;
        float_only(&key, &t)?;
        Ok(t)
    }

    /// The linear layer `{name}.weight` `[out, in]` + `{name}.bias`, or its W8A8 form.
    pub fn linear(
        &self,
        name: &str,
        out_features: usize,
        in_features: usize,
    ) -> Result<LinearWeights> {
        let weight = if self.contains(&format!("{name}.weight")) {
            LinearWeight::Dense(
                self.tensor(&format!("{name}.weight"), &[out_features, in_features])?,
            )
        } else if self.contains(&format!("{name}.int8_weight")) {
            self.int8_weight(name, out_features, in_features)?
        } else {
            let key = self.key(&format!("{name}.weight"));
            return Err(CkptError::Missing {
                hint: format!(
                    " (nor `{}`, the -quant form)",
                    self.key(&format!("{name}.int8_weight"))
                ),
                key,
            }
            .into());
        };
        let bias = self.tensor(&format!("{name}.bias"), &[out_features])?;
        Ok(LinearWeights {
            out_features,
            in_features,
            weight,
            bias: Some(bias),
        })
    }

    fn int8_weight(
        &self,
        name: &str,
        out_features: usize,
        in_features: usize,
    ) -> Result<LinearWeight> {
        let key = self.key(&format!("{name}.int8_weight"));
        let values = self.store.get_shaped(&key, &[out_features, in_features])?;
        let turbine_tensor::HostData::I8(values) = values.data else {
            return Err(CkptError::dtype_mismatch(&key, &[DType::I8], values.dtype()).into());
        };
        let (go, gi) = LinearWeights::quant_grid(out_features, in_features);
        let scale_key = self.key(&format!("{name}.scale"));
        let scales = self.store.get_shaped(&scale_key, &[go, gi])?;
        if scales.dtype() != DType::F32 {
            return Err(
                CkptError::dtype_mismatch(&scale_key, &[DType::F32], scales.dtype()).into(),
            );
        }
        Ok(LinearWeight::Int8Block {
            values,
            scales: scales.to_f32_vec(),
        })
    }

    /// The patch embedding as a linear layer over `(c, kt, kh, kw)` features: the Conv3d weight
    /// `[D, C, pt, ph, pw]` of the original and diffusers layouts, or TurboWan's `[D, C·pt·ph·pw]`.
    pub fn patch_embedding(
        &self,
        dim: usize,
        in_dim: usize,
        patch: [usize; 3],
    ) -> Result<LinearWeights> {
        let features = in_dim * patch.iter().product::<usize>();
        let conv = vec![dim, in_dim, patch[0], patch[1], patch[2]];
        let weight = self.tensor_one_of("patch_embedding.weight", &[conv, vec![dim, features]])?;
        let weight = HostTensor::new([dim, features], weight.data)?;
        Ok(LinearWeights {
            out_features: dim,
            in_features: features,
            weight: LinearWeight::Dense(weight),
            bias: Some(self.tensor("patch_embedding.bias", &[dim])?),
        })
    }
}

fn float_only(key: &str, t: &HostTensor) -> Result<()> {
    if !t.dtype().is_float() {
        return Err(CkptError::dtype_mismatch(
            key,
            &[DType::F32, DType::BF16, DType::F16],
            t.dtype(),
        )
        .into());
    }
    Ok(())
}

/// Original block-relative names and their diffusers equivalents, matched as prefixes.
const BLOCK_RENAMES: &[(&str, &str)] = &[
    ("modulation", "scale_shift_table"),
    ("self_attn.o.", "attn1.to_out.0."),
    ("self_attn.q.", "attn1.to_q."),
    ("self_attn.k.", "attn1.to_k."),
    ("self_attn.v.", "attn1.to_v."),
    ("self_attn.", "attn1."),
    ("cross_attn.o.", "attn2.to_out.0."),
    ("cross_attn.q.", "attn2.to_q."),
    ("cross_attn.k.", "attn2.to_k."),
    ("cross_attn.v.", "attn2.to_v."),
    ("cross_attn.", "attn2."),
    // The affine cross-attention LayerNorm: `norm3` in the original, `norm2` in diffusers.
    ("norm3.", "norm2."),
    ("ffn.0.", "ffn.net.0.proj."),
    ("ffn.2.", "ffn.net.2."),
];

const TOP_RENAMES: &[(&str, &str)] = &[
    ("head.modulation", "scale_shift_table"),
    ("head.head.", "proj_out."),
    (
        "text_embedding.0.",
        "condition_embedder.text_embedder.linear_1.",
    ),
    (
        "text_embedding.2.",
        "condition_embedder.text_embedder.linear_2.",
    ),
    (
        "time_embedding.0.",
        "condition_embedder.time_embedder.linear_1.",
    ),
    (
        "time_embedding.2.",
        "condition_embedder.time_embedder.linear_2.",
    ),
    ("time_projection.1.", "condition_embedder.time_proj."),
];

fn rename(name: &str, table: &[(&str, &str)]) -> String {
    table
        .iter()
        .find_map(|(from, to)| name.strip_prefix(from).map(|rest| format!("{to}{rest}")))
        .unwrap_or_else(|| name.to_string())
}

/// The diffusers key of an original Wan DiT key (wan.md §1.7).
pub fn to_diffusers(name: &str) -> String {
    if let Some(rest) = name.strip_prefix("blocks.")
        && let Some((index, inner)) = rest.split_once('.')
    {
        return format!("blocks.{index}.{}", rename(inner, BLOCK_RENAMES));
    }
    rename(name, TOP_RENAMES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diffusers_names() {
        for (original, diffusers) in [
            (
                "blocks.0.self_attn.o.weight",
                "blocks.0.attn1.to_out.0.weight",
            ),
            (
                "blocks.11.self_attn.norm_q.weight",
                "blocks.11.attn1.norm_q.weight",
            ),
            ("blocks.2.cross_attn.k.bias", "blocks.2.attn2.to_k.bias"),
            ("blocks.2.norm3.weight", "blocks.2.norm2.weight"),
            ("blocks.2.modulation", "blocks.2.scale_shift_table"),
            ("blocks.5.ffn.0.weight", "blocks.5.ffn.net.0.proj.weight"),
            ("blocks.5.ffn.2.bias", "blocks.5.ffn.net.2.bias"),
            (
                "blocks.1.self_attn.attn_op.local_attn.proj_l.weight",
                "blocks.1.attn1.attn_op.local_attn.proj_l.weight",
            ),
            ("head.modulation", "scale_shift_table"),
            ("head.head.bias", "proj_out.bias"),
            (
                "time_projection.1.weight",
                "condition_embedder.time_proj.weight",
            ),
            (
                "text_embedding.2.bias",
                "condition_embedder.text_embedder.linear_2.bias",
            ),
            ("patch_embedding.weight", "patch_embedding.weight"),
        ] {
            assert_eq!(to_diffusers(original), diffusers);
        }
    }
}
