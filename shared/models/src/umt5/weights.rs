//! Reading a umT5 encoder's tensors from a checkpoint in either layout it ships in.
//!
//! The model asks for tensors by their original Wan name (`blocks.3.attn.q.weight`); this module
//! detects the checkpoint's layout and maps that name to it, and [`Checkpoint`] checks shape and
//! dtype and names the stored key in every error. Layouts (shared/reference/wan.md §4):
//! - original Wan: `models_t5_umt5-xxl-enc-bf16.pth` (`T5Encoder` state dict) after
//!   `turbine convert`;
//! - Hugging Face `UMT5EncoderModel` (diffusers' Wan pipelines, `text_encoder/`), whose token
//!   embedding is stored as `shared.weight` or, tied, as `encoder.embed_tokens.weight`.
//!
//! A common key prefix (`text_encoder.`) is detected and stripped.

use turbine_checkpoint::{Error as CkptError, TensorStore};
use turbine_tensor::HostTensor;

use crate::Result;
use crate::weights::{Checkpoint, rename_prefix};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Original,
    HuggingFace,
}

/// An encoder checkpoint seen through the original Wan names.
pub type UmT5Weights<'a> = Checkpoint<'a, Layout>;

/// Keys that exist exactly once in every encoder checkpoint of each layout, used to detect it.
const ORIGINAL_MARKER: &str = "token_embedding.weight";
const HF_MARKER: &str = "encoder.final_layer_norm.weight";
/// Where `UMT5EncoderModel` checkpoints keep the token embedding, in order of preference.
const HF_EMBEDDING: [&str; 2] = ["shared.weight", "encoder.embed_tokens.weight"];

impl<'a> UmT5Weights<'a> {
    pub fn new(store: &'a TensorStore) -> Result<Self> {
        Checkpoint::detect(
            store,
            &[
                (ORIGINAL_MARKER, Layout::Original),
                (HF_MARKER, Layout::HuggingFace),
            ],
            "umT5 encoder",
            |layout, name| match layout {
                Layout::Original => name.to_string(),
                Layout::HuggingFace => to_hf(name),
            },
        )
    }

    /// The token embedding table `[vocab, d_model]`, in its stored dtype.
    pub fn token_embedding(&self, vocab: usize, d_model: usize) -> Result<HostTensor> {
        let shape = [vocab, d_model];
        match self.layout() {
            Layout::Original => self.tensor(ORIGINAL_MARKER, &shape),
            Layout::HuggingFace => {
                let keys = HF_EMBEDDING.map(|k| self.prefixed(k));
                match keys.iter().find(|k| self.store().contains(k)) {
                    Some(key) => self.tensor_at(key, &shape),
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
        return format!(
            "encoder.block.{index}.{}",
            rename_prefix(inner, BLOCK_RENAMES)
        );
    }
    match name {
        "token_embedding.weight" => HF_EMBEDDING[0].to_string(),
        "norm.weight" => HF_MARKER.to_string(),
        other => other.to_string(),
    }
}
