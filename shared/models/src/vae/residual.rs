//! Upstream's `ResidualBlock` and the norm → SiLU → causal-conv head that ends the encoder and the
//! decoder.

use turbine_tensor::Backend;

use super::causal_conv::{CausalConv3d, Conv, FeatCache};
use super::weights::Loader;
use crate::Result;

/// `RMS_norm` (channel L2-normalize · √C · γ) then SiLU.
pub(super) fn norm_silu<B: Backend>(b: &B, x: &B::Tensor, gamma: &B::Tensor) -> Result<B::Tensor> {
    Ok(b.channel_rms_norm_silu(x, gamma)?)
}

/// `RMS → SiLU → CausalConv3d → RMS → SiLU → (dropout) → CausalConv3d` plus a shortcut, a 1×1×1
/// convolution when the channel count changes.
pub(super) struct ResidualBlock<B: Backend> {
    norm1: B::Tensor,
    conv1: CausalConv3d<B>,
    norm2: B::Tensor,
    conv2: CausalConv3d<B>,
    shortcut: Option<Conv<B>>,
}

impl<B: Backend> ResidualBlock<B> {
    pub fn load(l: &mut Loader<B>, name: &str, cin: usize, cout: usize) -> Result<Self> {
        let p = |n: &str| format!("{name}.{n}");
        Ok(ResidualBlock {
            norm1: l.gamma(&p("residual.0.gamma"), cin, false)?,
            conv1: CausalConv3d::load(l, &p("residual.2"), [cout, cin, 3, 3, 3])?,
            norm2: l.gamma(&p("residual.3.gamma"), cout, false)?,
            conv2: CausalConv3d::load(l, &p("residual.6"), [cout, cout, 3, 3, 3])?,
            shortcut: if cin == cout {
                None
            } else {
                Some(Conv::pointwise(l, &p("shortcut"), &[cout, cin, 1, 1, 1])?)
            },
        })
    }

    pub fn forward(&self, b: &B, x: &B::Tensor, cache: &mut FeatCache<B>) -> Result<B::Tensor> {
        let h = match &self.shortcut {
            Some(s) => s.forward(b, x)?,
            None => x.clone(),
        };
        let y = self
            .conv1
            .forward(b, &norm_silu(b, x, &self.norm1)?, cache)?;
        let y = self
            .conv2
            .forward(b, &norm_silu(b, &y, &self.norm2)?, cache)?;
        Ok(b.add(&y, &h)?)
    }
}

/// `head`: RMS → SiLU → CausalConv3d.
pub(super) struct Head<B: Backend> {
    norm: B::Tensor,
    conv: CausalConv3d<B>,
}

impl<B: Backend> Head<B> {
    pub fn load(l: &mut Loader<B>, name: &str, cin: usize, cout: usize) -> Result<Self> {
        Ok(Head {
            norm: l.gamma(&format!("{name}.0.gamma"), cin, false)?,
            conv: CausalConv3d::load(l, &format!("{name}.2"), [cout, cin, 3, 3, 3])?,
        })
    }

    pub fn forward(&self, b: &B, x: &B::Tensor, cache: &mut FeatCache<B>) -> Result<B::Tensor> {
        self.conv.forward(b, &norm_silu(b, x, &self.norm)?, cache)
    }
}
