//! The stages over gRPC: each call goes to the least busy replica and is retried on another one
//! when it fails with UNAVAILABLE or its connection breaks, within a deadline per attempt.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Request, Status, Streaming};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tower::Layer as _;
use tracing::{Instrument, info_span, warn};
use turbine_proto::v1::denoiser_client::DenoiserClient;
use turbine_proto::v1::text_encoder_client::TextEncoderClient;
use turbine_proto::v1::vae_client::VaeClient;
use turbine_proto::v1::{
    DenoiseEvent, Dtype, EncodeRequest, Stage, TensorChunk, denoise_event, denoise_input,
    encode_response,
};
use turbine_rpc::error::BUSY_METADATA;
use turbine_rpc::server::MAX_MESSAGE_BYTES;
use turbine_rpc::tensor::{TensorAssembler, WireTensor};
use turbine_telemetry::{GrpcClientLayer, GrpcClientService};

use crate::balance::{ChannelOptions, Pool, Replica};
use crate::config::StageConfig;
use crate::error::{Error, Result};
use crate::stages::{
    DecodedFrames, DenoiseInput, DenoiseUpdate, EncodedPrompt, LatentLog, Prompts, Stages,
    VideoSize,
};

const TEXT_ENCODER_SERVICE: &str = "turbine.v1.TextEncoder";
const DENOISER_SERVICE: &str = "turbine.v1.Denoiser";
const VAE_SERVICE: &str = "turbine.v1.Vae";

/// The three stage pools and how calls to them are made.
#[derive(Debug)]
pub struct GrpcStages {
    text_encoder: Pool,
    denoiser: Pool,
    vae: Pool,
    attempts: u32,
    text_encoder_timeout: Duration,
    denoiser_timeout: Duration,
    vae_timeout: Duration,
    probe_timeout: Duration,
}

/// Why one attempt failed.
enum AttemptError {
    /// The call failed: the stage's status, or one tonic made from a transport error.
    Rpc(Status),
    /// The stage answered, but not as the API says: a bug on its side, never retried.
    Protocol(String),
}

impl From<Status> for AttemptError {
    fn from(status: Status) -> Self {
        AttemptError::Rpc(status)
    }
}

fn protocol(message: impl Into<String>) -> AttemptError {
    AttemptError::Protocol(message.into())
}

/// Chunk reassembly errors are the stage's malformed output, not the caller's argument.
fn malformed(error: turbine_rpc::Error) -> AttemptError {
    AttemptError::Protocol(error.to_string())
}

/// A status tonic built from a local transport error — a reset connection, an h2 stream error,
/// a refused connect — rather than one the stage sent: the worker died or could not be reached.
fn broken_transport(status: &Status) -> bool {
    std::error::Error::source(status).is_some()
}

/// UNAVAILABLE (refused, loading, draining), RESOURCE_EXHAUSTED marked busy (that replica's
/// queue is full: another may be idle), or a connection broken before the call completed; never
/// INVALID_ARGUMENT or a request too big for the device's memory, which another replica would
/// refuse just the same.
fn retryable(status: &Status) -> bool {
    let code = status.code();
    code == Code::Unavailable
        || (code == Code::ResourceExhausted && status.metadata().contains_key(BUSY_METADATA))
        || (code != Code::InvalidArgument && broken_transport(status))
}

impl GrpcStages {
    pub async fn new(config: &StageConfig) -> Result<Self, String> {
        let options = ChannelOptions {
            connect_timeout: config.connect_timeout,
            backoff: config.replica_backoff,
            dns_refresh: config.dns_refresh,
        };
        Ok(Self {
            text_encoder: Pool::new("text_encoder", &config.text_encoder, options).await?,
            denoiser: Pool::new("denoiser", &config.denoiser, options).await?,
            vae: Pool::new("vae", &config.vae, options).await?,
            attempts: config.stage_attempts,
            text_encoder_timeout: config.text_encoder_timeout,
            denoiser_timeout: config.denoiser_timeout,
            vae_timeout: config.vae_timeout,
            probe_timeout: config.connect_timeout,
        })
    }

    /// Runs `attempt` on replicas of `pool` until it succeeds, fails for good, or `attempts`
    /// were made. Each attempt has the whole `timeout`; an expired deadline is not retried (the
    /// next replica would most likely take as long).
    async fn call<T, F, Fut>(
        &self,
        pool: &Pool,
        stage: Stage,
        timeout: Duration,
        mut attempt: F,
    ) -> Result<T>
    where
        F: FnMut(Channel, u32) -> Fut,
        Fut: Future<Output = Result<T, AttemptError>>,
    {
        let mut tried: Vec<Arc<Replica>> = Vec::new();
        let mut last = None;
        for n in 0..self.attempts {
            let Some(lease) = pool.pick(&tried) else {
                break;
            };
            if n > 0 {
                // Spaces retries that land on the same replica (when no other is left).
                tokio::time::sleep(Duration::from_millis(100 << n.min(4))).await;
            }
            let replica = lease.replica().clone();
            let span = info_span!("attempt", replica = replica.uri(), attempt = n + 1);
            let outcome = tokio::time::timeout(timeout, attempt(replica.channel(), n))
                .instrument(span)
                .await;
            drop(lease);
            match outcome {
                Err(_) => {
                    return Err(Error::StageDeadline {
                        stage,
                        after: timeout,
                    });
                }
                Ok(Ok(value)) => {
                    pool.mark_up(&replica);
                    return Ok(value);
                }
                Ok(Err(AttemptError::Protocol(message))) => {
                    return Err(Error::StageProtocol { stage, message });
                }
                Ok(Err(AttemptError::Rpc(status))) => {
                    if status.code() == Code::Unavailable || broken_transport(&status) {
                        pool.mark_down(&replica);
                    }
                    if !retryable(&status) {
                        return Err(Error::Stage { stage, status });
                    }
                    warn!(
                        stage = pool.stage(),
                        replica = replica.uri(),
                        attempt = n + 1,
                        code = ?status.code(),
                        message = status.message(),
                        "stage call failed; retrying on another replica"
                    );
                    tried.push(replica);
                    last = Some(status);
                }
            }
        }
        let status = last.unwrap_or_else(|| {
            Status::unavailable(format!(
                "no {} replica is configured or resolved",
                pool.stage()
            ))
        });
        Err(Error::Stage { stage, status })
    }

    async fn probe(&self, replica: &Replica, service: &str) -> bool {
        let check = |service: &str| {
            let mut client = HealthClient::new(replica.channel());
            let mut request = Request::new(HealthCheckRequest {
                service: service.to_string(),
            });
            request.set_timeout(self.probe_timeout);
            tokio::time::timeout(
                self.probe_timeout,
                async move { client.check(request).await },
            )
        };
        let answer = match check(service).await {
            // A stage that reports only the whole server's status.
            Ok(Err(status)) if status.code() == Code::NotFound => check("").await,
            other => other,
        };
        match answer {
            Ok(Ok(response)) => response.get_ref().status == ServingStatus::Serving as i32,
            // A stage without a health service is judged by having answered at all.
            Ok(Err(status)) => status.code() == Code::Unimplemented,
            Err(_) => false,
        }
    }
}

/// A client span per stage call, whose context travels as `traceparent`: the stage's server span
/// joins the job's trace.
fn traced(channel: Channel) -> GrpcClientService<Channel> {
    GrpcClientLayer.layer(channel)
}

fn request_with_timeout<T>(message: T, timeout: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(timeout);
    request
}

impl Stages for Arc<GrpcStages> {
    async fn encode(&self, prompt: &str, allow_empty: bool) -> Result<EncodedPrompt> {
        let timeout = self.text_encoder_timeout;
        self.call(
            &self.text_encoder,
            Stage::TextEncode,
            timeout,
            |channel, _| {
                let request = EncodeRequest {
                    prompt: prompt.to_string(),
                    allow_empty,
                };
                async move {
                    let mut client = TextEncoderClient::new(traced(channel))
                        .max_decoding_message_size(MAX_MESSAGE_BYTES)
                        .max_encoding_message_size(MAX_MESSAGE_BYTES);
                    let mut stream = client
                        .encode(request_with_timeout(request, timeout))
                        .await?
                        .into_inner();
                    let mut info = None;
                    let mut assembler = TensorAssembler::named("context");
                    let mut context = None;
                    while let Some(message) = stream.message().await? {
                        match message.kind {
                            Some(encode_response::Kind::Info(i)) => info = Some(i),
                            Some(encode_response::Kind::Context(chunk)) => {
                                if context.is_some() {
                                    return Err(protocol("a second context tensor"));
                                }
                                context = assembler.push(chunk).map_err(malformed)?;
                            }
                            None => return Err(protocol("an empty EncodeResponse")),
                        }
                    }
                    assembler.finish().map_err(malformed)?;
                    let context = context.ok_or_else(|| protocol("no context tensor"))?;
                    let info = info.ok_or_else(|| protocol("no EncodeInfo"))?;
                    Ok(EncodedPrompt {
                        context,
                        tokens: info.tokens,
                        truncated: info.truncated,
                    })
                }
            },
        )
        .await
    }

    async fn denoise(
        &self,
        input: &DenoiseInput,
        updates: &mpsc::Sender<DenoiseUpdate>,
        latents: &LatentLog,
    ) -> Result<()> {
        let timeout = self.denoiser_timeout;
        self.call(
            &self.denoiser,
            Stage::Denoise,
            timeout,
            |channel, n| async move {
                if n > 0 {
                    // The receiver is gone only when the job is ending; nothing to report then.
                    let _ = updates.send(DenoiseUpdate::Restarted).await;
                }
                let (tx, rx) = mpsc::channel(4);
                // The setup goes out at once, the contexts once the prompts are encoded; without
                // them (the job failed) the stream ends and the job drops this call.
                let feed = async move {
                    let wrap = |kind| turbine_proto::v1::DenoiseInput { kind: Some(kind) };
                    if tx
                        .send(wrap(denoise_input::Kind::Setup(input.setup.clone())))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    let Some(prompts) = input.prompts().await else {
                        return;
                    };
                    for chunk in context_chunks(&prompts) {
                        if tx
                            .send(wrap(denoise_input::Kind::Context(chunk)))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                };
                let read = async {
                    let mut client = DenoiserClient::new(traced(channel))
                        .max_decoding_message_size(MAX_MESSAGE_BYTES)
                        .max_encoding_message_size(MAX_MESSAGE_BYTES);
                    let stream = client
                        .denoise(request_with_timeout(ReceiverStream::new(rx), timeout))
                        .await?;
                    read_denoise_events(stream.into_inner(), input.video, updates, latents).await
                };
                while_feeding(feed, read).await
            },
        )
        .await
    }

    async fn decode(
        &self,
        video: VideoSize,
        latents: &LatentLog,
        frames: &mpsc::Sender<DecodedFrames>,
    ) -> Result<()> {
        let timeout = self.vae_timeout;
        self.call(
            &self.vae,
            Stage::VaeDecode,
            timeout,
            |channel, _| async move {
                let (tx, rx) = mpsc::channel::<TensorChunk>(4);
                // Latent frames go out as they arrive from the denoiser; closing the request stream
                // after the last one lets the VAE flush its final frames.
                let feed = async move {
                    for i in 0..latents.expected() {
                        let Some(frame) = latents.get(i).await else {
                            return;
                        };
                        for chunk in frame.chunks("latent_frame") {
                            if tx.send(chunk).await.is_err() {
                                return;
                            }
                        }
                    }
                };
                let read = async {
                    let mut client = VaeClient::new(traced(channel))
                        .max_decoding_message_size(MAX_MESSAGE_BYTES)
                        .max_encoding_message_size(MAX_MESSAGE_BYTES);
                    let mut stream = client
                        .decode(request_with_timeout(ReceiverStream::new(rx), timeout))
                        .await?
                        .into_inner();
                    let mut assembler = TensorAssembler::named("frames");
                    let mut first_frame = None;
                    let mut decoded = 0u32;
                    while let Some(message) = stream.message().await? {
                        let chunk = message
                            .frames
                            .ok_or_else(|| protocol("DecodedFrames without frames"))?;
                        first_frame.get_or_insert(message.first_frame);
                        let Some(tensor) = assembler.push(chunk).map_err(malformed)? else {
                            continue;
                        };
                        let n = check_video_frames(&tensor, video)?;
                        let first = first_frame.take().unwrap_or_default();
                        decoded = decoded.max(first + n);
                        let _ = frames
                            .send(DecodedFrames {
                                first_frame: first,
                                frames: tensor,
                            })
                            .await;
                    }
                    assembler.finish().map_err(malformed)?;
                    if decoded != video.frames {
                        return Err(protocol(format!(
                            "the stream ended after {decoded} of {} frames",
                            video.frames
                        )));
                    }
                    Ok(())
                };
                while_feeding(feed, read).await
            },
        )
        .await
    }

    async fn ready(&self) -> bool {
        let mut probes = JoinSet::new();
        for (pool, service) in [
            (&self.text_encoder, TEXT_ENCODER_SERVICE),
            (&self.denoiser, DENOISER_SERVICE),
            (&self.vae, VAE_SERVICE),
        ] {
            for replica in pool.replicas().iter() {
                let (this, pool, replica) = (self.clone(), pool.clone(), replica.clone());
                probes.spawn(async move {
                    let serving = this.probe(&replica, service).await;
                    if serving {
                        pool.mark_up(&replica);
                    } else {
                        pool.mark_down(&replica);
                    }
                    (pool.stage(), serving)
                });
            }
        }
        let mut serving = Vec::new();
        while let Some(result) = probes.join_next().await {
            if let Ok((stage, true)) = result {
                serving.push(stage);
            }
        }
        [&self.text_encoder, &self.denoiser, &self.vae]
            .iter()
            .all(|pool| serving.contains(&pool.stage()))
    }
}

/// Runs a streaming call, `call`, while `feed` writes its request stream; the call's answer may
/// end it before the feed is done (an error, a stage that stops reading).
async fn while_feeding<T>(feed: impl Future<Output = ()>, call: impl Future<Output = T>) -> T {
    tokio::pin!(call);
    tokio::select! {
        result = &mut call => return result,
        () = feed => {}
    }
    call.await
}

/// The prompt's context chunks, then the negative prompt's.
fn context_chunks(prompts: &Prompts) -> Vec<TensorChunk> {
    let mut chunks = prompts.context.context.chunks("context");
    if let Some(negative) = &prompts.negative {
        chunks.extend(negative.context.chunks("negative_context"));
    }
    chunks
}

/// A denoise call's answer: step progress and previews to `updates`, every latent frame of the
/// video into `latents`.
async fn read_denoise_events(
    mut stream: Streaming<DenoiseEvent>,
    video: VideoSize,
    updates: &mpsc::Sender<DenoiseUpdate>,
    latents: &LatentLog,
) -> Result<(), AttemptError> {
    let mut assembler = TensorAssembler::named("latent_frame");
    let mut index = 0;
    while let Some(event) = stream.message().await? {
        match event.kind {
            Some(denoise_event::Kind::Progress(p)) => {
                let _ = updates.send(DenoiseUpdate::Step(p)).await;
            }
            Some(denoise_event::Kind::Preview(p)) => {
                let _ = updates.send(DenoiseUpdate::Preview(p)).await;
            }
            Some(denoise_event::Kind::Latent(chunk)) => {
                let Some(frame) = assembler.push(chunk).map_err(malformed)? else {
                    continue;
                };
                check_latent_frame(&frame, video)?;
                if !latents.put(index, frame) {
                    return Err(protocol(format!(
                        "more than the video's {} latent frames",
                        latents.expected()
                    )));
                }
                index += 1;
            }
            None => return Err(protocol("an empty DenoiseEvent")),
        }
    }
    assembler.finish().map_err(malformed)?;
    if index != latents.expected() {
        return Err(protocol(format!(
            "the stream ended after {index} of {} latent frames",
            latents.expected()
        )));
    }
    Ok(())
}

/// `[C, 1, H/8, W/8]` f32.
fn check_latent_frame(frame: &WireTensor, video: VideoSize) -> Result<(), AttemptError> {
    let (h, w) = ((video.height / 8) as usize, (video.width / 8) as usize);
    match frame.shape[..] {
        [_, 1, fh, fw] if (fh, fw) == (h, w) && frame.dtype == Dtype::F32 => Ok(()),
        _ => Err(protocol(format!(
            "latent frame {:?} {:?}, expected f32 [C, 1, {h}, {w}]",
            frame.dtype, frame.shape
        ))),
    }
}

/// `[3, n, H, W]` u8; returns `n`.
fn check_video_frames(frames: &WireTensor, video: VideoSize) -> Result<u32, AttemptError> {
    let (h, w) = (video.height as usize, video.width as usize);
    match frames.shape[..] {
        [3, n, fh, fw] if n > 0 && (fh, fw) == (h, w) && frames.dtype == Dtype::U8 => Ok(n as u32),
        _ => Err(protocol(format!(
            "video frames {:?} {:?}, expected u8 [3, n, {h}, {w}]",
            frames.dtype, frames.shape
        ))),
    }
}

#[cfg(test)]
mod tests;
