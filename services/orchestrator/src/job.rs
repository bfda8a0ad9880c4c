//! One job through the stages: text encoding (through the embedding cache), then denoising,
//! VAE decoding and H.264 encoding running as a pipeline — latent frames go to the VAE as the
//! denoiser streams them, video frames to the encoder as the VAE decodes them. The denoise call
//! opens with the job, its setup first, so that the denoiser draws the initial noise while the
//! prompts encode.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tracing::{Instrument, debug, debug_span, info_span};
use turbine_proto::v1::{Artifact, DenoiseSetup, JobPreview, Progress, Stage, StageTiming};

use turbine_telemetry::{Metrics, Stage as TelemetryStage};

use crate::cache::PromptCache;
use crate::error::{Error, Result};
use crate::params::ValidParams;
use crate::queue::{Assignment, Outcome, Queue, Update};
use crate::stages::{DenoiseInput, DenoiseUpdate, EncodedPrompt, LatentLog, Prompts, Stages};
use crate::video::VideoWriter;

/// What every job of this orchestrator shares.
#[derive(Debug)]
pub struct JobContext<S> {
    pub stages: S,
    pub cache: PromptCache,
    pub metrics: Metrics,
}

/// Takes jobs from the queue one at a time until the queue drains for shutdown.
pub async fn worker<S: Stages>(queue: Queue, context: Arc<JobContext<S>>) {
    while let Some(assignment) = queue.next().await {
        let job_id = assignment.job_id.clone();
        let span = assignment.span.clone();
        let outcome = run(&context, &queue, assignment).instrument(span).await;
        queue.finish(&job_id, outcome).await;
    }
}

async fn run<S: Stages>(context: &JobContext<S>, queue: &Queue, job: Assignment) -> Outcome {
    let cancel = job.cancel.clone();
    tokio::select! {
        // Dropping the stage future drops its gRPC calls, which cancels them on the stage side
        // (the denoiser stops at its next step boundary) and stops the video writer.
        () = cancel.cancelled() => Outcome::Cancelled,
        result = stages(context, queue, &job) => result.unwrap_or_else(Outcome::Failed),
    }
}

async fn stages<S: Stages>(
    context: &JobContext<S>,
    queue: &Queue,
    job: &Assignment,
) -> Result<Outcome> {
    let id = job.job_id.as_str();
    let params = &job.params;
    let video = params.video;
    let mut timings = Vec::new();

    queue.update(id, Update::Stage(Stage::TextEncode)).await;
    let start = Instant::now();
    // The denoise call opens with its setup while the prompts encode (the denoiser draws the
    // initial noise meanwhile); their contexts follow once encoded.
    let (encoded, prompts) = watch::channel(None);
    let input = DenoiseInput {
        video,
        setup: DenoiseSetup {
            params: Some(params.resolved.clone()),
            seed: params.seed,
        },
        prompts,
    };
    let text = async {
        let (context, negative) = context
            .encode_prompts(params)
            .instrument(info_span!("text_encode"))
            .await?;
        let text_time = start.elapsed();
        // The stage changes before the denoiser can report a step: it has no context yet.
        queue.update(id, Update::Stage(Stage::Denoise)).await;
        encoded.send_replace(Some(Prompts { context, negative }));
        Ok::<_, Error>(text_time)
    };
    let latents = LatentLog::new(video.latent_frames());
    let (updates_tx, mut updates_rx) = mpsc::channel(16);
    let (frames_tx, mut frames_rx) = mpsc::channel(2);
    let mut writer = VideoWriter::spawn(job.partial_path.clone(), video, params.fps);
    let pixel_frames = f64::from(video.width) * f64::from(video.height) * f64::from(video.frames);
    let tail_estimate_s = job.tail_rate.map_or(0.0, |rate| rate * pixel_frames);

    let denoise = async {
        let updates_tx = updates_tx;
        context
            .stages
            .denoise(&input, &updates_tx, &latents)
            .instrument(info_span!("denoise"))
            .await?;
        Ok::<_, Error>(Instant::now())
    };
    let progress = async {
        let mut clock = StepClock::default();
        let mut decode_announced = false;
        let mut relay = |update: DenoiseUpdate| -> Option<Update> {
            match update {
                DenoiseUpdate::Step(step) => {
                    clock.record(step.seconds);
                    if let Ok(seconds) = Duration::try_from_secs_f64(step.seconds) {
                        context.metrics.observe_step(seconds);
                    }
                    let remaining = step.total.saturating_sub(step.step + 1);
                    Some(Update::Progress(Progress {
                        step: step.step,
                        total: step.total,
                        timestep: step.timestep,
                        eta_seconds: clock.mean_s() * f64::from(remaining) + tail_estimate_s,
                    }))
                }
                DenoiseUpdate::Preview(p) => Some(Update::Preview(JobPreview {
                    step: p.step,
                    width: p.width,
                    height: p.height,
                    png: p.png,
                })),
                DenoiseUpdate::Restarted => {
                    clock = StepClock::default();
                    None
                }
            }
        };
        loop {
            tokio::select! {
                // Updates first: the denoiser queues every step's update before the first latent
                // frame lands, so announcing the VAE stage only once the channel is drained keeps
                // a job's events in order.
                biased;
                update = updates_rx.recv() => match update {
                    Some(update) => {
                        if let Some(update) = relay(update) {
                            queue.update(id, update).await;
                        }
                    }
                    None => {
                        // The denoise call has ended; if it delivered latents, the VAE started.
                        if !decode_announced && latents.received() > 0 {
                            queue.update(id, Update::Stage(Stage::VaeDecode)).await;
                        }
                        break;
                    }
                },
                _ = latents.get(0), if !decode_announced => {
                    while let Ok(update) = updates_rx.try_recv() {
                        if let Some(update) = relay(update) {
                            queue.update(id, update).await;
                        }
                    }
                    queue.update(id, Update::Stage(Stage::VaeDecode)).await;
                    decode_announced = true;
                }
            }
        }
        Ok::<_, Error>(())
    };
    let decode = async {
        let frames_tx = frames_tx;
        // The VAE call opens with the first latent frame, so its deadline covers decoding only.
        latents.get(0).await;
        let start = Instant::now();
        context
            .stages
            .decode(video, &latents, &frames_tx)
            .instrument(info_span!("vae_decode"))
            .await?;
        Ok::<_, Error>(start.elapsed())
    };
    let write = async {
        let mut written = 0u32;
        while let Some(decoded) = frames_rx.recv().await {
            let n = decoded.frames.shape.get(1).map_or(0, |&n| n as u32);
            if decoded.first_frame + n <= written {
                continue; // replayed by a retried decode call
            }
            if decoded.first_frame != written {
                return Err(Error::StageProtocol {
                    stage: Stage::VaeDecode,
                    message: format!(
                        "frames from {} on after {written} frames",
                        decoded.first_frame
                    ),
                });
            }
            if written == 0 {
                context.metrics.observe_first_frame(start.elapsed());
            }
            writer
                .push(decoded.frames)
                .instrument(debug_span!("write_frames", first_frame = written))
                .await?;
            written += n;
        }
        Ok(())
    };
    let (text_time, sampled_at, (), decode_time, ()) =
        tokio::try_join!(text, denoise, progress, decode, write)?;
    // The denoise stage's time runs from the prompts' contexts, as the denoiser can only start
    // sampling then.
    timings.push(context.timing(Stage::TextEncode, text_time));
    timings.push(context.timing(Stage::Denoise, sampled_at - (start + text_time)));
    timings.push(context.timing(Stage::VaeDecode, decode_time));

    queue.update(id, Update::Stage(Stage::EncodeVideo)).await;
    let written = writer
        .finish()
        .instrument(info_span!("encode_video"))
        .await?;
    timings.push(context.timing(Stage::EncodeVideo, Duration::from_secs_f64(written.busy_s)));
    if let Err(e) = tokio::fs::rename(&job.partial_path, &job.artifact_path).await {
        let _ = tokio::fs::remove_file(&job.partial_path).await;
        return Err(Error::io("storing the artifact", e));
    }
    Ok(Outcome::Succeeded {
        artifact: Artifact {
            mime_type: "video/mp4".into(),
            size_bytes: written.info.bytes,
            frames: written.info.frames as u32,
            width: video.width,
            height: video.height,
            fps: params.fps,
        },
        timings,
        tail_s: sampled_at.elapsed().as_secs_f64(),
    })
}

impl<S: Stages> JobContext<S> {
    /// The prompt's context and, when guidance needs it, the negative prompt's, in parallel.
    async fn encode_prompts(
        &self,
        params: &ValidParams,
    ) -> Result<(Arc<EncodedPrompt>, Option<Arc<EncodedPrompt>>)> {
        let negative = async {
            if params.uses_negative {
                // allow_empty: an empty negative prompt is the unconditional `</s>`
                // (diffusers' default, as the embedded pipeline encodes it).
                self.encode(params.negative_prompt(), true).await.map(Some)
            } else {
                Ok(None)
            }
        };
        tokio::try_join!(self.encode(params.prompt(), false), negative)
    }

    /// The prompt's embedding, from the cache when this prompt was encoded recently.
    async fn encode(&self, prompt: &str, allow_empty: bool) -> Result<Arc<EncodedPrompt>> {
        let key = (prompt.to_string(), allow_empty);
        if let Some(hit) = self.cache.get(&key) {
            debug!(allow_empty, "prompt embedding from the cache");
            return Ok(hit);
        }
        let encoded = Arc::new(self.stages.encode(prompt, allow_empty).await?);
        self.cache.insert(key, encoded.clone());
        Ok(encoded)
    }

    /// A stage's time, for the job record and the `stage_seconds` histogram.
    fn timing(&self, stage: Stage, elapsed: Duration) -> StageTiming {
        let label = match stage {
            Stage::TextEncode => Some(TelemetryStage::TextEncode),
            Stage::Denoise => Some(TelemetryStage::Denoise),
            Stage::VaeDecode => Some(TelemetryStage::VaeDecode),
            Stage::EncodeVideo => Some(TelemetryStage::VideoEncode),
            Stage::Unspecified => None,
        };
        if let Some(label) = label {
            self.metrics.observe_stage(label, elapsed);
        }
        StageTiming {
            stage: stage as i32,
            seconds: elapsed.as_secs_f64(),
        }
    }
}

/// Mean measured step time of the current denoise attempt.
#[derive(Debug, Default)]
struct StepClock {
    steps: u32,
    total_s: f64,
}

impl StepClock {
    fn record(&mut self, seconds: f64) {
        if seconds.is_finite() && seconds >= 0.0 {
            self.steps += 1;
            self.total_s += seconds;
        }
    }

    fn mean_s(&self) -> f64 {
        if self.steps == 0 {
            0.0
        } else {
            self.total_s / f64::from(self.steps)
        }
    }
}
