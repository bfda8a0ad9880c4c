//! Upstream's `Resample`: 2× spatial down/upsampling per frame, optionally with 2× in time.

use turbine_tensor::Backend;

use super::causal_conv::{CausalConv3d, Conv, FeatCache, dims};
use super::weights::Loader;
use crate::Result;

/// `downsample2d`: ZeroPad2d(right 1, bottom 1) + Conv2d(C, C, 3, stride 2) per frame.
/// `downsample3d` adds a time convolution (kernel 3, stride 2, no padding) over the newest frame
/// of the previous chunk + this chunk: the first chunk (one frame) passes through, a later chunk of
/// 4 frames becomes 2 (and 2 become 1).
pub(super) struct Downsample<B: Backend> {
    conv: Conv<B>,
    time: Option<(Conv<B>, usize)>,
}

impl<B: Backend> Downsample<B> {
    pub fn load(l: &mut Loader<B>, name: &str, c: usize, temporal: bool) -> Result<Self> {
        let conv = Conv::load(
            l,
            &format!("{name}.resample.1"),
            &[c, c, 3, 3],
            [1, 2, 2],
            [[0, 0], [0, 1], [0, 1]],
        )?;
        let time = if temporal {
            let time_conv = Conv::load(
                l,
                &format!("{name}.time_conv"),
                &[c, c, 3, 1, 1],
                [2, 1, 1],
                [[0; 2]; 3],
            )?;
            Some((time_conv, l.slot()))
        } else {
            None
        };
        Ok(Downsample { conv, time })
    }

    pub fn forward(&self, b: &B, x: &B::Tensor, cache: &mut FeatCache<B>) -> Result<B::Tensor> {
        let x = self.conv.forward(b, x)?;
        let Some((time_conv, slot)) = &self.time else {
            return Ok(x);
        };
        let n = dims(b, &x)?[0];
        let newest = b.slice(&x, 0, n - 1, 1)?;
        let y = match cache.take(*slot) {
            Some(past) => time_conv.forward(b, &b.concat(&[&past, &x], 0)?)?,
            None => x,
        };
        cache.put(*slot, newest);
        Ok(y)
    }
}

/// `upsample2d`: nearest 2× (upstream's `nearest-exact`, the same at factor 2) + Conv2d(C, C/2, 3,
/// pad 1) per frame. `upsample3d` first doubles time: a causal time convolution to 2C channels,
/// channels `[0, C)` becoming frame 2i and `[C, 2C)` frame 2i+1.
pub(super) struct Upsample<B: Backend> {
    time_conv: Option<CausalConv3d<B>>,
    conv: Conv<B>,
}

impl<B: Backend> Upsample<B> {
    pub fn load(l: &mut Loader<B>, name: &str, c: usize, temporal: bool) -> Result<Self> {
        let time_conv = if temporal {
            Some(CausalConv3d::load(
                l,
                &format!("{name}.time_conv"),
                [2 * c, c, 3, 1, 1],
            )?)
        } else {
            None
        };
        let conv = Conv::load(
            l,
            &format!("{name}.resample.1"),
            &[c / 2, c, 3, 3],
            [1; 3],
            [[0, 0], [1, 1], [1, 1]],
        )?;
        Ok(Upsample { time_conv, conv })
    }

    /// `first`: this is the first chunk of the video, whose single latent frame must stay one
    /// frame. Upstream skips the time convolution then and parks the marker `'Rep'` in its cache
    /// slot, so that the second chunk runs it on zero history; leaving the slot empty does exactly
    /// that.
    pub fn forward(
        &self,
        b: &B,
        x: &B::Tensor,
        cache: &mut FeatCache<B>,
        first: bool,
    ) -> Result<B::Tensor> {
        let x = match &self.time_conv {
            Some(time_conv) if !first => {
                let [t, h, w, c] = dims(b, x)?;
                let y = b.reshape(&time_conv.forward(b, x, cache)?, &[t, h, w, 2, c])?;
                let y = b.permute(&y, &[0, 3, 1, 2, 4])?;
                b.reshape(&y, &[2 * t, h, w, c])?
            }
            _ => x.clone(),
        };
        self.conv.forward(b, &b.upsample_nearest(&x, [1, 2, 2])?)
    }
}
