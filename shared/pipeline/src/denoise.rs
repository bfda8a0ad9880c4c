//! The DiT as the samplers' velocity model.

use turbine_models::wan::{TextContext, WanModel};
use turbine_samplers::{Conditioning, VelocityModel};
use turbine_tensor::Backend;

/// A prompt (and, for classifier-free guidance, a negative prompt) bound to the DiT.
pub struct DitVelocity<'a, B: Backend> {
    pub model: &'a WanModel<B>,
    pub positive: &'a TextContext<B>,
    pub negative: Option<&'a TextContext<B>>,
}

impl<B: Backend + Clone> VelocityModel<B> for DitVelocity<'_, B> {
    fn velocity(
        &mut self,
        x: &B::Tensor,
        timestep: f64,
        cond: Conditioning,
    ) -> turbine_samplers::Result<B::Tensor> {
        let context = match cond {
            Conditioning::Positive => self.positive,
            Conditioning::Negative => self.negative.ok_or_else(|| {
                turbine_samplers::Error::Model(
                    "guidance asked for a negative prompt that was not encoded".into(),
                )
            })?,
        };
        self.model
            .forward(x, timestep, context, None)
            .map_err(|e| turbine_samplers::Error::Model(Box::new(e)))
    }
}
