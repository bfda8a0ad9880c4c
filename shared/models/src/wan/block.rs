//! One `WanAttentionBlock`: modulated self-attention, cross-attention, modulated FFN, with gated
//! residuals on the residual stream.

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
    pub fn forward<'a>(
        &'a self,
        b: &B,
        stream: Stream<'a, B>,
        e0: &B::Tensor,
        context: &ContextKv<B>,
        rope: &Rope<B>,
        mode: &AttentionMode,
        probe: &mut dyn FnMut(&Qkv<B>) -> Result<()>,
    ) -> Result<Stream<'a, B>> {
        let m = b.add(&self.modulation, e0)?;
        let row = |i: usize| -> Result<B::Tensor> {
            let r = b.narrow(&m, i, 1)?;
            Ok(b.reshape(&r, &[b.shape(&r)[1]])?)
        };
        let (shift_msa, scale_msa, gate_msa) = (row(0)?, row(1)?, row(2)?);
        let (shift_ffn, scale_ffn, gate_ffn) = (row(3)?, row(4)?, row(5)?);

        // Each norm's output is the input of the quantizable layers after it, prepared once
        // (for 8-bit layers quantized once, in the norm's own pass where the backend can).
        let (x, h) = stream.modulated_input(b, &shift_msa, &scale_msa, self.eps)?;
        let attn = self.self_attn.forward(b, &h, rope, mode, probe)?;
        let (x, h) = attn.join(b, &x, Some(&gate_msa), Norm::Affine(&self.norm3), self.eps)?;
        let cross = self.cross_attn.forward(b, &h, context)?;
        let ffn_norm = Norm::Modulate {
            shift: &shift_ffn,
            scale: &scale_ffn,
            next: Some(&self.ffn_in),
        };
        let (x, h) = cross.join(b, &x, None, ffn_norm, self.eps)?;
        let ffn = Branch {
            input: b.linear_gelu_tanh_input(&h, &self.ffn_in, &self.ffn_out)?,
            layer: &self.ffn_out,
        };
        Ok(Stream {
            x,
            branch: Some((ffn, gate_ffn)),
        })
    }
}

/// A residual branch up to its last layer: that layer's input (prepared) and weights. The branch
/// joins the stream through [`Branch::join`], which lets the backend add it where it costs least.
pub struct Branch<'a, B: Backend> {
    pub input: B::LinearInput,
    pub layer: &'a B::Linear,
}

/// The LayerNorm that reads the residual stream after a branch joins it.
enum Norm<'a, B: Backend> {
    /// With the affine `(weight, bias)`.
    Affine(&'a (B::Tensor, B::Tensor)),
    /// Non-affine, then modulated.
    Modulate {
        shift: &'a B::Tensor,
        scale: &'a B::Tensor,
        /// The one layer that reads the norm, where it is the only reader.
        next: Option<&'a B::Linear>,
    },
}

impl<B: Backend> Branch<'_, B> {
    /// The stream `x` plus the branch (times `gate`), and its `norm` as the input of the next
    /// layers. The sum is made in the branch's last GEMM where the backend can add into the
    /// stream there (one pass over the stream, by the GEMM), else in the norm's pass.
    fn join(
        self,
        b: &B,
        x: &B::Tensor,
        gate: Option<&B::Tensor>,
        norm: Norm<'_, B>,
        eps: f32,
    ) -> Result<(B::Tensor, B::LinearInput)> {
        if b.residual_in_gemm(self.layer, gate.is_some()) {
            let x = self.add_to(b, x, gate)?;
            let h = match norm {
                Norm::Affine((w, bias)) => b.layer_norm_input(&x, Some((w, bias)), eps)?,
                Norm::Modulate {
                    shift,
                    scale,
                    next: Some(next),
                } => b.layer_norm_modulate_input_for(&x, shift, scale, eps, next)?,
                Norm::Modulate {
                    shift,
                    scale,
                    next: None,
                } => b.layer_norm_modulate_input(&x, shift, scale, eps)?,
            };
            return Ok((x, h));
        }
        let y = b.linear_prepared(&self.input, self.layer)?;
        Ok(match norm {
            Norm::Affine((w, bias)) => {
                b.residual_layer_norm_input(x, &y, gate, Some((w, bias)), eps)?
            }
            Norm::Modulate { shift, scale, .. } => {
                b.residual_layer_norm_modulate_input(x, &y, gate, shift, scale, eps)?
            }
        })
    }

    /// The stream `x` plus the branch (times `gate`).
    fn add_to(self, b: &B, x: &B::Tensor, gate: Option<&B::Tensor>) -> Result<B::Tensor> {
        Ok(b.linear_residual_prepared(&self.input, self.layer, x, gate)?)
    }
}

/// The residual stream between blocks, `[L, D]`: the activations, and the last block's gated FFN
/// branch not yet added, which joins the stream with the next block's first norm.
pub struct Stream<'a, B: Backend> {
    x: B::Tensor,
    branch: Option<(Branch<'a, B>, B::Tensor)>,
}

impl<'a, B: Backend> Stream<'a, B> {
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
        match self.branch {
            Some((branch, gate)) => branch.join(
                b,
                &self.x,
                Some(&gate),
                Norm::Modulate {
                    shift,
                    scale,
                    next: None,
                },
                eps,
            ),
            None => {
                let h = b.layer_norm_modulate_input(&self.x, shift, scale, eps)?;
                Ok((self.x, h))
            }
        }
    }

    /// The activations with the pending branch added.
    pub fn resolve(self, b: &B) -> Result<B::Tensor> {
        match self.branch {
            Some((branch, gate)) => branch.add_to(b, &self.x, Some(&gate)),
            None => Ok(self.x),
        }
    }
}
