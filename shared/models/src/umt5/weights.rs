//! Reading a umT5 encoder's tensors from a checkpoint in either layout it ships in.
//!
//! The model asks for tensors by their original Wan name (`blocks.3.attn.q.weight`); this module
//! maps that name to the checkpoint's own layout, checks shape and dtype, and names the stored key
//! in every error. Layouts (shared/reference/wan.md §4):
//! - original Wan: `models_t5_umt5-xxl-enc-bf16.pth` (`T5Encoder` state dict) after
//!   `turbine convert`;
//! - Hugging Face `UMT5EncoderModel` (diffusers' Wan pipelines, `text_encoder/`), whose token
//!   embedding is stored as `shared.weight` or, tied, as `encoder.embed_tokens.weight`.
//!
//! A common key prefix (`text_encoder.`) is detected and stripped.

use turbine_checkpoint::{Error as CkptError, TensorStore};
use turbine_tensor::{DType, HostTensor, LinearWeight, LinearWeights};

use crate::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Original,
    HuggingFace,
}

/// A checkpoint seen through the original Wan names.
pub struct UmT5Weights<'a> {
    store: &'a TensorStore,
    layout: Layout,
    prefix: String,
}

/// Keys that exist exactly once in every encoder checkpoint of each layout, used to detect it.
const ORIGINAL_MARKER: &str = "token_embedding.weight";
const HF_MARKER: &str = "encoder.final_layer_norm.weight";
/// Where `UMT5EncoderModel` checkpoints keep the token embedding, in order of preference.
const HF_EMBEDDING: [&str; 2] = ["shared.weight", "encoder.embed_tokens.weight"];

impl<'a> UmT5Weights<'a> {
    pub fn new(store: &'a TensorStore) -> Result<Self> {
        for name in store.names() {
            for (marker, layout) in [
                (ORIGINAL_MARKER, Layout::Original),
                (HF_MARKER, Layout::HuggingFace),
            ] {
                if let Some(prefix) = name.strip_suffix(marker)
                    && (prefix.is_empty() || prefix.ends_with('.'))
                {
                    return Ok(UmT5Weights {
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
                " (or `{HF_MARKER}`): not a umT5 encoder checkpoint ({} tensors)",
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
            Layout::HuggingFace => to_hf(name),
        };
        format!("{}{mapped}", self.prefix)
    }

    /// A float tensor of exactly `shape`.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<HostTensor> {
        self.stored(&self.key(name), shape)
    }

    fn stored(&self, key: &str, shape: &[usize]) -> Result<HostTensor> {
        let t = self.store.get_shaped(key, shape)?;
        if !t.dtype().is_float() {
            return Err(CkptError::dtype_mismatch(
                key,
                &[DType::F32, DType::BF16, DType::F16],
                t.dtype(),
            )
            .into());
        }
        Ok(t)
    }

    /// The bias-free linear layer `{name}.weight` `[out, in]`.
    pub fn linear(
        &self,
        name: &str,
        out_features: usize,
        in_features: usize,
    ) -> Result<LinearWeights> {
        let weight = self.tensor(&format!("{name}.weight"), &[out_features, in_features])?;
        Ok(LinearWeights {
            out_features,
            in_features,
            weight: LinearWeight::Dense(weight),
            bias: None,
        })
    }

    /// The token embedding table `[vocab, d_model]`, in its stored dtype.
    pub fn token_embedding(&self, vocab: usize, d_model: usize) -> Result<HostTensor> {
        let shape = [vocab, d_model];
        match self.layout {
            Layout::Original => self.tensor(ORIGINAL_MARKER, &shape),
            Layout::HuggingFace => {
                let keys = HF_EMBEDDING.map(|k| format!("{}{k}", self.prefix));
                match keys.iter().find(|k| self.store.contains(k)) {
                    Some(key) => self.stored(key, &shape),
                    None => Err(CkptError::Missing {
                        key: keys[0].clone(),
                        hint: format!(" (nor its tied copy `{}`)", keys[1]),
                    }
                    .into()),
                }
            }
        }
    }
}

/// Original block-relative names and their `UMT5EncoderModel` equivalents, matched as prefixes.
const BLOCK_RENAMES: &[(&str, &str)] = &[
    ("norm1.", "layer.0.layer_norm."),
    ("attn.", "layer.0.SelfAttention."),
    (
        "pos_embedding.embedding.",
        "layer.0.SelfAttention.relative_attention_bias.",
    ),
    ("norm2.", "layer.1.layer_norm."),
    ("ffn.gate.0.", "layer.1.DenseReluDense.wi_0."),
    ("ffn.fc1.", "layer.1.DenseReluDense.wi_1."),
    ("ffn.fc2.", "layer.1.DenseReluDense.wo."),
];

/// The `UMT5EncoderModel` key of an original Wan umT5 key (wan.md §4).
pub fn to_hf(name: &str) -> String {
    if let Some((index, inner)) = name
        .strip_prefix("blocks.")
        .and_then(|rest| rest.split_once('.'))
    {
        let inner = BLOCK_RENAMES
            .iter()
            .find_map(|(from, to)| inner.strip_prefix(from).map(|rest| format!("{to}{rest}")))
            .unwrap_or_else(|| inner.to_string());
        return format!("encoder.block.{index}.{inner}");
    }
    match name {
        "token_embedding.weight" => HF_EMBEDDING[0].to_string(),
        "norm.weight" => HF_MARKER.to_string(),
        other => other.to_string(),
    }
}
