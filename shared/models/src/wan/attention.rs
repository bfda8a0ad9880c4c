//! Self-attention (RMSNorm on q/k across heads, 3-D RoPE, dense or sparse-linear) and text
//! cross-attention of a Wan block.

use turbine_tensor::{Backend, SlaParams};

use super::WanConfig;
use super::block::Branch;
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
    /// Dense attention with SageAttention's 8-bit numerics (INT8 q·kᵀ, FP8 P̃·V) where the backend
    /// has them.
    Sage,
    /// TurboDiffusion's SageSLA: [`AttentionMode::Sla`] with 8-bit numerics (upstream's default
    /// `sagesla`), blocks of 64 queries x 128 keys ([`SlaParams::sage`]).
    SageSla(SlaParams),
}

impl std::fmt::Display for AttentionMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            AttentionMode::Dense => "dense",
            AttentionMode::Sage => "sage",
            AttentionMode::Sla(_) => "sla",
            AttentionMode::SageSla(_) => "sagesla",
        };
        match self.sla() {
            Some(p) => write!(
                f,
                "{name} topk {} blocks {}x{}",
                p.topk, p.block_q, p.block_k
            ),
            None => f.write_str(name),
        }
    }
}

impl AttentionMode {
    /// The top-k parameters of the sparse modes.
    pub fn sla(&self) -> Option<&SlaParams> {
        match self {
            AttentionMode::Sla(p) | AttentionMode::SageSla(p) => Some(p),
            AttentionMode::Dense | AttentionMode::Sage => None,
        }
    }
}

/// Rotary tables for one token grid, `[L, Dh/2]` each.
#[derive(Clone)]
pub struct Rope<B: Backend> {
    pub cos: B::Tensor,
    pub sin: B::Tensor,
}

/// The q, k, v, o projections and q, k RMSNorms that self- and cross-attention share.
struct Projections<B: Backend> {
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

impl<B: Backend> Projections<B> {
    /// Loads `{prefix}.{q,k,v,o}` and `{prefix}.norm_{q,k}`.
    fn load(backend: &B, w: &WanWeights, c: &WanConfig, prefix: &str) -> Result<Self> {
        let d = c.dim;
        let linear = |n: &str| -> Result<B::Linear> {
            Ok(backend.upload_linear_quantizable(&w.linear(&format!("{prefix}.{n}"), d, d)?)?)
        };
        let norm = |n: &str| -> Result<B::Tensor> {
            Ok(backend.upload(&w.tensor(&format!("{prefix}.{n}.weight"), &[d])?)?)
        };
        Ok(Self {
            heads: c.num_heads,
            head_dim: c.head_dim(),
            q: linear("q")?,
            k: linear("k")?,
            v: linear("v")?,
            o: linear("o")?,
            norm_q: norm("norm_q")?,
            norm_k: norm("norm_k")?,
            eps: c.eps as f32,
        })
    }

    /// The RMS-normalized queries of `x: [L, D]`, split into heads `[L, H, Dh]`.
    fn query(&self, b: &B, x: &B::LinearInput) -> Result<B::Tensor> {
        self.split(
            b,
            &b.rms_norm(&b.linear_prepared(x, &self.q)?, &self.norm_q, self.eps)?,
        )
    }

    /// The RMS-normalized keys of `x: [L, D]`, split into heads `[L, H, Dh]`.
    fn key(&self, b: &B, x: &B::LinearInput) -> Result<B::Tensor> {
        self.split(
            b,
            &b.rms_norm(&b.linear_prepared(x, &self.k)?, &self.norm_k, self.eps)?,
        )
    }

    /// The RMS-normalized, rotated queries (or keys, `k`) of `x: [L, D]`, `[L, H, Dh]`.
    fn rotated(&self, b: &B, x: &B::LinearInput, rope: &Rope<B>, k: bool) -> Result<B::Tensor> {
        let (w, norm) = if k {
            (&self.k, &self.norm_k)
        } else {
            (&self.q, &self.norm_q)
        };
        Ok(b.rms_norm_rope(
            &b.linear_prepared(x, w)?,
            norm,
            self.eps,
            &rope.cos,
            &rope.sin,
            self.heads,
        )?)
    }

    /// The values of `x: [L, D]`, split into heads `[L, H, Dh]`.
    fn value(&self, b: &B, x: &B::LinearInput) -> Result<B::Tensor> {
        self.split(b, &b.linear_prepared(x, &self.v)?)
    }

    /// `[L, D] -> [L, H, Dh]`.
    fn split(&self, b: &B, t: &B::Tensor) -> Result<B::Tensor> {
        Ok(b.reshape(t, &[b.shape(t)[0], self.heads, self.head_dim])?)
    }

    /// The attention result `[L, H, Dh]` as the input `[L, D]` of the output projection.
    fn output(&self, b: &B, out: &B::Tensor) -> Result<Branch<'_, B>> {
        let len = b.shape(out)[0];
        let input = b.linear_input(&b.reshape(out, &[len, self.heads * self.head_dim])?)?;
        Ok(self.branch(input))
    }

    /// The output projection of an input already prepared for it.
    fn branch(&self, input: B::LinearInput) -> Branch<'_, B> {
        Branch {
            input,
            layer: &self.o,
        }
    }
}

/// The inputs of one self-attention call, each `[L, H, Dh]`: normalized, rotated queries and keys,
/// and values.
pub struct Qkv<B: Backend> {
    pub q: B::Tensor,
    pub k: B::Tensor,
    pub v: B::Tensor,
}

pub struct SelfAttention<B: Backend> {
    projections: Projections<B>,
    /// The SLA linear branch's projection; present in TurboWan checkpoints.
    proj_l: Option<B::Linear>,
}

impl<B: Backend> SelfAttention<B> {
    pub fn load(backend: &B, w: &WanWeights, c: &WanConfig, block: usize) -> Result<Self> {
        let prefix = format!("blocks.{block}.self_attn");
        let projections = Projections::load(backend, w, c, &prefix)?;
        let proj_l_name = format!("{prefix}.attn_op.local_attn.proj_l");
        let hd = c.head_dim();
        let proj_l = if w.contains(&format!("{proj_l_name}.weight")) {
            Some(backend.upload_linear(&w.linear(&proj_l_name, hd, hd)?)?)
        } else {
            None
        };
        Ok(Self {
            projections,
            proj_l,
        })
    }

    pub fn has_proj_l(&self) -> bool {
        self.proj_l.is_some()
    }

    /// `x: [L, D]` (normalized and modulated) `-> [L, D]`, up to the output projection; `probe`
    /// sees q, k, v first.
    pub fn forward(
        &self,
        b: &B,
        x: &B::LinearInput,
        rope: &Rope<B>,
        mode: &AttentionMode,
        probe: &mut dyn FnMut(&Qkv<B>) -> Result<()>,
    ) -> Result<Branch<'_, B>> {
        let p = &self.projections;
        let qkv = Qkv {
            q: p.rotated(b, x, rope, false)?,
            k: p.rotated(b, x, rope, true)?,
            v: p.value(b, x)?,
        };
        probe(&qkv)?;
        let Qkv { q, k, v } = qkv;
        let proj_l = || {
            self.proj_l.as_ref().ok_or_else(|| {
                Error::Input("SLA attention needs the layer's proj_l weights".into())
            })
        };
        // The 8-bit attention may write its output in the output projection's input form.
        let sage = |sla| -> Result<Branch<'_, B>> {
            Ok(p.branch(b.sage_attention_input(&q, &k, &v, sla, &p.o)?))
        };
        match mode {
            AttentionMode::Dense => p.output(b, &b.attention(&q, &k, &v)?),
            AttentionMode::Sla(params) => {
                p.output(b, &b.sla_attention(&q, &k, &v, params, proj_l()?)?)
            }
            AttentionMode::Sage => sage(None),
            AttentionMode::SageSla(params) => sage(Some((params, proj_l()?))),
        }
    }
}

pub struct CrossAttention<B: Backend> {
    projections: Projections<B>,
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
        Ok(Self {
            projections: Projections::load(backend, w, c, &prefix)?,
        })
    }

    /// `context: [Lctx, D]` (after the text embedding).
    pub fn context_kv(&self, b: &B, context: &B::Tensor) -> Result<ContextKv<B>> {
        let p = &self.projections;
        let context = b.linear_input(context)?;
        Ok(ContextKv {
            k: p.key(b, &context)?,
            v: p.value(b, &context)?,
        })
    }

    /// `x: [L, D]` (after the affine `norm3`) `-> [L, D]`, up to the output projection.
    pub fn forward(&self, b: &B, x: &B::LinearInput, kv: &ContextKv<B>) -> Result<Branch<'_, B>> {
        let p = &self.projections;
        let input = b.attention_input(&p.query(b, x)?, &kv.k, &kv.v, &p.o)?;
        Ok(p.branch(input))
    }
}
