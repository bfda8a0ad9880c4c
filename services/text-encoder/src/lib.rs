//! `turbine.v1.TextEncoder`: prompts to the DiT's text context.
//!
//! The context travels as f32 `[tokens, d_model]`, the prompt's rows only (16 KiB a token for
//! umT5-XXL, in 1 MiB chunks; the denoiser pads it to 512 rows as Wan does): the CPU backend
//! computes in f32, so f32 on the wire is exactly what the embedded pipeline hands the DiT
//! (through host memory there too), and the services path renders the same video bytes as
//! `turbine generate`. (bf16 would halve the transfer, but a CPU-encoded context would then reach
//! the DiT rounded.)

use std::time::Instant;

use tonic::service::Routes;
use tonic::{Request, Response, Status};
use turbine_pipeline::{ModelSource, TextStage};
use turbine_proto::v1::text_encoder_server::{TextEncoder, TextEncoderServer};
use turbine_proto::v1::{EncodeInfo, EncodeRequest, EncodeResponse, encode_response};
use turbine_rpc::server::{MAX_MESSAGE_BYTES, Service};
use turbine_rpc::stream::ResponseStream;
use turbine_rpc::tensor::WireTensor;
use turbine_rpc::worker::Worker;
use turbine_telemetry::{Metrics, Stage};
use turbine_tensor::Backend;

/// The fully qualified service name, for health checks.
pub const SERVICE_NAME: &str = turbine_proto::v1::text_encoder_server::SERVICE_NAME;

/// Response messages buffered ahead of the client: one info plus the chunks of one context.
const BUFFER: usize = 16;

pub type Model<B> = TextStage<B>;

/// Loads the text stage onto `backend` and warms it up (the worker's load step).
pub fn load<B: Backend>(backend: B, source: &ModelSource) -> turbine_rpc::Result<Model<B>> {
    let stage = TextStage::load(backend, source)?;
    stage.warm_up()?;
    Ok(stage)
}

#[derive(Clone)]
pub struct TextEncoderService<B: Backend> {
    worker: Worker<Model<B>>,
    metrics: Metrics,
}

impl<B: Backend> TextEncoderService<B> {
    pub fn new(worker: Worker<Model<B>>, metrics: Metrics) -> Self {
        Self { worker, metrics }
    }

    /// The service with its message limits, health name and readiness, ready to serve.
    pub fn into_service(self) -> Service {
        let worker = self.worker.clone();
        let server = TextEncoderServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Service::stage(SERVICE_NAME, Routes::new(server), &worker)
    }
}

#[tonic::async_trait]
impl<B: Backend> TextEncoder for TextEncoderService<B> {
    type EncodeStream = ResponseStream<EncodeResponse>;

    async fn encode(
        &self,
        request: Request<EncodeRequest>,
    ) -> Result<Response<Self::EncodeStream>, Status> {
        let EncodeRequest {
            prompt,
            allow_empty,
        } = request.into_inner();
        let metrics = self.metrics.clone();
        let stream = self
            .worker
            .stream(BUFFER, move |stage: &mut Model<B>, sink| {
                let started = Instant::now();
                let encoded = stage.encode("prompt", &prompt, allow_empty)?;
                let context = stage
                    .backend()
                    .download(&encoded.context)
                    .map_err(turbine_pipeline::Error::from)?;
                metrics.observe_stage(Stage::TextEncode, started.elapsed());
                let info = EncodeInfo {
                    tokens: encoded.tokens as u32,
                    truncated: encoded.truncated,
                };
                sink.send(EncodeResponse {
                    kind: Some(encode_response::Kind::Info(info)),
                })?;
                for chunk in WireTensor::from_host(&context)?.chunks("context") {
                    sink.send(EncodeResponse {
                        kind: Some(encode_response::Kind::Context(chunk)),
                    })?;
                }
                Ok(())
            })?;
        Ok(Response::new(stream))
    }
}
