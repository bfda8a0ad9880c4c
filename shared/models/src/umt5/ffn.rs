//! The gated-GELU feed-forward of umT5: `fc2(fc1(h) ⊙ gelu_tanh(gate(h)))`, no biases.

use turbine_tensor::Backend;

use super::UmT5Config;
use super::weights::UmT5Weights;
use crate::Result;

pub struct GatedFfn<B: Backend> {
    /// The GELU branch (`ffn.gate.0`, HF `wi_0`).
    gate: B::Linear,
    /// The linear branch (`ffn.fc1`, HF `wi_1`).
    fc1: B::Linear,
    fc2: B::Linear,
}

impl<B: Backend> GatedFfn<B> {
    pub fn load(backend: &B, w: &UmT5Weights, c: &UmT5Config, block: usize) -> Result<Self> {
        let (d, f) = (c.d_model, c.d_ff);
        let linear = |n: &str, out: usize, inp: usize| -> Result<B::Linear> {
            Ok(backend.upload_linear(&w.linear_no_bias(
                &format!("blocks.{block}.ffn.{n}"),
                out,
                inp,
            )?)?)
        };
        Ok(Self {
            gate: linear("gate.0", f, d)?,
            fc1: linear("fc1", f, d)?,
            fc2: linear("fc2", d, f)?,
        })
    }

    /// `residual + ffn(h)` for `h: [L, D]` (after `norm2`): `fc2` adds into the residual stream.
    pub fn add_to(&self, b: &B, residual: &B::Tensor, h: &B::Tensor) -> Result<B::Tensor> {
        let hidden = b.linear_gated_gelu(h, &self.gate, &self.fc1)?;
        Ok(b.linear_residual(&hidden, &self.fc2, residual, None)?)
    }
}
