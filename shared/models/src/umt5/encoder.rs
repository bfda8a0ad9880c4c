//! The whole encoder: token embedding on the host, pre-norm blocks on the backend, final RMSNorm.

use turbine_checkpoint::TensorStore;
use turbine_tensor::{Backend, HostData, HostTensor};

use super::UmT5Config;
use super::attention::{SelfAttention, relative_buckets};
use super::ffn::GatedFfn;
use super::weights::UmT5Weights;
use crate::{Error, Result};

/// umT5's encoder stack (Wan's `T5Encoder`, HF `UMT5EncoderModel`), turning token ids into the
/// text context of the Wan DiT.
pub struct UmT5Encoder<B: Backend> {
    backend: B,
    config: UmT5Config,
    /// `[vocab, D]` in its stored dtype. Only a prompt's rows are ever needed, so the table (2.1 GB
    /// in XXL's bf16) stays in host memory and rows are gathered there.
    embedding: HostTensor,
    blocks: Vec<Block<B>>,
    norm: B::Tensor,
}

/// `x += attn(norm1(x))`, `x += ffn(norm2(x))`, with T5's RMSNorm.
struct Block<B: Backend> {
    norm1: B::Tensor,
    attn: SelfAttention<B>,
    norm2: B::Tensor,
    ffn: GatedFfn<B>,
}

impl<B: Backend> UmT5Encoder<B> {
    /// Builds the encoder from a checkpoint in either layout (see [`super::weights`]).
    pub fn load(backend: B, config: UmT5Config, store: &TensorStore) -> Result<Self> {
        config.validate()?;
        let w = UmT5Weights::new(store)?;
        let c = &config;
        let norm = |name: &str| -> Result<B::Tensor> {
            Ok(backend.upload(&w.tensor(name, &[c.d_model])?)?)
        };
        let blocks = (0..c.num_layers)
            .map(|i| {
                Ok(Block {
                    norm1: norm(&format!("blocks.{i}.norm1.weight"))?,
                    attn: SelfAttention::load(&backend, &w, c, i)?,
                    norm2: norm(&format!("blocks.{i}.norm2.weight"))?,
                    ffn: GatedFfn::load(&backend, &w, c, i)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let norm = norm("norm.weight")?;
        let embedding = w.token_embedding(c.vocab_size, c.d_model)?;
        Ok(Self {
            backend,
            config,
            embedding,
            blocks,
            norm,
        })
    }

    pub fn config(&self) -> &UmT5Config {
        &self.config
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Encodes a prompt's ids (ending in `</s>`, unpadded) into `[L, d_model]`.
    ///
    /// Wan encodes the ids padded to 512 with padded keys masked and keeps the first `L` rows;
    /// since masked keys get zero weight and the position bias depends only on relative distance,
    /// the unpadded sequence gives the same rows (wan.md §4) without computing the padding.
    pub fn encode(&self, ids: &[u32]) -> Result<B::Tensor> {
        let c = &self.config;
        if ids.is_empty() || ids.len() > c.text_len {
            return Err(Error::Input(format!(
                "umT5 takes 1..={} token ids, got {}",
                c.text_len,
                ids.len()
            )));
        }
        if let Some((pos, id)) = ids
            .iter()
            .enumerate()
            .find(|(_, id)| **id as usize >= c.vocab_size)
        {
            return Err(Error::Input(format!(
                "token id {id} at position {pos} is outside the umT5 vocabulary ({} entries)",
                c.vocab_size
            )));
        }
        let b = &self.backend;
        let rows = HostTensor::from_f32([ids.len(), c.d_model], self.gather(ids)?)?;
        let mut x = b.upload(&rows)?;
        // All layers' bias rows go up before the first layer is queued: a pageable copy between
        // queued kernels may wait for them.
        let buckets = relative_buckets(ids.len(), c.num_buckets, c.max_distance);
        let rels = self
            .blocks
            .iter()
            .map(|block| Ok(b.upload(&block.attn.relative_bias(&buckets)?)?))
            .collect::<Result<Vec<_>>>()?;
        let eps = c.eps as f32;
        for (block, rel) in self.blocks.iter().zip(&rels) {
            x = block
                .attn
                .add_to(b, &x, &b.rms_norm(&x, &block.norm1, eps)?, rel)?;
            x = block
                .ffn
                .add_to(b, &x, &b.rms_norm(&x, &block.norm2, eps)?)?;
        }
        Ok(b.rms_norm(&x, &self.norm, eps)?)
    }

    /// The embedding rows of `ids`, widened to f32.
    fn gather(&self, ids: &[u32]) -> Result<Vec<f32>> {
        let d = self.config.d_model;
        let rows = ids.iter().map(|&id| id as usize * d..(id as usize + 1) * d);
        let mut out = Vec::with_capacity(ids.len() * d);
        match &self.embedding.data {
            HostData::F32(t) => rows.for_each(|r| out.extend_from_slice(&t[r])),
            HostData::BF16(t) => rows.for_each(|r| out.extend(t[r].iter().map(|v| v.to_f32()))),
            HostData::F16(t) => rows.for_each(|r| out.extend(t[r].iter().map(|v| v.to_f32()))),
            HostData::I8(_) => {
                return Err(Error::Config(
                    "the umT5 token embedding must be a float tensor".into(),
                ));
            }
        }
        Ok(out)
    }
}
