//! The three stage services chained over gRPC the way the orchestrator chains them (chunks
//! forwarded as they arrive, frames as u8) write the same MP4 bytes as the embedded pipeline of
//! `turbine generate` with the same seed.

use std::time::Duration;

use tokio_stream::StreamExt;
use tonic::transport::Channel;
use turbine_denoiser::DenoiserService;
use turbine_media::{FrameChunk, Mp4Config, Mp4Writer};
use turbine_pipeline::rgb::from_u8;
use turbine_pipeline::{FrameSink, ModelSource, Pipeline};
use turbine_proto::v1::denoiser_client::DenoiserClient;
use turbine_proto::v1::text_encoder_client::TextEncoderClient;
use turbine_proto::v1::vae_client::VaeClient;
use turbine_proto::v1::{
    DenoiseInput, DenoiseSetup, EncodeRequest, FlowSampler, FlowSolver, GenerationParams,
    RcmSampler, TensorChunk, denoise_event, denoise_input, encode_response,
    generation_params::Sampler,
};
use turbine_rpc::params::validate;
use turbine_rpc::testing::{self, wait_serving};
use turbine_rpc::worker::Worker;
use turbine_telemetry::Metrics;
use turbine_tensor::{CpuBackend, HostTensor};
use turbine_text_encoder::TextEncoderService;
use turbine_vae::VaeService;

const READY: Duration = Duration::from_secs(60);

struct Mp4Sink(Mp4Writer<Vec<u8>>);

impl FrameSink for Mp4Sink {
    fn push(
        &mut self,
        frames: &HostTensor,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let [c, n, h, w] = frames.shape[..] else {
            return Err("frames must be [3, n, H, W]".into());
        };
        Ok(self
            .0
            .push(&FrameChunk::new(&frames.to_f32_vec(), [c, n, h, w])?)?)
    }
}

fn embedded_mp4(params: &GenerationParams, seed: u64) -> Vec<u8> {
    let request = validate(params, seed).unwrap().request;
    let mut pipeline = Pipeline::load(CpuBackend, &ModelSource::Tiny).unwrap();
    let writer = Mp4Writer::new(
        Vec::new(),
        params.width as usize,
        params.height as usize,
        Mp4Config::default(),
    )
    .unwrap();
    let mut sink = Mp4Sink(writer);
    pipeline.generate(&request, &mut |_| {}, &mut sink).unwrap();
    sink.0.finish_into_sink().unwrap().1
}

/// The context chunks of `prompt`, renamed for the denoiser.
async fn encode(
    channel: &Channel,
    prompt: &str,
    allow_empty: bool,
    name: &str,
) -> Vec<TensorChunk> {
    let mut responses = TextEncoderClient::new(channel.clone())
        .encode(EncodeRequest {
            prompt: prompt.into(),
            allow_empty,
        })
        .await
        .unwrap()
        .into_inner();
    let mut chunks = Vec::new();
    while let Some(response) = responses.message().await.unwrap() {
        if let Some(encode_response::Kind::Context(chunk)) = response.kind {
            chunks.push(TensorChunk {
                name: name.into(),
                ..chunk
            });
        }
    }
    chunks
}

async fn services_mp4(channels: &[Channel; 3], params: &GenerationParams, seed: u64) -> Vec<u8> {
    let [text, denoiser, vae] = channels;
    let mut inputs = vec![DenoiseInput {
        kind: Some(denoise_input::Kind::Setup(DenoiseSetup {
            params: Some(params.clone()),
            seed,
        })),
    }];
    let mut contexts = encode(text, &params.prompt, false, "context").await;
    if validate(params, seed)
        .unwrap()
        .request
        .uses_negative_prompt()
    {
        contexts.extend(encode(text, &params.negative_prompt, true, "negative_context").await);
    }
    inputs.extend(contexts.into_iter().map(|c| DenoiseInput {
        kind: Some(denoise_input::Kind::Context(c)),
    }));
    let events = DenoiserClient::new(denoiser.clone())
        .denoise(tokio_stream::iter(inputs))
        .await
        .unwrap()
        .into_inner();
    // Latent chunks go to the VAE as they arrive; progress events stay behind.
    let latents = events.filter_map(|event| match event.unwrap().kind {
        Some(denoise_event::Kind::Latent(chunk)) => Some(chunk),
        Some(denoise_event::Kind::Progress(_) | denoise_event::Kind::Preview(_)) | None => None,
    });
    let mut frames = VaeClient::new(vae.clone())
        .decode(latents)
        .await
        .unwrap()
        .into_inner();
    let (w, h) = (params.width as usize, params.height as usize);
    let mut writer = Mp4Writer::new(Vec::new(), w, h, Mp4Config::default()).unwrap();
    let mut pending = Vec::new();
    while let Some(decoded) = frames.message().await.unwrap() {
        let chunk = decoded.frames.unwrap();
        pending.extend_from_slice(&chunk.data);
        let shape: Vec<usize> = chunk.shape.iter().map(|&d| d as usize).collect();
        if pending.len() == shape.iter().product::<usize>() {
            let values: Vec<f32> = pending.drain(..).map(from_u8).collect();
            let [c, n, h, w] = shape[..] else {
                panic!("frames shape {shape:?}");
            };
            writer
                .push(&FrameChunk::new(&values, [c, n, h, w]).unwrap())
                .unwrap();
        }
    }
    writer.finish_into_sink().unwrap().1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_path_writes_the_same_mp4_as_the_embedded_pipeline() {
    let text = testing::start(
        TextEncoderService::new(
            Worker::spawn("text-encoder", 0, || {
                turbine_text_encoder::load(CpuBackend, &ModelSource::Tiny)
            }),
            Metrics::new(),
        )
        .into_service(),
    )
    .await;
    let denoiser = testing::start(
        DenoiserService::new(
            Worker::spawn("denoiser", 0, || {
                turbine_denoiser::load(CpuBackend, &ModelSource::Tiny, None, &[])
            }),
            Metrics::new(),
        )
        .into_service(),
    )
    .await;
    let vae = testing::start(
        VaeService::new(
            Worker::spawn("vae", 0, || {
                turbine_vae::load(CpuBackend, &ModelSource::Tiny, None)
            }),
            Metrics::new(),
        )
        .into_service(),
    )
    .await;
    let channels = [
        text.channel().await,
        denoiser.channel().await,
        vae.channel().await,
    ];
    for (channel, name) in channels.iter().zip([
        turbine_text_encoder::SERVICE_NAME,
        turbine_denoiser::SERVICE_NAME,
        turbine_vae::SERVICE_NAME,
    ]) {
        wait_serving(channel, name, READY).await;
    }

    let base = GenerationParams {
        prompt: "a lighthouse on a cliff at dusk".into(),
        negative_prompt: "blurry, low quality".into(),
        width: 64,
        height: 48,
        frames: 13,
        ..GenerationParams::default()
    };
    let cases = [
        (
            GenerationParams {
                sampler: Some(Sampler::Rcm(RcmSampler::default())),
                ..base.clone()
            },
            3,
        ),
        (
            GenerationParams {
                frames: 9,
                sampler: Some(Sampler::Flow(FlowSampler {
                    steps: 3,
                    solver: FlowSolver::Unipc as i32,
                    ..FlowSampler::default()
                })),
                ..base.clone()
            },
            5,
        ),
    ];
    for (params, seed) in cases {
        let served = services_mp4(&channels, &params, seed).await;
        let embedded = embedded_mp4(&params, seed);
        assert!(served == embedded, "{params:?}: the MP4 bytes differ");
    }
    for server in [text, denoiser, vae] {
        server.stop().await.unwrap();
    }
}
