//! The three stages in one process: prompt → umT5 → DiT sampling → VAE decode → frames.

use std::ops::ControlFlow;
use std::time::Instant;

use serde::Serialize;
use turbine_models::umt5::{UmT5Encoder, UmT5Tokenizer};
use turbine_models::vae::WanVae;
use turbine_models::wan::{TextContext, WanModel};
use turbine_samplers::{SeededNoise, StepEvent};
use turbine_tensor::{Backend, HostTensor};

use crate::assets::ModelSource;
use crate::denoise::DitVelocity;
use crate::{Error, GenerateRequest, Result};

/// Stages of a generation, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    TextEncode,
    Denoise,
    VaeDecode,
}

/// Progress of a generation, reported as it happens.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A stage begins; `units` is its number of steps (prompts, denoising steps, video frames).
    StageStarted {
        stage: Stage,
        units: usize,
    },
    /// One denoising step finished.
    Step {
        index: usize,
        total: usize,
        timestep: f64,
        seconds: f64,
    },
    /// Video frames `done` of `total` are decoded and handed to the sink.
    Frames {
        done: usize,
        total: usize,
    },
    StageFinished {
        stage: Stage,
        seconds: f64,
    },
}

/// Where decoded frames go, chunk by chunk as the VAE produces them: `[3, n, H, W]` in [−1, 1].
pub trait FrameSink {
    fn push(
        &mut self,
        frames: &HostTensor,
    ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

/// Wall-clock seconds per stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Timings {
    pub text_encode_s: f64,
    pub denoise_s: f64,
    /// Each denoising step (all forwards of the step plus the update).
    pub steps_s: Vec<f64>,
    /// VAE decode, frame hand-off included.
    pub vae_decode_s: f64,
    /// Time spent inside the frame sink (e.g. H.264 encoding), overlapped with decoding.
    pub sink_s: f64,
    pub total_s: f64,
}

/// What a finished generation produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub frames: usize,
    pub width: u32,
    pub height: u32,
    pub latent_shape: [usize; 4],
    pub seed: u64,
    /// Timesteps fed to the DiT, one per step.
    pub timesteps: Vec<f64>,
    /// Prompt tokens kept (with `</s>`), and whether the prompt was cut to fit.
    pub prompt_tokens: usize,
    pub prompt_truncated: bool,
    pub timings: Timings,
}

/// The loaded models of a text-to-video pipeline.
pub struct Pipeline<B: Backend> {
    tokenizer: UmT5Tokenizer,
    text: UmT5Encoder<B>,
    dit: WanModel<B>,
    vae: WanVae<B>,
}

/// An encoded prompt, ready for the DiT.
struct Prompt<B: Backend> {
    context: TextContext<B>,
    tokens: usize,
    truncated: bool,
}

impl<B: Backend + Clone> Pipeline<B> {
    /// Loads and cross-checks the three models.
    pub fn load(backend: B, source: &ModelSource) -> Result<Self> {
        let a = source.load()?;
        let text = UmT5Encoder::load(backend.clone(), a.text_config, &a.text)?;
        let dit = WanModel::load(
            backend.clone(),
            a.dit_config,
            &a.dit,
            turbine_models::wan::AttentionMode::Dense,
        )?;
        let vae = WanVae::load(backend, a.vae_config, &a.vae)?;
        let (t, d, v) = (text.config(), dit.config(), vae.config());
        if t.d_model != d.text_dim {
            return Err(Error::Assets(format!(
                "the text encoder outputs {} features, the DiT takes {}",
                t.d_model, d.text_dim
            )));
        }
        if d.out_dim != v.z_dim || d.in_dim < v.z_dim {
            return Err(Error::Assets(format!(
                "the DiT maps {} -> {} latent channels, the VAE has {}",
                d.in_dim, d.out_dim, v.z_dim
            )));
        }
        if a.tokenizer.vocab_size() > t.vocab_size {
            return Err(Error::Assets(format!(
                "the tokenizer has {} ids, the text encoder's table {}",
                a.tokenizer.vocab_size(),
                t.vocab_size
            )));
        }
        Ok(Self {
            tokenizer: a.tokenizer,
            text,
            dit,
            vae,
        })
    }

    pub fn dit(&self) -> &WanModel<B> {
        &self.dit
    }

    fn encode_prompt(&self, prompt: &str, field: &'static str) -> Result<Prompt<B>> {
        let tokens = if field == "negative_prompt" && prompt.trim().is_empty() {
            // diffusers' default unconditional prompt "": the tokenizer's output is `</s>` alone.
            self.tokenizer.end_of_text()
        } else {
            self.tokenizer
                .encode(prompt)
                .map_err(|e| Error::invalid(field, e.to_string()))?
        };
        let encoded = self.text.encode(&tokens.ids)?;
        let padded = self.text.pad_context(&encoded)?;
        Ok(Prompt {
            context: self.dit.encode_context(&padded)?,
            tokens: tokens.ids.len(),
            truncated: tokens.truncated(),
        })
    }

    /// Runs one text-to-video generation, handing frames to `sink` as they are decoded.
    pub fn generate(
        &mut self,
        request: &GenerateRequest,
        events: &mut dyn FnMut(&Event),
        sink: &mut dyn FrameSink,
    ) -> Result<Report> {
        let start = Instant::now();
        let mut timings = Timings::default();
        self.dit.set_attention(request.attention)?;

        let stage = Instant::now();
        let use_negative = request.uses_negative_prompt();
        events(&Event::StageStarted {
            stage: Stage::TextEncode,
            units: 1 + use_negative as usize,
        });
        let positive = self.encode_prompt(&request.prompt, "prompt")?;
        let negative = if use_negative {
            Some(self.encode_prompt(&request.negative_prompt, "negative_prompt")?)
        } else {
            None
        };
        timings.text_encode_s = stage.elapsed().as_secs_f64();
        events(&Event::StageFinished {
            stage: Stage::TextEncode,
            seconds: timings.text_encode_s,
        });

        let stage = Instant::now();
        let schedule = request.sampler.schedule();
        let latent_shape = request.shape.latent_shape(self.vae.config().z_dim);
        events(&Event::StageStarted {
            stage: Stage::Denoise,
            units: schedule.steps(),
        });
        let mut velocity = DitVelocity {
            model: &self.dit,
            positive: &positive.context,
            negative: negative.as_ref().map(|p| &p.context),
        };
        let mut noise = SeededNoise::new(request.seed);
        let mut last = Instant::now();
        let mut observer = |e: &StepEvent<'_>| {
            let seconds = last.elapsed().as_secs_f64();
            last = Instant::now();
            timings.steps_s.push(seconds);
            events(&Event::Step {
                index: e.index,
                total: e.total,
                timestep: e.timestep,
                seconds,
            });
            ControlFlow::Continue(())
        };
        let backend = self.dit.backend().clone();
        let latents = request.sampler.sample(
            &backend,
            &mut velocity,
            &latent_shape,
            &mut noise,
            &mut observer,
        )?;
        timings.denoise_s = stage.elapsed().as_secs_f64();
        events(&Event::StageFinished {
            stage: Stage::Denoise,
            seconds: timings.denoise_s,
        });

        let stage = Instant::now();
        let total_frames = request.shape.frames() as usize;
        events(&Event::StageStarted {
            stage: Stage::VaeDecode,
            units: total_frames,
        });
        let latents = backend.upload(&latents.to_host_tensor())?;
        let mut done = 0;
        for chunk in self.vae.decode_stream(&latents)? {
            let frames = backend.download(&chunk?)?;
            done += frames.shape[1];
            let sink_start = Instant::now();
            sink.push(&frames).map_err(Error::Output)?;
            timings.sink_s += sink_start.elapsed().as_secs_f64();
            events(&Event::Frames {
                done,
                total: total_frames,
            });
        }
        timings.vae_decode_s = stage.elapsed().as_secs_f64();
        events(&Event::StageFinished {
            stage: Stage::VaeDecode,
            seconds: timings.vae_decode_s,
        });
        timings.total_s = start.elapsed().as_secs_f64();
        Ok(Report {
            frames: done,
            width: request.shape.width(),
            height: request.shape.height(),
            latent_shape,
            seed: request.seed,
            timesteps: schedule.timesteps().to_vec(),
            prompt_tokens: positive.tokens,
            prompt_truncated: positive.truncated,
            timings,
        })
    }
}
