//! Condition embeddings: the sinusoidal time embedding with its MLP and modulation projection, and
//! the text-embedding MLP.

use turbine_tensor::{Backend, HostTensor};

use super::WanConfig;
use super::weights::WanWeights;
use crate::Result;

/// `[cos(t·ω), sin(t·ω)]` with `ω_i = 10000^(−i/half)`, cos first, computed in f64 as the original
/// Wan's `sinusoidal_embedding_1d` does (t near 1000 loses ~1e-4 rad in f32).
pub fn sinusoid(t: f64, dim: usize) -> Vec<f32> {
    let half = dim / 2;
    let args: Vec<f64> = (0..half)
        .map(|i| t * 10000f64.powf(-(i as f64) / half as f64))
        .collect();
    args.iter()
        .map(|a| a.cos() as f32)
        .chain(args.iter().map(|a| a.sin() as f32))
        .collect()
}

/// `time_embedding` (Linear → SiLU → Linear) and `time_projection` (SiLU → Linear to 6·D).
pub struct TimeEmbedding<B: Backend> {
    freq_dim: usize,
    dim: usize,
    linear_1: B::Linear,
    linear_2: B::Linear,
    projection: B::Linear,
}

/// The time conditioning of one forward.
pub struct TimeConditioning<B: Backend> {
    /// `e`, `[D]`: feeds the head's modulation.
    pub embedding: B::Tensor,
    /// `e0`, `[6, D]`: shift/scale/gate of attention and FFN, added to each block's modulation.
    pub modulation: B::Tensor,
}

impl<B: Backend> TimeEmbedding<B> {
    pub fn load(backend: &B, w: &WanWeights, c: &WanConfig) -> Result<Self> {
        let d = c.dim;
        Ok(Self {
            freq_dim: c.freq_dim,
            dim: d,
            linear_1: backend.upload_linear(&w.linear("time_embedding.0", d, c.freq_dim)?)?,
            linear_2: backend.upload_linear(&w.linear("time_embedding.2", d, d)?)?,
            projection: backend.upload_linear(&w.linear("time_projection.1", 6 * d, d)?)?,
        })
    }

    pub fn forward(&self, backend: &B, timestep: f64) -> Result<TimeConditioning<B>> {
        let t = backend.upload(&HostTensor::from_f32(
            [1, self.freq_dim],
            sinusoid(timestep, self.freq_dim),
        )?)?;
        let h = backend.silu(&backend.linear(&t, &self.linear_1)?)?;
        let e = backend.linear(&h, &self.linear_2)?;
        let e0 = backend.linear(&backend.silu(&e)?, &self.projection)?;
        Ok(TimeConditioning {
            embedding: backend.reshape(&e, &[self.dim])?,
            modulation: backend.reshape(&e0, &[6, self.dim])?,
        })
    }
}

/// `text_embedding`: Linear → GELU(tanh) → Linear from the text encoder's width to D.
pub struct TextEmbedding<B: Backend> {
    linear_1: B::Linear,
    linear_2: B::Linear,
}

impl<B: Backend> TextEmbedding<B> {
    pub fn load(backend: &B, w: &WanWeights, c: &WanConfig) -> Result<Self> {
        Ok(Self {
            linear_1: backend.upload_linear(&w.linear("text_embedding.0", c.dim, c.text_dim)?)?,
            linear_2: backend.upload_linear(&w.linear("text_embedding.2", c.dim, c.dim)?)?,
        })
    }

    /// `[Lctx, text_dim] -> [Lctx, D]`.
    pub fn forward(&self, backend: &B, context: &B::Tensor) -> Result<B::Tensor> {
        let h = backend.gelu_tanh(&backend.linear(context, &self.linear_1)?)?;
        Ok(backend.linear(&h, &self.linear_2)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sinusoid_is_cos_then_sin() {
        let e = sinusoid(988.0, 256);
        assert_eq!(e.len(), 256);
        assert!((e[0] - 988f64.cos() as f32).abs() < 1e-7);
        assert!((e[128] - 988f64.sin() as f32).abs() < 1e-7);
        let w = 10000f64.powf(-5.0 / 128.0);
        assert!((e[128 + 5] - (988.0 * w).sin() as f32).abs() < 1e-7);
    }
}
