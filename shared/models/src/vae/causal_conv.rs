//! Convolutions over channels-last activations `[F, H, W, C]`, and the causal feature cache that
//! lets the VAE run a video a chunk of frames at a time with the result of one pass over all of it.

use turbine_tensor::backend::last_frames;
use turbine_tensor::{Backend, ConvInput};

use super::weights::Loader;
use crate::{Error, Result};

/// Frames of history a temporal-kernel-3 convolution needs (upstream's `CACHE_T`).
const CACHE_T: usize = 2;

/// One encode or decode pass's memory of earlier chunks: slot `i` holds the last input frames of
/// the causal convolution numbered `i` at load time (the resampling convolutions included).
pub(super) struct FeatCache<B: Backend> {
    slots: Vec<Option<B::Tensor>>,
}

impl<B: Backend> FeatCache<B> {
    pub fn new(slots: usize) -> Self {
        FeatCache {
            slots: vec![None; slots],
        }
    }

    pub fn take(&mut self, slot: usize) -> Option<B::Tensor> {
        self.slots[slot].take()
    }

    pub fn put(&mut self, slot: usize, frames: B::Tensor) {
        self.slots[slot] = Some(frames);
    }
}

/// The `[F, H, W, C]` dims of an activation.
pub(super) fn dims<B: Backend>(b: &B, x: &B::Tensor) -> Result<[usize; 4]> {
    match *b.shape(x) {
        [f, h, w, c] => Ok([f, h, w, c]),
        ref other => Err(Error::Input(format!(
            "VAE activations must be [F, H, W, C], got {other:?}"
        ))),
    }
}

fn frames<B: Backend>(b: &B, x: &B::Tensor) -> Result<usize> {
    Ok(dims(b, x)?[0])
}

/// A convolution with fixed stride and zero padding and no history: a Conv2d applied per frame
/// (`kt = 1`), the 1×1×1 shortcut and quant convolutions, the strided time convolution of a
/// temporal downsample (which manages its own history).
pub(super) struct Conv<B: Backend> {
    weight: B::Tensor,
    bias: B::Tensor,
    stride: [usize; 3],
    pad: [[usize; 2]; 3],
}

impl<B: Backend> Conv<B> {
    /// `shape` is the stored weight shape: `[Cout, Cin, kh, kw]` for a Conv2d, else 5-D
    /// `[Cout, Cin, kt, kh, kw]`.
    pub fn load(
        l: &Loader<B>,
        name: &str,
        shape: &[usize],
        stride: [usize; 3],
        pad: [[usize; 2]; 3],
    ) -> Result<Self> {
        let (weight, bias) = l.conv(name, shape)?;
        Ok(Self::new(weight, bias, stride, pad))
    }

    /// A filter `[Cout, kt, kh, kw, Cin]` and bias already on the backend.
    pub fn new(
        weight: B::Tensor,
        bias: B::Tensor,
        stride: [usize; 3],
        pad: [[usize; 2]; 3],
    ) -> Self {
        Conv {
            weight,
            bias,
            stride,
            pad,
        }
    }

    /// A 1×1 (×1) convolution: a per-position linear map of the channels.
    pub fn pointwise(l: &Loader<B>, name: &str, shape: &[usize]) -> Result<Self> {
        Self::load(l, name, shape, [1; 3], [[0; 2]; 3])
    }

    pub fn forward(&self, b: &B, x: &B::Tensor) -> Result<B::Tensor> {
        Ok(b.conv3d(x, &self.weight, Some(&self.bias), self.stride, self.pad)?)
    }
}

/// Upstream's `CausalConv3d` with a temporal kernel of 3: zero padding `k/2` on H and W, and 2
/// frames in front in time — the previous chunk's last frames when there are some, zeros otherwise
/// — so each output frame sees only current and past frames.
pub(super) struct CausalConv3d<B: Backend> {
    weight: B::Tensor,
    bias: B::Tensor,
    space_pad: [usize; 2],
    slot: usize,
    /// The layout of the normalized input [`CausalConv3d::forward_normed`] writes, the
    /// backend's [`Backend::conv_input`]: the filter zero-padded to its width, or its time taps
    /// folded into its input channels.
    input: ConvInput,
}

impl<B: Backend> CausalConv3d<B> {
    pub fn load(l: &mut Loader<B>, name: &str, shape: [usize; 5]) -> Result<Self> {
        Self::load_for(l, name, shape, ConvInput::Width(shape[1]))
    }

    /// A convolution whose normalized input ([`CausalConv3d::forward_normed`]) is laid out as
    /// `input` says.
    pub fn load_for(
        l: &mut Loader<B>,
        name: &str,
        shape: [usize; 5],
        input: ConvInput,
    ) -> Result<Self> {
        let (weight, bias) = match input {
            ConvInput::Width(width) => l.conv_wide(name, &shape, width)?,
            ConvInput::FoldTime => l.conv_time_folded(name, &shape)?,
        };
        Ok(CausalConv3d {
            weight,
            bias,
            space_pad: [shape[3] / 2, shape[4] / 2],
            slot: l.slot(),
            input,
        })
    }

    pub fn forward(&self, b: &B, x: &B::Tensor, cache: &mut FeatCache<B>) -> Result<B::Tensor> {
        let past = cache.take(self.slot);
        let input = match &past {
            Some(p) => b.concat(&[p, x], 0)?,
            None => x.clone(),
        };
        let keep = last_frames(b, &input, CACHE_T)?;
        self.run(b, (input, keep), past.as_ref(), None, cache)
    }

    /// `forward(silu(channel_rms_norm(x, gamma))) + residual`, the norm written behind the cached
    /// frames ([`Backend::causal_rms_norm_silu`]) rather than concatenated to them afterwards, the
    /// residual added by the convolution ([`Backend::conv3d_add`]).
    pub fn forward_normed(
        &self,
        b: &B,
        x: &B::Tensor,
        gamma: &B::Tensor,
        residual: Option<&B::Tensor>,
        cache: &mut FeatCache<B>,
    ) -> Result<B::Tensor> {
        let past = cache.take(self.slot);
        let width = match self.input {
            ConvInput::Width(width) => width,
            ConvInput::FoldTime => {
                let (input, tail) =
                    b.causal_rms_norm_silu_folded(past.as_ref(), x, gamma, CACHE_T + 1)?;
                let y = self.convolve(b, &input, [0, 0], residual)?;
                cache.put(self.slot, tail);
                return Ok(y);
            }
        };
        let input = b.causal_rms_norm_silu(past.as_ref(), x, gamma, width, CACHE_T)?;
        self.run(b, input, past.as_ref(), residual, cache)
    }

    /// Convolves `input` (the cached frames `past`, then this chunk's), adds `residual`, and
    /// caches `keep`, the input's last `CACHE_T` frames, for the next chunk: with a one-frame
    /// chunk, the newest cached frame stays in front of it.
    fn run(
        &self,
        b: &B,
        (input, keep): (B::Tensor, B::Tensor),
        past: Option<&B::Tensor>,
        residual: Option<&B::Tensor>,
        cache: &mut FeatCache<B>,
    ) -> Result<B::Tensor> {
        let front = CACHE_T - past.map(|p| frames(b, p)).transpose()?.unwrap_or(0);
        let y = self.convolve(b, &input, [front, 0], residual)?;
        cache.put(self.slot, keep);
        Ok(y)
    }

    /// The convolution of `input` with `time` zero frames (before, after), plus `residual`.
    fn convolve(
        &self,
        b: &B,
        input: &B::Tensor,
        time: [usize; 2],
        residual: Option<&B::Tensor>,
    ) -> Result<B::Tensor> {
        let [ph, pw] = self.space_pad;
        let pad = [time, [ph, ph], [pw, pw]];
        let bias = Some(&self.bias);
        Ok(match residual {
            Some(r) => b.conv3d_add(input, &self.weight, bias, [1; 3], pad, r)?,
            None => b.conv3d(input, &self.weight, bias, [1; 3], pad)?,
        })
    }
}
