//! One `WanAttentionBlock`: modulated self-attention, cross-attention, modulated FFN, with gated
//! residuals on an f32 residual stream.

use turbine_tensor::Backend;

use super::WanConfig;
use super::attention::{AttentionMode, ContextKv, CrossAttention, Qkv, Rope, SelfAttention};
use super::weights::WanWeights;
use crate::Result;

pub struct Block<B: Backend> {
    /// `[6, D]`: shift/scale/gate for attention, then for the FFN; `e0` is added per forward.
    modulation: B::Tensor,
    pub(super) self_attn: SelfAttention<B>,
    /// The affine LayerNorm before cross-attention.
    norm3: (B::Tensor, B::Tensor),
    pub(super) cross_attn: CrossAttention<B>,
    ffn_in: B::Linear,
    ffn_out: B::Linear,
    eps: f32,
}

impl<B: Backend> Block<B> {
    pub fn load(backend: &B, w: &WanWeights, c: &WanConfig, i: usize) -> Result<Self> {
        let d = c.dim;
        let p = |n: &str| format!("blocks.{i}.{n}");
        let modulation = w.tensor(&p("modulation"), &[1, 6, d])?;
        Ok(Self {
            modulation: backend.reshape(&backend.upload(&modulation)?, &[6, d])?,
            self_attn: SelfAttention::load(backend, w, c, i)?,
            norm3: (
                backend.upload(&w.tensor(&p("norm3.weight"), &[d])?)?,
                backend.upload(&w.tensor(&p("norm3.bias"), &[d])?)?,
            ),
            cross_attn: CrossAttention::load(backend, w, c, i)?,
            ffn_in: backend.upload_linear_quantizable(&w.linear(&p("ffn.0"), c.ffn_dim, d)?)?,
            ffn_out: backend.upload_linear_quantizable(&w.linear(&p("ffn.2"), d, c.ffn_dim)?)?,
            eps: c.eps as f32,
        })
    }

    /// One block on the residual stream; `e0: [6, D]` time modulation; `probe` sees the
    /// self-attention's inputs.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        b: &B,
        stream: Stream<B>,
        e0: &B::Tensor,
        context: &ContextKv<B>,
        rope: &Rope<B>,
        mode: &AttentionMode,
        probe: &mut dyn FnMut(&Qkv<B>) -> Result<()>,
    ) -> Result<Stream<B>> {
        let m = b.add(&self.modulation, e0)?;
        let row = |i: usize| -> Result<B::Tensor> {
            let r = b.narrow(&m, i, 1)?;
            Ok(b.reshape(&r, &[b.shape(&r)[1]])?)
        };
        let (shift_msa, scale_msa, gate_msa) = (row(0)?, row(1)?, row(2)?);
        let (shift_ffn, scale_ffn, gate_ffn) = (row(3)?, row(4)?, row(5)?);

        // Each norm's output is the input of the quantizable layers after it, prepared once
        // (for 8-bit layers quantized once, in the norm's own pass where the backend can); the
        // residual add before a norm may share its pass too.
        let (x, h) = stream.modulated_input(b, &shift_msa, &scale_msa, self.eps)?;
        let y = self.self_attn.forward(b, &h, rope, mode, probe)?;

        let norm3 = Some((&self.norm3.0, &self.norm3.1));
        let (x, h) = b.residual_layer_norm_input(&x, &y, Some(&gate_msa), norm3, self.eps)?;
        let y = self.cross_attn.forward(b, &h, context)?;

        let (x, h) =
            b.residual_layer_norm_modulate_input(&x, &y, None, &shift_ffn, &scale_ffn, self.eps)?;
        let y = b.linear(
            &b.linear_gelu_tanh_prepared(&h, &self.ffn_in)?,
            &self.ffn_out,
        )?;
        Ok(Stream {
            x,
            branch: Some((y, gate_ffn)),
        })
    }
}

/// The residual stream between blocks, `[L, D]` f32: the activations, and the last block's gated
/// FFN branch `(y, gate)` not yet added, which the next block's first norm adds in its own pass.
pub struct Stream<B: Backend> {
    x: B::Tensor,
    branch: Option<(B::Tensor, B::Tensor)>,
}

impl<B: Backend> Stream<B> {
    pub fn new(x: B::Tensor) -> Self {
        Self { x, branch: None }
    }

    /// The activations with the pending branch added, and their modulated LayerNorm as the input
    /// of a block's first layers. Consumed, so the stream's buffers go back before the block's
    /// attention needs memory.
    fn modulated_input(
        self,
        b: &B,
        shift: &B::Tensor,
        scale: &B::Tensor,
        eps: f32,
    ) -> Result<(B::Tensor, B::LinearInput)> {
        Ok(match self.branch {
            Some((y, gate)) => {
                b.residual_layer_norm_modulate_input(&self.x, &y, Some(&gate), shift, scale, eps)?
            }
            None => {
                let h = b.layer_norm_modulate_input(&self.x, shift, scale, eps)?;
                (self.x, h)
            }
        })
    }

    /// The activations with the pending branch added.
    pub fn resolve(self, b: &B) -> Result<B::Tensor> {
        Ok(match self.branch {
            Some((y, gate)) => b.gated_residual(&self.x, &y, &gate)?,
            None => self.x,
        })
    }
}
