//! The middle blocks: residual block, per-frame single-head self-attention, residual block.

use turbine_tensor::Backend;

use super::causal_conv::{Conv, FeatCache, dims};
use super::residual::ResidualBlock;
use super::weights::Loader;
use crate::Result;

/// Upstream's `AttentionBlock(C)`: per frame, RMS norm → 1×1 conv to q, k, v → one head over the
/// H·W positions (scale 1/√C) → 1×1 conv → + input. No cache: frames do not see each other.
pub(super) struct AttentionBlock<B: Backend> {
    norm: B::Tensor,
    to_qkv: Conv<B>,
    proj: Conv<B>,
}

impl<B: Backend> AttentionBlock<B> {
    pub fn load(l: &Loader<B>, name: &str, c: usize) -> Result<Self> {
        Ok(AttentionBlock {
            norm: l.gamma(&format!("{name}.norm.gamma"), c, true)?,
            to_qkv: Conv::pointwise(l, &format!("{name}.to_qkv"), &[3 * c, c, 1, 1])?,
            proj: Conv::pointwise(l, &format!("{name}.proj"), &[c, c, 1, 1])?,
        })
    }

    pub fn forward(&self, b: &B, x: &B::Tensor) -> Result<B::Tensor> {
        let [f, h, w, c] = dims(b, x)?;
        let qkv = self
            .to_qkv
            .forward(b, &b.channel_rms_norm(x, &self.norm)?)?;
        // Frames as attention heads keep them apart: [F, H·W, 3C] -> [H·W, F, 3C], then q, k
        // and v are its three channel ranges.
        let qkv = b.permute(&b.reshape(&qkv, &[f, h * w, 3 * c])?, &[1, 0, 2])?;
        let part = |i: usize| b.slice(&qkv, 2, i * c, c);
        let o = b.attention(&part(0)?, &part(1)?, &part(2)?)?;
        let o = b.reshape(&b.permute(&o, &[1, 0, 2])?, &[f, h, w, c])?;
        Ok(b.add(&self.proj.forward(b, &o)?, x)?)
    }
}

/// `middle`: `[ResidualBlock, AttentionBlock, ResidualBlock]` at constant width.
pub(super) struct Middle<B: Backend> {
    res0: ResidualBlock<B>,
    attn: AttentionBlock<B>,
    res1: ResidualBlock<B>,
}

impl<B: Backend> Middle<B> {
    pub fn load(l: &mut Loader<B>, name: &str, c: usize) -> Result<Self> {
        Ok(Middle {
            res0: ResidualBlock::load(l, &format!("{name}.0"), c, c)?,
            attn: AttentionBlock::load(l, &format!("{name}.1"), c)?,
            res1: ResidualBlock::load(l, &format!("{name}.2"), c, c)?,
        })
    }

    pub fn forward(&self, b: &B, x: &B::Tensor, cache: &mut FeatCache<B>) -> Result<B::Tensor> {
        let x = self.res0.forward(b, x, cache)?;
        let x = self.attn.forward(b, &x)?;
        self.res1.forward(b, &x, cache)
    }
}
