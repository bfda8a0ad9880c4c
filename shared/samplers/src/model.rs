use rayon::prelude::*;
use turbine_tensor::Backend;

use crate::{Error, Latent, Result};

/// Which text conditioning a forward pass uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conditioning {
    /// The prompt.
    Positive,
    /// The negative (or empty) prompt; only requested by classifier-free guidance.
    Negative,
}

/// The network the samplers drive: a flow-matching velocity predictor.
pub trait VelocityModel<B: Backend> {
    /// Predicts `v = ε − x₀` at `x` (same shape as `x`).
    ///
    /// `timestep` is exactly the value the DiT's sinusoidal time embedding receives, already rounded
    /// as upstream rounds it (bf16 for rCM, an integer for Wan's flow sampler): implementations must
    /// not rescale or round it again. Multi-expert models (Wan2.2 A14B) pick their expert from it.
    fn velocity(&mut self, x: &B::Tensor, timestep: f64, cond: Conditioning) -> Result<B::Tensor>;
}

/// Moves the f64 host state to the backend and the model's answer back.
pub(crate) struct Runner<'a, B: Backend, M: ?Sized> {
    pub backend: &'a B,
    pub model: &'a mut M,
}

impl<B: Backend, M: VelocityModel<B> + ?Sized> Runner<'_, B, M> {
    pub fn upload(&self, x: &Latent) -> Result<B::Tensor> {
        Ok(self.backend.upload(&x.to_host_tensor())?)
    }

    /// One forward, widened to f64 and checked against the latent's shape.
    pub fn velocity(
        &mut self,
        x: &B::Tensor,
        shape: &[usize],
        timestep: f64,
        cond: Conditioning,
    ) -> Result<Vec<f64>> {
        let v = self.model.velocity(x, timestep, cond)?;
        let got = self.backend.shape(&v);
        if got != shape {
            return Err(Error::ModelOutputShape {
                expected: shape.to_vec(),
                got: got.to_vec(),
            });
        }
        let host = self.backend.download(&v)?;
        Ok(host
            .f32_elements()
            .par_iter()
            .map(|&x| f64::from(x))
            .collect())
    }
}
