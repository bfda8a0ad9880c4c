//! Self-attention (RMSNorm on q/k across heads, 3-D RoPE, dense or sparse-linear) and text
//! cross-attention of a Wan block.

use turbine_tensor::{Backend, SlaParams};

use super::WanConfig;
use super::weights::WanWeights;
use crate::{Error, Result};

/// How self-attention is computed. Cross-attention is always dense, as upstream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AttentionMode {
    /// Full softmax attention (the original Wan).
    Dense,
    /// TurboDiffusion's sparse-linear attention: top-k key blocks plus the linear branch through
    /// each layer's learned `proj_l`.
    Sla(SlaParams),
}

/// Rotary tables for one token grid, `[L, Dh/2]` each.
pub struct Rope<B: Backend> {
    pub cos: B::Tensor,
    pub sin: B::Tensor,
}

pub struct SelfAttention<B: Backend> {
    heads: usize,
    head_dim: usize,
    q: B::Linear,
    k: B::Linear,
    v: B::Linear,
    o: B::Linear,
    norm_q: B::Tensor,
    norm_k: B::Tensor,
    eps: f32,
    /// The SLA linear branch's projection; present in TurboWan checkpoints.
    proj_l: Option<B::Linear>,
}

/// The q, k, v, o projections and the q, k RMSNorm weights of one attention layer.
type Projections<B> = ([<B as Backend>::Linear; 4], [<B as Backend>::Tensor; 2]);

/// Loads `{prefix}.{q,k,v,o}` and `{prefix}.norm_{q,k}`.
fn projections<B: Backend>(
    backend: &B,
    w: &WanWeights,
    prefix: &str,
    d: usize,
) -> Result<Projections<B>> {
    let linear = |n: &str| -> Result<B::Linear> {
        Ok(backend.upload_linear(&w.linear(&format!("{prefix}.{n}"), d, d)?)?)
    };
    let norm = |n: &str| -> Result<B::Tensor> {
        Ok(backend.upload(&w.tensor(&format!("{prefix}.{n}.weight"), &[d])?)?)
    };
    Ok((
        [linear("q")?, linear("k")?, linear("v")?, linear("o")?],
        [norm("norm_q")?, norm("norm_k")?],
    ))
}

impl<B: Backend> SelfAttention<B> {
    pub fn load(backend: &B, w: &WanWeights, c: &WanConfig, block: usize) -> Result<Self> {
        let prefix = format!("blocks.{block}.self_attn");
        let ([q, k, v, o], [norm_q, norm_k]) = projections(backend, w, &prefix, c.dim)?;
        let proj_l_name = format!("{prefix}.attn_op.local_attn.proj_l");
        let hd = c.head_dim();
        let proj_l = if w.contains(&format!("{proj_l_name}.weight")) {
            Some(backend.upload_linear(&w.linear(&proj_l_name, hd, hd)?)?)
        } else {
            None
        };
        Ok(Self {
            heads: c.num_heads,
            head_dim: hd,
            q,
            k,
            v,
            o,
            norm_q,
            norm_k,
            eps: c.eps as f32,
            proj_l,
        })
    }

    pub fn has_proj_l(&self) -> bool {
        self.proj_l.is_some()
    }

    /// `x: [L, D]` (normalized and modulated) `-> [L, D]`.
    pub fn forward(
        &self,
        b: &B,
        x: &B::Tensor,
        rope: &Rope<B>,
        mode: &AttentionMode,
    ) -> Result<B::Tensor> {
        let len = b.shape(x)[0];
        let split = [len, self.heads, self.head_dim];
        let q = b.rms_norm(&b.linear(x, &self.q)?, &self.norm_q, self.eps)?;
        let k = b.rms_norm(&b.linear(x, &self.k)?, &self.norm_k, self.eps)?;
        let v = b.reshape(&b.linear(x, &self.v)?, &split)?;
        let q = b.rope(&b.reshape(&q, &split)?, &rope.cos, &rope.sin)?;
        let k = b.rope(&b.reshape(&k, &split)?, &rope.cos, &rope.sin)?;
        let out = match mode {
            AttentionMode::Dense => b.attention(&q, &k, &v)?,
            AttentionMode::Sla(params) => {
                let proj_l = self.proj_l.as_ref().ok_or_else(|| {
                    Error::Input("SLA attention needs the layer's proj_l weights".into())
                })?;
                b.sla_attention(&q, &k, &v, params, proj_l)?
            }
        };
        Ok(b.linear(
            &b.reshape(&out, &[len, self.heads * self.head_dim])?,
            &self.o,
        )?)
    }
}

pub struct CrossAttention<B: Backend> {
    heads: usize,
    head_dim: usize,
    q: B::Linear,
    k: B::Linear,
    v: B::Linear,
    o: B::Linear,
    norm_q: B::Tensor,
    norm_k: B::Tensor,
    eps: f32,
}

/// A block's keys and values of the text context, `[Lctx, H, Dh]` each: they depend on the prompt
/// only, so they are computed once per prompt rather than once per denoising step.
pub struct ContextKv<B: Backend> {
    k: B::Tensor,
    v: B::Tensor,
}

impl<B: Backend> CrossAttention<B> {
    pub fn load(backend: &B, w: &WanWeights, c: &WanConfig, block: usize) -> Result<Self> {
        let prefix = format!("blocks.{block}.cross_attn");
        let ([q, k, v, o], [norm_q, norm_k]) = projections(backend, w, &prefix, c.dim)?;
        Ok(Self {
            heads: c.num_heads,
            head_dim: c.head_dim(),
            q,
            k,
            v,
            o,
            norm_q,
            norm_k,
            eps: c.eps as f32,
        })
    }

    /// `context: [Lctx, D]` (after the text embedding).
    pub fn context_kv(&self, b: &B, context: &B::Tensor) -> Result<ContextKv<B>> {
        let split = [b.shape(context)[0], self.heads, self.head_dim];
        let k = b.rms_norm(&b.linear(context, &self.k)?, &self.norm_k, self.eps)?;
        Ok(ContextKv {
            k: b.reshape(&k, &split)?,
            v: b.reshape(&b.linear(context, &self.v)?, &split)?,
        })
    }

    /// `x: [L, D]` (after the affine `norm3`) `-> [L, D]`.
    pub fn forward(&self, b: &B, x: &B::Tensor, kv: &ContextKv<B>) -> Result<B::Tensor> {
        let len = b.shape(x)[0];
        let q = b.rms_norm(&b.linear(x, &self.q)?, &self.norm_q, self.eps)?;
        let q = b.reshape(&q, &[len, self.heads, self.head_dim])?;
        let out = b.attention(&q, &kv.k, &kv.v)?;
        Ok(b.linear(
            &b.reshape(&out, &[len, self.heads * self.head_dim])?,
            &self.o,
        )?)
    }
}
