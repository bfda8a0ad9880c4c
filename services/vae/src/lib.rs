//! `turbine.v1.Vae`: latent frames to u8 video frames as each is decoded, and u8 video to
//! normalized latents.
//!
//! Frames leave as u8 RGB planes quantized by [`turbine_pipeline::rgb::to_u8`], the formula
//! turbine-media applies before its colour conversion, so an MP4 written from these frames has
//! the same bytes as one written in process. Video coming in is widened with
//! [`turbine_pipeline::rgb::from_u8`], its exact inverse on the 256 codes.
//!
//! One call runs at a time (a decode holds the model for its whole stream, since its causal
//! caches live between latent frames); further calls wait FIFO up to `--max-waiting`, then get
//! RESOURCE_EXHAUSTED.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;
use tonic::service::Routes;
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, debug_span};
use turbine_pipeline::rgb::{dequantize_frames, quantize_frames};
use turbine_pipeline::{DecodeStage, ModelSource, PendingFrames, VideoShape};
use turbine_proto::v1::vae_server::{Vae, VaeServer};
use turbine_proto::v1::{DecodedFrames, Dtype, TensorChunk};
use turbine_rpc::server::{MAX_MESSAGE_BYTES, Service};
use turbine_rpc::stream::{ResponseStream, Sink};
use turbine_rpc::tensor::{TensorAssembler, WireTensor, read_tensor};
use turbine_rpc::worker::Worker;
use turbine_rpc::{Error, Result};
use turbine_telemetry::{Metrics, Stage};
use turbine_tensor::{Backend, HostTensor};

/// The fully qualified service name, for health checks.
pub const SERVICE_NAME: &str = turbine_proto::v1::vae_server::SERVICE_NAME;

/// Response messages buffered ahead of the client.
const BUFFER: usize = 8;
/// Latent frames read ahead of the decoder.
const READ_AHEAD: usize = 2;

pub type Model<B> = DecodeStage<B>;

/// Loads the VAE onto `backend` and warms it up, on videos of `warm_up` size if given (the
/// worker's load step).
pub fn load<B: Backend>(
    backend: B,
    source: &ModelSource,
    warm_up: Option<&VideoShape>,
) -> Result<Model<B>> {
    let stage = DecodeStage::load(backend, source)?;
    stage.warm_up(warm_up)?;
    Ok(stage)
}

#[derive(Clone)]
pub struct VaeService<B: Backend> {
    worker: Worker<Model<B>>,
    metrics: Metrics,
}

impl<B: Backend> VaeService<B> {
    pub fn new(worker: Worker<Model<B>>, metrics: Metrics) -> Self {
        Self { worker, metrics }
    }

    /// The service with its message limits, health name and readiness, ready to serve.
    pub fn into_service(self) -> Service {
        let worker = self.worker.clone();
        let server = VaeServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Service::stage(SERVICE_NAME, Routes::new(server), &worker)
    }
}

#[tonic::async_trait]
impl<B: Backend> Vae for VaeService<B> {
    type DecodeStream = ResponseStream<DecodedFrames>;
    type EncodeStream = ResponseStream<TensorChunk>;

    async fn decode(
        &self,
        request: Request<Streaming<TensorChunk>>,
    ) -> std::result::Result<Response<Self::DecodeStream>, Status> {
        let (latents, incoming) = mpsc::channel(READ_AHEAD);
        let metrics = self.metrics.clone();
        let stream = self
            .worker
            .stream(BUFFER, move |stage: &mut Model<B>, sink| {
                let compute = decode(stage, sink, incoming)?;
                metrics.observe_stage(Stage::VaeDecode, compute);
                Ok(())
            })?;
        tokio::spawn(read_latent_frames(request.into_inner(), latents).in_current_span());
        Ok(Response::new(stream))
    }

    async fn encode(
        &self,
        request: Request<Streaming<TensorChunk>>,
    ) -> std::result::Result<Response<Self::EncodeStream>, Status> {
        let video = read_tensor(&mut request.into_inner(), "video").await?;
        if video.dtype != Dtype::U8 {
            return Err(
                Error::invalid("video", format!("dtype {:?} must be U8", video.dtype)).into(),
            );
        }
        let stream = self
            .worker
            .stream(BUFFER, move |stage: &mut Model<B>, sink| {
                let latents = stage.encode(&dequantize_frames(&video.shape, &video.data)?)?;
                for chunk in WireTensor::from_host(&latents)?.chunks("latents") {
                    sink.send(chunk)?;
                }
                Ok(())
            })?;
        Ok(Response::new(stream))
    }
}

/// Feeds complete latent frames to the decoder as their last chunk arrives; a malformed stream
/// hands the decoder its error instead.
async fn read_latent_frames(
    mut input: Streaming<TensorChunk>,
    latents: mpsc::Sender<Result<HostTensor>>,
) {
    let mut assembler = TensorAssembler::named("latent_frame");
    loop {
        let item = match input.message().await {
            Ok(Some(chunk)) => match assembler.push(chunk) {
                Ok(Some(frame)) => frame.to_host("latent_frame"),
                Ok(None) => continue,
                Err(e) => Err(e),
            },
            // The end of the stream ends the decode, unless it cut a frame short.
            Ok(None) => match assembler.finish() {
                Ok(()) => return,
                Err(e) => Err(e),
            },
            Err(status) => Err(Error::RequestStream(status)),
        };
        let failed = item.is_err();
        if latents.send(item).await.is_err() || failed {
            return;
        }
    }
}

/// The model-thread half of `Decode`: one decode session over the incoming latent frames.
/// Returns the time spent decoding (pushing latent frames and waiting for their video frames),
/// without the waits for latent frames.
fn decode<B: Backend>(
    stage: &mut Model<B>,
    sink: &Sink<DecodedFrames>,
    mut latents: mpsc::Receiver<Result<HostTensor>>,
) -> Result<Duration> {
    let mut session = stage.session();
    let mut out = FrameStream {
        sink,
        first_frame: 0,
        compute: Duration::ZERO,
    };
    // One chunk in flight: the next latent frame is queued on the device before the chunk
    // before it is waited for, so the device decodes while the host quantizes and sends.
    let mut in_flight = None;
    loop {
        let item = match latents.try_recv() {
            Ok(item) => item,
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {
                // Nothing to queue behind the chunk in flight: send it before waiting on the
                // client, which may take its time with the next latent frame.
                if let Some(pending) = in_flight.take() {
                    out.send(pending)?;
                }
                match latents.blocking_recv() {
                    Some(item) => item,
                    None => break,
                }
            }
        };
        let queued = item.and_then(|latent| {
            let started = Instant::now();
            let queued = session.push_async(&latent);
            out.compute += started.elapsed();
            Ok(queued?)
        });
        // The chunk before goes out before this frame's error, as it would decoding one by one.
        if let Some(pending) = in_flight.take() {
            out.send(pending)?;
        }
        in_flight = Some(queued?);
    }
    if let Some(pending) = in_flight {
        out.send(pending)?;
    }
    if out.first_frame == 0 {
        return Err(Error::invalid(
            "latent_frame",
            "the stream carried no latent frame",
        ));
    }
    Ok(out.compute)
}

/// Decoded chunks on their way to the client as u8 frames.
struct FrameStream<'a> {
    sink: &'a Sink<DecodedFrames>,
    /// Index of the next chunk's first frame.
    first_frame: u32,
    /// Time spent in pushes and in waits for their frames.
    compute: Duration,
}

impl FrameStream<'_> {
    /// Waits for a chunk and streams it.
    ///
    /// Debug-level spans (`frames`, with `wait`, `quantize` and `send` inside) time each chunk's
    /// way out, for traces that ask for them.
    fn send(&mut self, pending: PendingFrames) -> Result<()> {
        let _chunk = debug_span!("frames", first_frame = self.first_frame).entered();
        let started = Instant::now();
        let frames = debug_span!("wait").in_scope(|| pending.wait())?;
        self.compute += started.elapsed();
        let count = frames.shape[1] as u32;
        let codes = debug_span!("quantize").in_scope(|| quantize_frames(&frames))?;
        let wire = WireTensor::from_u8(frames.shape.clone(), codes);
        debug_span!("send").in_scope(|| {
            for chunk in wire.chunks("frames") {
                self.sink.send(DecodedFrames {
                    first_frame: self.first_frame,
                    frames: Some(chunk),
                })?;
            }
            Ok::<_, Error>(())
        })?;
        self.first_frame += count;
        Ok(())
    }
}
