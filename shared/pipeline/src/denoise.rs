//! The denoise stage: the DiT under a sampler, from text contexts and a seed to latents.

use std::ops::ControlFlow;
use std::time::Instant;

use turbine_models::wan::{AttentionMode, TextContext, WanConfig, WanModel};
use turbine_samplers::{Conditioning, DrawnAhead, Latent, NoiseSource, StepEvent, VelocityModel};
use turbine_tensor::{Backend, HostTensor, SlaParams};

use crate::preview::{Preview, render_preview};
use crate::{Error, GenerateRequest, ModelLoad, ModelSource, Result, VideoShape};

/// Context rows the DiT cross-attends to: umT5's `text_len`, the length Wan pads every prompt's
/// context to with zero rows (`WanModel.forward` upstream, diffusers' `WanPipeline` before its
/// transformer), and the most a context may have.
pub const MAX_CONTEXT_ROWS: usize = 512;

/// The DiT as the samplers' velocity model: a prompt (and, for classifier-free guidance, a
/// negative prompt) bound to it.
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

/// The loaded DiT.
pub struct DenoiseStage<B: Backend> {
    dit: WanModel<B>,
    load: ModelLoad,
    /// `[MAX_CONTEXT_ROWS, text_dim]` zeros on the device, the padding of every context.
    zero_rows: B::Tensor,
}

/// One finished denoising step, as the step observer sees it.
pub struct DenoiseStep<'a> {
    /// 0-based index of the step, of `total`.
    pub index: usize,
    pub total: usize,
    /// The timestep the DiT saw.
    pub timestep: f64,
    /// Wall time of the step: every forward of the step plus the update.
    pub seconds: f64,
    denoised: &'a Latent,
}

impl DenoiseStep<'_> {
    /// A picture of this step's clean estimate x̂₀ (see [`crate::preview`]); computed on demand
    /// so steps nobody previews cost nothing.
    pub fn preview(&self) -> Result<Preview> {
        render_preview(self.denoised)
    }
}

impl<B: Backend + Clone> DenoiseStage<B> {
    pub fn load(backend: B, source: &ModelSource) -> Result<Self> {
        let start = Instant::now();
        let (config, store) = source.dit()?;
        let dit = WanModel::load(backend, config, &store, AttentionMode::Dense)?;
        let zero_rows = dit.backend().upload(&HostTensor::zeros([
            MAX_CONTEXT_ROWS,
            dit.config().text_dim,
        ]))?;
        let load = ModelLoad::finish(start, dit.backend(), &store)?;
        Ok(Self {
            dit,
            load,
            zero_rows,
        })
    }

    /// How the DiT loaded.
    pub fn load_report(&self) -> ModelLoad {
        self.load
    }

    pub fn config(&self) -> &WanConfig {
        self.dit.config()
    }

    pub fn backend(&self) -> &B {
        self.dit.backend()
    }

    pub fn model(&self) -> &WanModel<B> {
        &self.dit
    }

    /// `[out_dim, 1 + (F−1)/4, H/8, W/8]`: the latents a request samples.
    pub fn latent_shape(&self, shape: &VideoShape) -> [usize; 4] {
        shape.latent_shape(self.dit.config().out_dim)
    }

    /// Prepares a text encoder output `[rows, text_dim]` (the prompt's rows, padded or not) for
    /// the denoising loop: zero rows up to [`MAX_CONTEXT_ROWS`], then every block's
    /// cross-attention keys and values; `field` names it in errors.
    pub fn context(&self, field: &'static str, context: &B::Tensor) -> Result<TextContext<B>> {
        let (b, text_dim) = (self.backend(), self.dit.config().text_dim);
        let rows = match b.shape(context) {
            [rows, width] if (1..=MAX_CONTEXT_ROWS).contains(rows) && *width == text_dim => *rows,
            other => {
                return Err(Error::invalid(
                    field,
                    format!("shape {other:?} must be [1..={MAX_CONTEXT_ROWS}, {text_dim}]"),
                ));
            }
        };
        if rows == MAX_CONTEXT_ROWS {
            return Ok(self.dit.encode_context(context)?);
        }
        let zeros = b.narrow(&self.zero_rows, 0, MAX_CONTEXT_ROWS - rows)?;
        Ok(self.dit.encode_context(&b.concat(&[context, &zeros], 0)?)?)
    }

    /// [`GenerateRequest::noise`] for this DiT: created before the prompt's context is ready,
    /// the draw overlaps that work.
    pub fn noise(&self, request: &GenerateRequest) -> DrawnAhead {
        request.noise(self.dit.config().out_dim)
    }

    /// Samples the latents of `request` from `noise` (normally [`Self::noise`] of the request),
    /// reporting each step to `observer`; [`ControlFlow::Break`] cancels (the result is then a
    /// cancelled-sampler error). Returns `[out_dim, T, h, w]` f32, the precision the VAE decodes
    /// from.
    pub fn denoise(
        &mut self,
        request: &GenerateRequest,
        noise: &mut dyn NoiseSource,
        positive: &TextContext<B>,
        negative: Option<&TextContext<B>>,
        observer: &mut dyn FnMut(&DenoiseStep<'_>) -> ControlFlow<()>,
    ) -> Result<HostTensor> {
        if request.uses_negative_prompt() && negative.is_none() {
            return Err(Error::invalid(
                "negative_context",
                "classifier-free guidance needs the negative prompt's context",
            ));
        }
        self.dit.set_attention(request.attention)?;
        let shape = self.latent_shape(&request.shape);
        // A size the kernels refuse fails here, not after the noise and the first layers.
        let [_, t, h, w] = shape;
        self.dit.check_size(&[self.dit.config().in_dim, t, h, w])?;
        let mut velocity = DitVelocity {
            model: &self.dit,
            positive,
            negative,
        };
        let mut last = Instant::now();
        let mut on_step = |e: &StepEvent<'_>| {
            let seconds = last.elapsed().as_secs_f64();
            last = Instant::now();
            observer(&DenoiseStep {
                index: e.index,
                total: e.total,
                timestep: e.timestep,
                seconds,
                denoised: e.denoised,
            })
        };
        let latents = request.sampler.sample(
            self.dit.backend(),
            &mut velocity,
            &shape,
            noise,
            &mut on_step,
        )?;
        Ok(latents.to_host_tensor())
    }

    /// One forward on the latents of `shape` with an all-zero context of the padded prompt
    /// length, so that the first request of that size runs as fast as the next ones (the GEMMs'
    /// algorithm choices, the memory pool's blocks); without a shape, on the smallest latent the
    /// patch allows with a one-row context, which only proves the model runs.
    pub fn warm_up(&self, shape: Option<&VideoShape>) -> Result<()> {
        let c = self.dit.config();
        let b = self.backend();
        let (latent, rows) = match shape {
            Some(shape) => {
                let [_, t, h, w] = self.latent_shape(shape);
                ([c.in_dim, t, h, w], MAX_CONTEXT_ROWS)
            }
            None => {
                let [pt, ph, pw] = c.patch_size;
                ([c.in_dim, pt, ph, pw], 1)
            }
        };
        let context = self
            .dit
            .encode_context(&b.narrow(&self.zero_rows, 0, rows)?)?;
        self.dit
            .forward(
                &b.upload(&HostTensor::zeros(latent))?,
                999.0,
                &context,
                None,
            )
            .map(drop)?;
        b.synchronize()?;
        Ok(())
    }

    /// [`Self::warm_up`] in attention `mode`, whose kernels and buffers (the 8-bit modes' as much
    /// as the dense one's) the first request in that mode would otherwise wait for.
    pub fn warm_up_in(&mut self, mode: AttentionMode, shape: Option<&VideoShape>) -> Result<()> {
        self.dit.set_attention(mode)?;
        self.warm_up(shape)
    }

    /// [`Self::warm_up_in`] `request`'s attention mode at its size.
    pub fn warm_up_for(&mut self, request: &GenerateRequest) -> Result<()> {
        self.warm_up_in(request.attention, Some(&request.shape))
    }

    /// The attention modes a replica warms up in unless told which: dense, and on an SLA-tuned
    /// (TurboWan) checkpoint also TurboDiffusion's default, SageSLA at upstream's top-k.
    pub fn default_warm_up_modes(&self) -> Vec<AttentionMode> {
        let mut modes = vec![AttentionMode::Dense];
        if self.dit.sla_tuned() {
            modes.push(AttentionMode::SageSla(SlaParams::sage(
                SlaParams::DEFAULT_TOPK,
            )));
        }
        modes
    }
}
