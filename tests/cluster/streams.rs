//! Malformed tensor streams sent straight to each stage service (bad offsets, a header that
//! changes mid-tensor, a stream cut short, a wrong dtype or shape) are refused with
//! INVALID_ARGUMENT, and the service serves the next valid call as if nothing had happened.
//!
//! Every case runs, then one assertion lists each case that went wrong, so a run shows every
//! misbehaviour at once.

use std::time::Duration;

use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use turbine_cluster_tests::cluster::health;
use turbine_cluster_tests::{Cluster, ClusterConfig};
use turbine_proto::v1::denoiser_client::DenoiserClient;
use turbine_proto::v1::text_encoder_client::TextEncoderClient;
use turbine_proto::v1::vae_client::VaeClient;
use turbine_proto::v1::{
    DecodedFrames, DenoiseEvent, DenoiseInput, DenoiseSetup, Dtype, EncodeRequest,
    GenerationParams, TensorChunk, denoise_event, denoise_input, encode_response,
};

use crate::{params, rcm};

const CALL_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_MESSAGE: usize = 8 << 20;

/// A whole tensor as it travels.
#[derive(Debug, Clone, PartialEq)]
struct Tensor {
    name: String,
    dtype: Dtype,
    shape: Vec<u64>,
    data: Vec<u8>,
}

impl Tensor {
    fn f32(name: &str, shape: &[u64], values: impl Iterator<Item = f32>) -> Tensor {
        Tensor {
            name: name.into(),
            dtype: Dtype::F32,
            shape: shape.to_vec(),
            data: values.flat_map(f32::to_le_bytes).collect(),
        }
    }

    /// The tensor as `pieces` chunks of (nearly) equal size, each with the full header.
    fn chunks(&self, pieces: usize) -> Vec<TensorChunk> {
        let size = self.data.len().div_ceil(pieces).max(1);
        let mut out: Vec<TensorChunk> = self
            .data
            .chunks(size)
            .scan(0u64, |offset, data| {
                let chunk = TensorChunk {
                    name: self.name.clone(),
                    dtype: self.dtype as i32,
                    shape: self.shape.clone(),
                    offset: *offset,
                    data: data.to_vec().into(),
                };
                *offset += data.len() as u64;
                Some(chunk)
            })
            .collect();
        if out.is_empty() {
            out.push(TensorChunk {
                name: self.name.clone(),
                dtype: self.dtype as i32,
                shape: self.shape.clone(),
                offset: 0,
                data: Default::default(),
            });
        }
        out
    }

    /// The same bytes under another header.
    fn relabelled(&self, dtype: Dtype, shape: &[u64]) -> Tensor {
        Tensor {
            dtype,
            shape: shape.to_vec(),
            ..self.clone()
        }
    }
}

fn assemble(chunks: impl IntoIterator<Item = TensorChunk>) -> Tensor {
    let mut tensor: Option<Tensor> = None;
    for chunk in chunks {
        let t = tensor.get_or_insert_with(|| Tensor {
            name: chunk.name.clone(),
            dtype: chunk.dtype(),
            shape: chunk.shape.clone(),
            data: Vec::new(),
        });
        assert_eq!(chunk.offset, t.data.len() as u64, "chunk offsets");
        t.data.extend_from_slice(&chunk.data);
    }
    tensor.expect("at least one chunk")
}

/// Reads a response stream to its end, or to its error.
async fn drain<T>(
    stream: Result<tonic::Response<tonic::Streaming<T>>, Status>,
) -> Result<Vec<T>, Status> {
    let mut stream = stream?.into_inner();
    let mut all = Vec::new();
    loop {
        match tokio::time::timeout(CALL_TIMEOUT, stream.message()).await {
            Err(_) => return Err(Status::deadline_exceeded("the test's call timeout")),
            Ok(Ok(Some(message))) => all.push(message),
            Ok(Ok(None)) => return Ok(all),
            Ok(Err(status)) => return Err(status),
        }
    }
}

async fn encode(channel: &Channel, request: EncodeRequest) -> Result<Tensor, Status> {
    let mut client = TextEncoderClient::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE);
    let responses = drain(client.encode(request).await).await?;
    Ok(assemble(responses.into_iter().filter_map(
        |r| match r.kind {
            Some(encode_response::Kind::Context(chunk)) => Some(chunk),
            _ => None,
        },
    )))
}

async fn denoise(
    channel: &Channel,
    inputs: Vec<DenoiseInput>,
) -> Result<Vec<DenoiseEvent>, Status> {
    let mut client = DenoiserClient::new(channel.clone())
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    drain(client.denoise(tokio_stream::iter(inputs)).await).await
}

async fn decode(channel: &Channel, chunks: Vec<TensorChunk>) -> Result<Vec<DecodedFrames>, Status> {
    let mut client = VaeClient::new(channel.clone())
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    drain(client.decode(tokio_stream::iter(chunks)).await).await
}

async fn vae_encode(
    channel: &Channel,
    chunks: Vec<TensorChunk>,
) -> Result<Vec<TensorChunk>, Status> {
    let mut client = VaeClient::new(channel.clone())
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    drain(client.encode(tokio_stream::iter(chunks)).await).await
}

/// Checks one refused call: INVALID_ARGUMENT whose message mentions `field`.
fn expect_invalid<T>(
    wrong: &mut Vec<String>,
    service: &str,
    case: &str,
    field: &str,
    result: Result<T, Status>,
) {
    match result {
        Ok(_) => wrong.push(format!("{service}: {case}: accepted")),
        Err(status)
            if status.code() == Code::InvalidArgument && status.message().contains(field) =>
        {
            eprintln!("{service}: {case}: {}", status.message());
        }
        Err(status) => wrong.push(format!(
            "{service}: {case}: {:?} {:?} (expected INVALID_ARGUMENT naming {field:?})",
            status.code(),
            status.message()
        )),
    }
}

fn setup(params: &GenerationParams, seed: u64) -> DenoiseInput {
    DenoiseInput {
        kind: Some(denoise_input::Kind::Setup(DenoiseSetup {
            params: Some(params.clone()),
            seed,
        })),
    }
}

fn context_inputs(chunks: impl IntoIterator<Item = TensorChunk>) -> Vec<DenoiseInput> {
    chunks
        .into_iter()
        .map(|chunk| DenoiseInput {
            kind: Some(denoise_input::Kind::Context(chunk)),
        })
        .collect()
}

/// The latent frames of a denoise answer, reassembled.
fn latent_frames(events: &[DenoiseEvent]) -> Vec<Tensor> {
    let mut frames = Vec::new();
    let mut current: Vec<TensorChunk> = Vec::new();
    for event in events {
        if let Some(denoise_event::Kind::Latent(chunk)) = &event.kind {
            if chunk.offset == 0 && !current.is_empty() {
                frames.push(assemble(std::mem::take(&mut current)));
            }
            current.push(chunk.clone());
        }
    }
    if !current.is_empty() {
        frames.push(assemble(current));
    }
    frames
}

/// `n` latent frames `[16, 1, h, w]` of smooth made-up values.
fn latents(n: usize, (h, w): (u64, u64)) -> Vec<Tensor> {
    (0..n)
        .map(|f| {
            let len = 16 * h * w;
            Tensor::f32(
                "latent_frame",
                &[16, 1, h, w],
                (0..len).map(move |i| (i as f32 * 0.37 + f as f32).sin() * 0.8),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_tensor_streams_are_refused_and_each_stage_keeps_serving() {
    let cluster = Cluster::start(ClusterConfig::default()).await;
    let text = cluster.text_encoder.channel().await;
    let denoiser = cluster.denoisers[0].channel().await;
    let vae = cluster.vae.channel().await;
    let mut wrong: Vec<String> = Vec::new();

    // ---- text encoder: its one input is the prompt ----
    let valid_prompt = EncodeRequest {
        prompt: "a lantern on a wooden table".into(),
        allow_empty: false,
    };
    let context = encode(&text, valid_prompt.clone())
        .await
        .expect("a valid Encode call");
    assert_eq!(
        (context.name.as_str(), context.dtype, context.shape.len()),
        ("context", Dtype::F32, 2),
        "{:?}",
        (&context.name, context.dtype, &context.shape)
    );
    expect_invalid(
        &mut wrong,
        "text-encoder",
        "empty prompt without allow_empty",
        "prompt",
        encode(
            &text,
            EncodeRequest {
                prompt: "  ".into(),
                allow_empty: false,
            },
        )
        .await,
    );
    match encode(&text, valid_prompt.clone()).await {
        Ok(again) if again == context => {}
        Ok(_) => wrong.push("text-encoder: the same prompt encoded differently".into()),
        Err(status) => wrong.push(format!("text-encoder: valid call after: {status:?}")),
    }

    // ---- denoiser: a setup, then the context's chunks ----
    let (text_len, dim) = (context.shape[0], context.shape[1]);
    let request = GenerationParams {
        sampler: rcm(1),
        ..params("a lantern on a wooden table", (64, 48, 9), 1)
    };
    let pieces = context.chunks(4);
    let with_setup = |chunks: Vec<TensorChunk>| {
        let mut inputs = vec![setup(&request, 1)];
        inputs.extend(context_inputs(chunks));
        inputs
    };
    let changed = |i: usize, edit: &dyn Fn(&mut TensorChunk)| {
        let mut chunks = pieces.clone();
        edit(&mut chunks[i]);
        chunks
    };
    let half_dim = context.relabelled(Dtype::F32, &[text_len, dim / 2]);
    let half_dim = Tensor {
        data: half_dim.data[..half_dim.data.len() / 2].to_vec(),
        ..half_dim
    };
    let denoise_cases: Vec<(&str, &str, Vec<DenoiseInput>)> = vec![
        (
            "first chunk at offset 4",
            "context",
            with_setup(changed(0, &|c| c.offset = 4)),
        ),
        (
            "a chunk skipped (offset gap)",
            "context",
            with_setup(vec![
                pieces[0].clone(),
                pieces[2].clone(),
                pieces[3].clone(),
            ]),
        ),
        (
            "shape changes mid-stream",
            "context",
            with_setup(changed(1, &|c| c.shape = vec![text_len, dim + 1])),
        ),
        (
            "dtype changes mid-stream",
            "context",
            with_setup(changed(2, &|c| c.dtype = Dtype::Bf16 as i32)),
        ),
        (
            "name changes mid-stream",
            "context",
            with_setup(changed(1, &|c| c.name = "contexts".into())),
        ),
        (
            "stream ends after half the context",
            "context",
            with_setup(pieces[..2].to_vec()),
        ),
        (
            "last chunk overruns the shape",
            "context",
            with_setup(changed(3, &|c| {
                let mut data = c.data.to_vec();
                data.extend_from_slice(&[0; 8]);
                c.data = data.into();
            })),
        ),
        (
            "u8 context",
            "context",
            with_setup(
                context
                    .relabelled(Dtype::U8, &[text_len, dim * 4])
                    .chunks(4),
            ),
        ),
        (
            "unknown dtype",
            "context",
            with_setup(changed(0, &|c| c.dtype = 99)),
        ),
        (
            "context of the wrong width",
            "context",
            with_setup(half_dim.chunks(2)),
        ),
        (
            "context of rank 1",
            "context",
            with_setup(context.relabelled(Dtype::F32, &[text_len * dim]).chunks(4)),
        ),
        (
            "negative context for an unguided sampler",
            "negative_context",
            with_setup(
                Tensor {
                    name: "negative_context".into(),
                    ..context.clone()
                }
                .chunks(1),
            ),
        ),
        ("no setup first", "setup", context_inputs(pieces.clone())),
        ("empty stream", "setup", Vec::new()),
    ];
    let valid_denoise = with_setup(pieces.clone());
    let expected = denoise(&denoiser, valid_denoise.clone())
        .await
        .expect("a valid Denoise call");
    let frames = latent_frames(&expected);
    assert_eq!(frames.len(), 3, "9 frames are 3 latent frames");
    assert!(
        frames
            .iter()
            .all(|f| f.name == "latent_frame" && f.dtype == Dtype::F32 && f.shape == [16, 1, 6, 8]),
        "latent frames {:?}",
        frames.iter().map(|f| &f.shape).collect::<Vec<_>>()
    );
    for (case, field, inputs) in denoise_cases {
        expect_invalid(
            &mut wrong,
            "denoiser",
            case,
            field,
            denoise(&denoiser, inputs).await,
        );
        match denoise(&denoiser, valid_denoise.clone()).await {
            Ok(events) if latent_frames(&events) == frames => {}
            Ok(_) => wrong.push(format!("denoiser: after {case}: different latents")),
            Err(status) => wrong.push(format!("denoiser: valid call after {case}: {status:?}")),
        }
    }

    // ---- VAE decode: latent frames [16, 1, 6, 8] f32, in order ----
    let latent = latents(3, (6, 8));
    let valid_latents: Vec<TensorChunk> = latent.iter().flat_map(|t| t.chunks(2)).collect();
    let with_frame = |i: usize, edit: &dyn Fn(&mut TensorChunk)| {
        let mut chunks = valid_latents.clone();
        edit(&mut chunks[i]);
        chunks
    };
    let decode_cases: Vec<(&str, Vec<TensorChunk>)> = vec![
        ("first chunk at offset 8", with_frame(0, &|c| c.offset = 8)),
        (
            "second frame's chunk at a wrong offset",
            with_frame(3, &|c| c.offset += 4),
        ),
        (
            "shape changes mid-frame",
            with_frame(1, &|c| c.shape = vec![16, 1, 6, 9]),
        ),
        (
            "dtype changes mid-frame",
            with_frame(1, &|c| c.dtype = Dtype::F16 as i32),
        ),
        ("stream ends mid-frame", valid_latents[..3].to_vec()),
        (
            "u8 latent frame",
            latent[0].relabelled(Dtype::U8, &[16, 1, 6, 32]).chunks(2),
        ),
        (
            "8 channels",
            Tensor::f32(
                "latent_frame",
                &[8, 1, 6, 8],
                (0..384).map(|i| i as f32 * 1e-3),
            )
            .chunks(1),
        ),
        (
            "two latent frames in one tensor",
            Tensor::f32(
                "latent_frame",
                &[16, 2, 6, 8],
                (0..1536).map(|i| i as f32 * 1e-3),
            )
            .chunks(1),
        ),
        (
            "rank 3",
            latent[0].relabelled(Dtype::F32, &[16, 6, 8]).chunks(1),
        ),
        (
            "frame size changes between frames",
            latent[0]
                .chunks(1)
                .into_iter()
                .chain(
                    Tensor::f32(
                        "latent_frame",
                        &[16, 1, 8, 8],
                        (0..1024).map(|i| i as f32 * 1e-3),
                    )
                    .chunks(1),
                )
                .collect(),
        ),
        (
            "misnamed chunks",
            latent[0]
                .relabelled(Dtype::F32, &[16, 1, 6, 8])
                .chunks(1)
                .into_iter()
                .map(|c| TensorChunk {
                    name: "latents".into(),
                    ..c
                })
                .collect(),
        ),
        ("no latent frame", Vec::new()),
    ];
    let expected_video = decode(&vae, valid_latents.clone())
        .await
        .expect("a valid Decode call");
    let decoded: u32 = expected_video
        .iter()
        .map(|d| d.frames.as_ref().map_or(0, |f| f.shape[1] as u32))
        .sum();
    assert_eq!(decoded, 9, "3 latent frames decode to 9 frames");
    for (case, chunks) in decode_cases {
        expect_invalid(
            &mut wrong,
            "vae decode",
            case,
            "latent_frame",
            decode(&vae, chunks).await,
        );
        match decode(&vae, valid_latents.clone()).await {
            Ok(video) if video == expected_video => {}
            Ok(_) => wrong.push(format!("vae decode: after {case}: different frames")),
            Err(status) => wrong.push(format!("vae decode: valid call after {case}: {status:?}")),
        }
    }

    // ---- VAE encode: a u8 video [3, 1+4k, H, W] ----
    let video = Tensor {
        name: "video".into(),
        dtype: Dtype::U8,
        shape: vec![3, 5, 48, 64],
        data: (0..3 * 5 * 48 * 64).map(|i| (i * 7 % 251) as u8).collect(),
    };
    let valid_video = video.chunks(3);
    let encode_cases: Vec<(&str, Vec<TensorChunk>)> = vec![
        ("first chunk at offset 1", {
            let mut c = valid_video.clone();
            c[0].offset = 1;
            c
        }),
        ("shape changes mid-stream", {
            let mut c = valid_video.clone();
            c[2].shape = vec![3, 5, 48, 48];
            c
        }),
        ("stream ends early", valid_video[..2].to_vec()),
        (
            "f32 video",
            Tensor::f32(
                "video",
                &[3, 5, 48, 64],
                (0..46080).map(|i| i as f32 / 46080.0),
            )
            .chunks(1),
        ),
        (
            "4 frames (not 1+4k)",
            Tensor {
                shape: vec![3, 4, 48, 64],
                data: video.data[..3 * 4 * 48 * 64].to_vec(),
                ..video.clone()
            }
            .chunks(1),
        ),
        (
            "4 channels",
            Tensor {
                shape: vec![4, 5, 48, 48],
                data: video.data[..4 * 5 * 48 * 48].to_vec(),
                ..video.clone()
            }
            .chunks(1),
        ),
        (
            "height not a multiple of 8",
            Tensor {
                shape: vec![3, 5, 44, 64],
                data: video.data[..3 * 5 * 44 * 64].to_vec(),
                ..video.clone()
            }
            .chunks(1),
        ),
        ("two tensors in the stream", {
            let mut c = video.chunks(1);
            c.extend(video.chunks(1));
            c
        }),
        ("no tensor", Vec::new()),
    ];
    let expected_latents = vae_encode(&vae, valid_video.clone())
        .await
        .expect("a valid Encode call");
    let encoded = assemble(expected_latents.clone());
    assert_eq!(
        (
            encoded.name.as_str(),
            encoded.dtype,
            encoded.shape.as_slice()
        ),
        ("latents", Dtype::F32, [16u64, 2, 6, 8].as_slice())
    );
    for (case, chunks) in encode_cases {
        expect_invalid(
            &mut wrong,
            "vae encode",
            case,
            "video",
            vae_encode(&vae, chunks).await,
        );
        match vae_encode(&vae, valid_video.clone()).await {
            Ok(latents) if latents == expected_latents => {}
            Ok(_) => wrong.push(format!("vae encode: after {case}: different latents")),
            Err(status) => wrong.push(format!("vae encode: valid call after {case}: {status:?}")),
        }
    }

    for (channel, service) in [
        (&text, "turbine.v1.TextEncoder"),
        (&denoiser, "turbine.v1.Denoiser"),
        (&vae, "turbine.v1.Vae"),
    ] {
        let status = health(channel, service).await;
        if status != Some(ServingStatus::Serving) {
            wrong.push(format!(
                "{service}: health {status:?} after the malformed calls"
            ));
        }
    }
    for service in [&cluster.text_encoder, &cluster.denoisers[0], &cluster.vae] {
        if let Some(status) = service.process.exited() {
            wrong.push(format!("{} exited: {status}", service.process.name()));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} stage calls misbehaved:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
