//! Upstream's `ResidualBlock` and the norm → SiLU → causal-conv step it is built of, which also
//! ends the encoder and the decoder as their `head`.

use turbine_tensor::Backend;

use super::causal_conv::{CausalConv3d, Conv, FeatCache};
use super::weights::Loader;
use crate::Result;

/// `RMS_norm` (channel L2-normalize · √C · γ) → SiLU → `CausalConv3d`.
pub(super) struct NormConv<B: Backend> {
    gamma: B::Tensor,
    conv: CausalConv3d<B>,
}

impl<B: Backend> NormConv<B> {
    /// The norm's `gamma` at `norm`, the convolution at `conv`.
    fn load(l: &mut Loader<B>, norm: &str, conv: &str, cin: usize, cout: usize) -> Result<Self> {
        let input = l.backend.conv_input(cin, cout, 3);
        Ok(NormConv {
            gamma: l.gamma(norm, cin, false)?,
            conv: CausalConv3d::load_for(l, conv, [cout, cin, 3, 3, 3], input)?,
        })
    }

    /// `head`: `Sequential(RMS_norm, SiLU, CausalConv3d)` under `name`.
    pub fn head(l: &mut Loader<B>, name: &str, cin: usize, cout: usize) -> Result<Self> {
        Self::load(
            l,
            &format!("{name}.0.gamma"),
            &format!("{name}.2"),
            cin,
            cout,
        )
    }

    pub fn forward(&self, b: &B, x: &B::Tensor, cache: &mut FeatCache<B>) -> Result<B::Tensor> {
        self.conv.forward_normed(b, x, &self.gamma, None, cache)
    }

    /// `forward(x) + residual`, which backends may add inside the convolution.
    fn forward_add(
        &self,
        b: &B,
        x: &B::Tensor,
        residual: &B::Tensor,
        cache: &mut FeatCache<B>,
    ) -> Result<B::Tensor> {
        self.conv
            .forward_normed(b, x, &self.gamma, Some(residual), cache)
    }
}

/// `RMS → SiLU → CausalConv3d → RMS → SiLU → (dropout) → CausalConv3d` plus a shortcut, a 1×1×1
/// convolution when the channel count changes.
pub(super) struct ResidualBlock<B: Backend> {
    first: NormConv<B>,
    second: NormConv<B>,
    shortcut: Option<Conv<B>>,
}

impl<B: Backend> ResidualBlock<B> {
    pub fn load(l: &mut Loader<B>, name: &str, cin: usize, cout: usize) -> Result<Self> {
        let p = |n: &str| format!("{name}.{n}");
        Ok(ResidualBlock {
            first: NormConv::load(l, &p("residual.0.gamma"), &p("residual.2"), cin, cout)?,
            second: NormConv::load(l, &p("residual.3.gamma"), &p("residual.6"), cout, cout)?,
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
        let y = self.first.forward(b, x, cache)?;
        self.second.forward_add(b, &y, &h, cache)
    }
}
