//! `Encoder3d`: video chunk `[F, H, W, 3]` → `[F', H/8, W/8, 2·z_dim]` (mean and log-variance,
//! before the quant convolution), channels last.

use turbine_tensor::Backend;

use super::WanVaeConfig;
use super::attention::Middle;
use super::causal_conv::{CausalConv3d, FeatCache};
use super::resample::Downsample;
use super::residual::{NormConv, ResidualBlock};
use super::weights::Loader;
use crate::Result;

struct Stage<B: Backend> {
    blocks: Vec<ResidualBlock<B>>,
    down: Option<Downsample<B>>,
}

pub(super) struct Encoder<B: Backend> {
    conv_in: CausalConv3d<B>,
    stages: Vec<Stage<B>>,
    middle: Middle<B>,
    head: NormConv<B>,
    /// Cache slots one encode pass needs.
    pub slots: usize,
}

impl<B: Backend> Encoder<B> {
    pub fn load(l: &mut Loader<B>, config: &WanVaeConfig) -> Result<Self> {
        let conv_in = CausalConv3d::load(l, "encoder.conv1", [config.base_dim, 3, 3, 3, 3])?;
        // Upstream numbers residual blocks and resamples in one flat `downsamples` list.
        let (mut n, mut c) = (0, config.base_dim);
        let mut stages = Vec::new();
        for s in 0..config.dim_mult.len() {
            let out = config.encoder_dim(s);
            let mut blocks = Vec::new();
            for _ in 0..config.num_res_blocks {
                blocks.push(ResidualBlock::load(
                    l,
                    &format!("encoder.downsamples.{n}"),
                    c,
                    out,
                )?);
                (n, c) = (n + 1, out);
            }
            let down = if s + 1 < config.dim_mult.len() {
                let down = Downsample::load(
                    l,
                    &format!("encoder.downsamples.{n}"),
                    c,
                    config.temporal_downsample[s],
                )?;
                n += 1;
                Some(down)
            } else {
                None
            };
            stages.push(Stage { blocks, down });
        }
        Ok(Encoder {
            conv_in,
            stages,
            middle: Middle::load(l, "encoder.middle", c)?,
            head: NormConv::head(l, "encoder.head", c, 2 * config.z_dim)?,
            slots: l.slots(),
        })
    }

    pub fn forward(&self, b: &B, x: &B::Tensor, cache: &mut FeatCache<B>) -> Result<B::Tensor> {
        let mut x = self.conv_in.forward(b, x, cache)?;
        for stage in &self.stages {
            for block in &stage.blocks {
                x = block.forward(b, &x, cache)?;
            }
            if let Some(down) = &stage.down {
                x = down.forward(b, &x, cache)?;
            }
        }
        let x = self.middle.forward(b, &x, cache)?;
        self.head.forward(b, &x, cache)
    }
}
