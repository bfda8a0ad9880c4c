//! Reading a Wan DiT's tensors from a checkpoint in any of the layouts it ships in.
//!
//! The model asks for tensors by their original Wan name (`blocks.3.self_attn.q.weight`); this module
//! detects the checkpoint's layout and maps that name to it, and [`Checkpoint`] checks shape and
//! dtype and names the stored key in every error. Layouts (shared/reference/wan.md §1.7,
//! turbodiffusion.md §2.3):
//! - original Wan (`WanModel` state dict; fp32, Conv3d patch embedding `[D, C, 1, 2, 2]`);
//! - TurboWan: the original names, a Linear patch embedding `[D, C·4]`, fp32 norm weights, and
//!   `blocks.N.self_attn.attn_op.local_attn.proj_l.*`; its `-quant` files store block linears as
//!   `int8_weight` + `scale` `[⌈out/128⌉, ⌈in/128⌉]` + `bias`;
//! - diffusers (`WanTransformer3DModel`).
//!
//! A common key prefix (`net.`, `model.diffusion_model.`) is detected and stripped.

use turbine_checkpoint::TensorStore;
use turbine_tensor::{HostTensor, LinearWeight, LinearWeights};

use crate::Result;
use crate::weights::{Checkpoint, rename_prefix};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Original Wan names (also TurboWan's).
    Original,
    Diffusers,
}

/// A DiT checkpoint seen through the original Wan names.
pub type WanWeights<'a> = Checkpoint<'a, Layout>;

/// Keys that exist exactly once in every DiT checkpoint of each layout, used to detect it.
const ORIGINAL_MARKER: &str = "time_projection.1.bias";
const DIFFUSERS_MARKER: &str = "condition_embedder.time_proj.bias";

impl<'a> WanWeights<'a> {
    pub fn new(store: &'a TensorStore) -> Result<Self> {
        Checkpoint::detect(
            store,
            &[
                (ORIGINAL_MARKER, Layout::Original),
                (DIFFUSERS_MARKER, Layout::Diffusers),
            ],
            "Wan DiT",
            |layout, name| match layout {
                Layout::Original => name.to_string(),
                Layout::Diffusers => to_diffusers(name),
            },
        )
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

/// The diffusers key of an original Wan DiT key (wan.md §1.7).
pub fn to_diffusers(name: &str) -> String {
    if let Some(rest) = name.strip_prefix("blocks.")
        && let Some((index, inner)) = rest.split_once('.')
    {
        return format!("blocks.{index}.{}", rename_prefix(inner, BLOCK_RENAMES));
    }
    rename_prefix(name, TOP_RENAMES)
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
