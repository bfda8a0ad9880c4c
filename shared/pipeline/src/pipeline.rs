//! The three stages composed in one process: prompt → umT5 → DiT sampling → VAE decode → frames.

use std::ops::ControlFlow;
use std::sync::mpsc;
use std::time::Instant;

use serde::Serialize;
use turbine_samplers::DrawnAhead;
use turbine_tensor::{Backend, HostTensor};

use crate::decode::{DecodeStage, PendingFrames, latent_frames};
use crate::denoise::{DenoiseStage, DenoiseStep};
use crate::text::{EncodedPrompt, TextStage};
use crate::{Error, GenerateRequest, LoadReport, ModelSource, Result};

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
    /// Video frames `done` of `total` are decoded and queued for the sink.
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
/// A sink runs on a thread of its own, so encoding a chunk overlaps decoding the next.
pub trait FrameSink: Send {
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
    /// VAE decode, until the sink has taken the last chunk.
    pub vae_decode_s: f64,
    /// Time spent inside the frame sink (e.g. H.264 encoding), overlapped with decoding.
    pub sink_s: f64,
    /// Each chunk of decoded frames, in order: the first frame's latency and the decode's
    /// cadence, and whether the sink keeps up.
    pub chunks: Vec<ChunkTimes>,
    pub total_s: f64,
}

/// When one chunk of frames passed each point of the VAE stage, in seconds from its start.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChunkTimes {
    pub frames: usize,
    /// Its decode and download had been queued on the device.
    pub queued_s: f64,
    /// Its frames had reached the host.
    pub decoded_s: f64,
    /// The sink had taken them.
    pub written_s: f64,
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

/// The three stages of a text-to-video pipeline, loaded and cross-checked. The text encoder may
/// run on another backend than the DiT and VAE (`T`): umT5 on the CPU when the GPU is short of
/// memory, or on a second GPU. Its context reaches the DiT through host memory either way (16 KiB
/// a token), as it does between the stage services.
pub struct Pipeline<B: Backend, T: Backend = B> {
    text: TextStage<T>,
    denoise: DenoiseStage<B>,
    decode: DecodeStage<B>,
}

impl<B: Backend + Clone> Pipeline<B> {
    /// Loads the three models onto one backend and checks that they fit together.
    pub fn load(backend: B, source: &ModelSource) -> Result<Self> {
        let denoise = DenoiseStage::load(backend.clone(), source)?;
        let text = TextStage::load(backend.clone(), source)?;
        let decode = DecodeStage::load(backend, source)?;
        Self::from_stages(text, denoise, decode)
    }
}

impl<B: Backend + Clone, T: Backend> Pipeline<B, T> {
    /// Composes stages loaded separately (e.g. the DiT and VAE first, then umT5 wherever memory
    /// is left), after checking that they fit together.
    pub fn from_stages(
        text: TextStage<T>,
        denoise: DenoiseStage<B>,
        decode: DecodeStage<B>,
    ) -> Result<Self> {
        let (t, d, v) = (text.config(), denoise.config(), decode.config());
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
        Ok(Self {
            text,
            denoise,
            decode,
        })
    }

    pub fn text(&self) -> &TextStage<T> {
        &self.text
    }

    pub fn denoiser(&self) -> &DenoiseStage<B> {
        &self.denoise
    }

    pub fn decoder(&self) -> &DecodeStage<B> {
        &self.decode
    }

    /// How each model loaded.
    pub fn load_report(&self) -> LoadReport {
        LoadReport {
            text_encoder: self.text.load_report(),
            dit: self.denoise.load_report(),
            vae: self.decode.load_report(),
        }
    }

    /// Encodes `prompt` and hands its context to the DiT's backend.
    fn encode(
        &self,
        field: &'static str,
        prompt: &str,
        allow_empty: bool,
    ) -> Result<(EncodedPrompt<T>, B::Tensor)> {
        let encoded = self.text.encode(field, prompt, allow_empty)?;
        let host = self.text.backend().download(&encoded.context)?;
        let context = self.denoise.backend().upload(&host)?;
        Ok((encoded, context))
    }

    /// Runs one text-to-video generation, handing frames to `sink` as they are decoded.
    pub fn generate(
        &mut self,
        request: &GenerateRequest,
        events: &mut dyn FnMut(&Event),
        sink: &mut dyn FrameSink,
    ) -> Result<Report> {
        let noise = self.denoise.noise(request);
        self.generate_from(request, noise, events, sink)
    }

    /// [`generate`](Self::generate) from `noise`, the request's [`DenoiseStage::noise`] started
    /// earlier: a caller that knows its request before the models are loaded draws the initial
    /// latent while they load, rather than beside the prompt's encoding.
    pub fn generate_from(
        &mut self,
        request: &GenerateRequest,
        mut noise: DrawnAhead,
        events: &mut dyn FnMut(&Event),
        sink: &mut dyn FrameSink,
    ) -> Result<Report> {
        let start = Instant::now();
        let mut timings = Timings::default();

        let stage = Instant::now();
        let use_negative = request.uses_negative_prompt();
        events(&Event::StageStarted {
            stage: Stage::TextEncode,
            units: 1 + use_negative as usize,
        });
        let (positive, positive_context) = self.encode("prompt", &request.prompt, false)?;
        let negative_context = if use_negative {
            Some(
                self.encode("negative_prompt", &request.negative_prompt, true)?
                    .1,
            )
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
        events(&Event::StageStarted {
            stage: Stage::Denoise,
            units: schedule.steps(),
        });
        let positive_context = self.denoise.context("context", &positive_context)?;
        let negative_context = match &negative_context {
            Some(c) => Some(self.denoise.context("negative_context", c)?),
            None => None,
        };
        let mut on_step = |step: &DenoiseStep<'_>| {
            timings.steps_s.push(step.seconds);
            events(&Event::Step {
                index: step.index,
                total: step.total,
                timestep: step.timestep,
                seconds: step.seconds,
            });
            ControlFlow::Continue(())
        };
        let latents = self.denoise.denoise(
            request,
            &mut noise,
            &positive_context,
            negative_context.as_ref(),
            &mut on_step,
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
        let mut session = self.decode.session();
        let mut done = 0;
        // Two chunks in flight at most: the sink's queue bounds host memory when it is slower
        // than the decoder.
        let (queue, chunks) = mpsc::sync_channel::<HostTensor>(2);
        let since = move || stage.elapsed().as_secs_f64();
        let mut decoded_chunks = Vec::new();
        let (sink_s, written) = std::thread::scope(|scope| -> Result<(f64, Vec<f64>)> {
            let writer = scope.spawn(move || -> Result<(f64, Vec<f64>)> {
                let (mut busy, mut written) = (0.0, Vec::new());
                for frames in chunks {
                    let start = Instant::now();
                    sink.push(&frames).map_err(Error::Output)?;
                    busy += start.elapsed().as_secs_f64();
                    written.push(since());
                }
                Ok((busy, written))
            });
            let decoded = (|| -> Result<()> {
                // Waits for a chunk and queues it for the writer; false once the writer stopped
                // on an error, which its join reports.
                let mut hand_on = |(pending, queued_s): (PendingFrames, f64)| -> Result<bool> {
                    let frames = pending.wait()?;
                    let n = frames.shape[1];
                    done += n;
                    decoded_chunks.push((n, queued_s, since()));
                    if queue.send(frames).is_err() {
                        return Ok(false);
                    }
                    events(&Event::Frames {
                        done,
                        total: total_frames,
                    });
                    Ok(true)
                };
                // One chunk in flight: chunk k+1 is queued on the device before chunk k is waited
                // for, so the GPU decodes while the host copies chunk k out and hands it on.
                let mut in_flight = None;
                for latent_frame in latent_frames(&latents)? {
                    let queued = latent_frame.and_then(|frame| session.push_async(&frame));
                    let queued_s = since();
                    // Chunk k goes out before chunk k+1's error, as it would decoding one by one.
                    if let Some(pending) = in_flight.take()
                        && !hand_on(pending)?
                    {
                        return Ok(());
                    }
                    in_flight = Some((queued?, queued_s));
                }
                if let Some(pending) = in_flight {
                    hand_on(pending)?;
                }
                Ok(())
            })();
            drop(queue);
            let written = writer
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            decoded?;
            written
        })?;
        timings.sink_s = sink_s;
        timings.chunks = decoded_chunks
            .into_iter()
            .zip(written)
            .map(|((frames, queued_s, decoded_s), written_s)| ChunkTimes {
                frames,
                queued_s,
                decoded_s,
                written_s,
            })
            .collect();
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
            latent_shape: self.denoise.latent_shape(&request.shape),
            seed: request.seed,
            timesteps: schedule.timesteps().to_vec(),
            prompt_tokens: positive.tokens,
            prompt_truncated: positive.truncated,
            timings,
        })
    }
}
