//! `Decoder3d`: one latent frame `[1, h, w, z_dim]` (after the post-quant convolution) → video
//! frames `[n, 8h, 8w, 3]`, n = 1 for the first chunk and 4 after, channels last.

use turbine_tensor::Backend;

use super::WanVaeConfig;
use super::attention::Middle;
use super::causal_conv::{CausalConv3d, FeatCache};
use super::resample::Upsample;
use super::residual::{NormConv, ResidualBlock};
use super::weights::Loader;
use crate::Result;

struct Stage<B: Backend> {
    blocks: Vec<ResidualBlock<B>>,
    up: Option<Upsample<B>>,
}

pub(super) struct Decoder<B: Backend> {
    conv_in: CausalConv3d<B>,
    middle: Middle<B>,
    stages: Vec<Stage<B>>,
    head: NormConv<B>,
    /// Cache slots one decode session needs.
    pub slots: usize,
}

impl<B: Backend> Decoder<B> {
    pub fn load(l: &mut Loader<B>, config: &WanVaeConfig) -> Result<Self> {
        let mut c = config.decoder_dim(0);
        let conv_in = CausalConv3d::load(l, "decoder.conv1", [c, config.z_dim, 3, 3, 3])?;
        let middle = Middle::load(l, "decoder.middle", c)?;
        // Upstream numbers residual blocks and resamples in one flat `upsamples` list.
        let mut n = 0;
        let mut stages = Vec::new();
        for s in 0..config.dim_mult.len() {
            let out = config.decoder_dim(s);
            let mut blocks = Vec::new();
            for _ in 0..=config.num_res_blocks {
                blocks.push(ResidualBlock::load(
                    l,
                    &format!("decoder.upsamples.{n}"),
                    c,
                    out,
                )?);
                (n, c) = (n + 1, out);
            }
            let up = if s + 1 < config.dim_mult.len() {
                let up = Upsample::load(
                    l,
                    &format!("decoder.upsamples.{n}"),
                    c,
                    config.decoder_temporal(s),
                )?;
                (n, c) = (n + 1, c / 2);
                Some(up)
            } else {
                None
            };
            stages.push(Stage { blocks, up });
        }
        Ok(Decoder {
            conv_in,
            middle,
            stages,
            head: NormConv::head(l, "decoder.head", c, 3)?,
            slots: l.slots(),
        })
    }

    /// `first`: `x` is the video's first latent frame (see [`Upsample::forward`]).
    pub fn forward(
        &self,
        b: &B,
        x: &B::Tensor,
        cache: &mut FeatCache<B>,
        first: bool,
    ) -> Result<B::Tensor> {
        let x = self.conv_in.forward(b, x, cache)?;
        let mut x = self.middle.forward(b, &x, cache)?;
        for stage in &self.stages {
            for block in &stage.blocks {
                x = block.forward(b, &x, cache)?;
            }
            if let Some(up) = &stage.up {
                x = up.forward(b, &x, cache, first)?;
            }
        }
        self.head.forward(b, &x, cache)
    }
}
