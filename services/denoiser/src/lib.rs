//! `turbine.v1.Denoiser`: text contexts and a seed in, step progress (and previews) and latent
//! frames out.
//!
//! Concurrency: the replica samples one generation at a time (the accelerator is the unit);
//! further calls wait FIFO, at most `--max-waiting` of them, and past that are refused with
//! RESOURCE_EXHAUSTED. A waiting call whose client leaves never runs.
//!
//! Cancellation: a client that cancels or disconnects is noticed at the next step boundary —
//! the progress send fails, or the request stream reports a reset — and sampling stops there,
//! within one step.
//!
//! The initial noise (13–20 ms of host time at 480p) is drawn from the `DenoiseSetup` on, while
//! the context streams in and is prepared, rather than once the model thread takes the call.

mod inputs;

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tonic::service::Routes;
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, info_span};
use turbine_models::wan::AttentionMode;
use turbine_pipeline::{
    DenoiseStage, DenoiseStep, GenerateRequest, ModelSource, VideoShape, latent_frames,
};
use turbine_proto::v1::denoiser_server::{Denoiser, DenoiserServer};
use turbine_proto::v1::{DenoiseEvent, DenoiseInput, Preview, StepProgress, denoise_event};
use turbine_rpc::server::{MAX_MESSAGE_BYTES, Service};
use turbine_rpc::stream::{ResponseStream, Sink};
use turbine_rpc::tensor::WireTensor;
use turbine_rpc::worker::Worker;
use turbine_rpc::{Error, Result};
use turbine_telemetry::{Metrics, Stage};
use turbine_tensor::Backend;

use crate::inputs::{Inputs, read_inputs, watch_for_reset};

/// The fully qualified service name, for health checks.
pub const SERVICE_NAME: &str = turbine_proto::v1::denoiser_server::SERVICE_NAME;

/// Events buffered ahead of the client. Small, so a client that stops reading holds sampling
/// back instead of letting it run ahead into a buffer nobody drains.
const BUFFER: usize = 4;

pub type Model<B> = DenoiseStage<B>;

/// Loads the DiT onto `backend` and warms it up (the worker's load step): on requests of `shape`
/// if given, in each of `attention`'s modes, or [`DenoiseStage::default_warm_up_modes`] when it
/// is empty. A mode the checkpoint cannot run fails the load, naming what is missing (and the
/// flag, when the modes came from it).
pub fn load<B: Backend + Clone>(
    backend: B,
    source: &ModelSource,
    shape: Option<&VideoShape>,
    attention: &[AttentionMode],
) -> Result<Model<B>> {
    let mut stage = DenoiseStage::load(backend, source)?;
    let (modes, named) = match attention {
        [] => (stage.default_warm_up_modes(), false),
        modes => (modes.to_vec(), true),
    };
    for mode in modes {
        let start = Instant::now();
        stage.warm_up_in(mode, shape).map_err(|e| {
            if named {
                Error::invalid("--warm-up-attention", format!("{mode}: {e}"))
            } else {
                e.into()
            }
        })?;
        tracing::info!(
            attention = %mode,
            seconds = start.elapsed().as_secs_f64(),
            "warmed up"
        );
    }
    Ok(stage)
}

#[derive(Clone)]
pub struct DenoiserService<B: Backend> {
    worker: Worker<Model<B>>,
    metrics: Metrics,
    steps: Arc<AtomicU64>,
    /// The DiT's latent channels, read off the model once it has loaded: the noise's shape, so
    /// that a call starts drawing it from its setup.
    latent_channels: Arc<OnceLock<usize>>,
}

impl<B: Backend + Clone> DenoiserService<B> {
    pub fn new(worker: Worker<Model<B>>, metrics: Metrics) -> Self {
        Self {
            worker,
            metrics,
            steps: Arc::default(),
            latent_channels: Arc::default(),
        }
    }

    /// Denoising steps this replica has run, cancelled calls included (each is also one
    /// observation of `turbine_step_seconds`).
    pub fn steps_run(&self) -> u64 {
        self.steps.load(Ordering::Relaxed)
    }

    /// No generation is running or waiting.
    pub fn is_idle(&self) -> bool {
        self.worker.is_idle()
    }

    /// The service with its message limits, health name and readiness, ready to serve: ready
    /// once the model has loaded and its latent channels are known.
    pub fn into_service(self) -> Service {
        let (worker, channels) = (self.worker.clone(), self.latent_channels.clone());
        let server = DenoiserServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Service {
            name: SERVICE_NAME,
            routes: Routes::new(server),
            ready: Box::pin(async move {
                let out_dim = worker.inspect(|stage| stage.config().out_dim).await?;
                channels.get_or_init(|| out_dim);
                Ok(())
            }),
        }
    }
}

#[tonic::async_trait]
impl<B: Backend + Clone> Denoiser for DenoiserService<B> {
    type DenoiseStream = ResponseStream<DenoiseEvent>;

    async fn denoise(
        &self,
        request: Request<Streaming<DenoiseInput>>,
    ) -> std::result::Result<Response<Self::DenoiseStream>, Status> {
        let mut input = request.into_inner();
        // Only for a call the worker can take: a refused one would draw for nothing. Before the
        // model has loaded (the call is then refused below) the channels are unknown; where the
        // noise is not drawn here, the model thread draws it.
        let channels = self
            .latent_channels
            .get()
            .copied()
            .filter(|_| self.worker.has_room());
        let noise = |request: &GenerateRequest| channels.map(|c| request.noise(c));
        let inputs = read_inputs(&mut input, noise)
            .instrument(info_span!("read_inputs"))
            .await?;
        let reset = Arc::new(AtomicBool::new(false));
        let job_reset = reset.clone();
        let (metrics, steps) = (self.metrics.clone(), self.steps.clone());
        let stream = self
            .worker
            .stream(BUFFER, move |stage: &mut Model<B>, sink| {
                let record = Record {
                    metrics: &metrics,
                    steps: &steps,
                };
                sample(stage, sink, inputs, &job_reset, record)
            })?;
        tokio::spawn(watch_for_reset(input, reset).in_current_span());
        Ok(Response::new(stream))
    }
}

/// Where a call's steps are counted.
struct Record<'a> {
    metrics: &'a Metrics,
    steps: &'a AtomicU64,
}

fn event(kind: denoise_event::Kind) -> DenoiseEvent {
    DenoiseEvent { kind: Some(kind) }
}

/// The model-thread half of a call: sampling with progress and previews, then the latents.
fn sample<B: Backend + Clone>(
    stage: &mut Model<B>,
    sink: &Sink<DenoiseEvent>,
    inputs: Inputs,
    reset: &AtomicBool,
    record: Record<'_>,
) -> Result<()> {
    let Inputs {
        request,
        previews,
        noise,
        context,
        negative_context,
    } = inputs;
    let mut noise = noise.unwrap_or_else(|| stage.noise(&request));
    let (context, negative_context) = info_span!("prepare_context").in_scope(|| {
        let upload = |t| {
            stage
                .backend()
                .upload(t)
                .map_err(turbine_pipeline::Error::from)
        };
        let context = stage.context("context", &upload(&context)?)?;
        let negative = match &negative_context {
            Some(t) => Some(stage.context("negative_context", &upload(t)?)?),
            None => None,
        };
        Ok::<_, Error>((context, negative))
    })?;
    let mut stopped_at = None;
    let started = Instant::now();
    let mut observer = |step: &DenoiseStep<'_>| {
        record.steps.fetch_add(1, Ordering::Relaxed);
        record
            .metrics
            .observe_step(Duration::from_secs_f64(step.seconds));
        let progress = event(denoise_event::Kind::Progress(StepProgress {
            step: step.index as u32,
            total: step.total as u32,
            timestep: step.timestep,
            seconds: step.seconds,
        }));
        let mut delivered = !reset.load(Ordering::Relaxed) && sink.send(progress).is_ok();
        if delivered && previews {
            // Previews are a courtesy: one that cannot be drawn is logged, not fatal.
            match step.preview() {
                Ok(p) => {
                    delivered = sink
                        .send(event(denoise_event::Kind::Preview(Preview {
                            step: step.index as u32,
                            width: p.width,
                            height: p.height,
                            png: p.png.into(),
                        })))
                        .is_ok();
                }
                Err(e) => tracing::warn!(error = %e, "no preview"),
            }
        }
        if delivered {
            ControlFlow::Continue(())
        } else {
            stopped_at = Some((step.index + 1, step.total));
            ControlFlow::Break(())
        }
    };
    let latents = info_span!("sample").in_scope(|| {
        stage.denoise(
            &request,
            &mut noise,
            &context,
            negative_context.as_ref(),
            &mut observer,
        )
    });
    if let Some((done, total)) = stopped_at {
        tracing::info!(
            done,
            total,
            "client left: sampling stopped after {done} of {total} steps"
        );
        return Err(Error::ClientGone);
    }
    let latents = latents?;
    record
        .metrics
        .observe_stage(Stage::Denoise, started.elapsed());
    info_span!("send_latents").in_scope(|| {
        for frame in latent_frames(&latents)? {
            for chunk in WireTensor::from_host(&frame?)?.chunks("latent_frame") {
                sink.send(event(denoise_event::Kind::Latent(chunk)))?;
            }
        }
        Ok(())
    })
}
