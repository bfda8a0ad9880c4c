//! The VAE over real gRPC on loopback: readiness, reflection, decode and encode parity with the
//! in-process stage, the shared 8-bit formula, malformed streams (frames decoded before a bad
//! latent frame still arrive), and the binary's SIGTERM drain.

use std::time::Duration;

use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_health::ServingStatus;
use turbine_media::FrameChunk;
use turbine_pipeline::rgb::{dequantize_frames, quantize_frames};
use turbine_pipeline::{DecodeStage, ModelSource, latent_frames};
use turbine_proto::v1::vae_client::VaeClient;
use turbine_proto::v1::{DecodedFrames, TensorChunk};
use turbine_rpc::tensor::{TensorAssembler, WireTensor};
use turbine_rpc::testing::{self, Binary, health, reflected_services, wait_serving};
use turbine_rpc::worker::Worker;
use turbine_samplers::{NoiseSource, SeededNoise};
use turbine_telemetry::Metrics;
use turbine_tensor::{CpuBackend, HostTensor};
use turbine_vae::{SERVICE_NAME, VaeService, load};

const READY: Duration = Duration::from_secs(60);

/// Seeded normal latents `[16, t, h, w]`, shaped like the denoiser's output.
fn latents(t: usize, h: usize, w: usize, seed: u64) -> HostTensor {
    let shape = [16, t, h, w];
    HostTensor::from_f32(shape, SeededNoise::new(seed).draw(&shape).unwrap()).unwrap()
}

fn frame_chunks(latents: &HostTensor) -> Vec<TensorChunk> {
    latent_frames(latents)
        .unwrap()
        .flat_map(|f| {
            WireTensor::from_host(&f.unwrap())
                .unwrap()
                .chunks("latent_frame")
        })
        .collect()
}

/// `(first_frame, shape, u8 data)` per decoded chunk of frames.
async fn decode(
    channel: &Channel,
    chunks: Vec<TensorChunk>,
) -> Result<Vec<(u32, Vec<usize>, Vec<u8>)>, Status> {
    let mut responses = VaeClient::new(channel.clone())
        .decode(tokio_stream::iter(chunks))
        .await?
        .into_inner();
    let mut out = Vec::new();
    let mut assembler = TensorAssembler::named("frames");
    while let Some(DecodedFrames {
        first_frame,
        frames,
    }) = responses.message().await?
    {
        if let Some(t) = assembler
            .push(frames.expect("frames"))
            .map_err(Status::from)?
        {
            out.push((first_frame, t.shape, t.data.to_vec()));
        }
    }
    Ok(out)
}

async fn encode(channel: &Channel, chunks: Vec<TensorChunk>) -> Result<HostTensor, Status> {
    let mut responses = VaeClient::new(channel.clone())
        .encode(tokio_stream::iter(chunks))
        .await?
        .into_inner();
    let mut assembler = TensorAssembler::named("latents");
    let mut latents = None;
    while let Some(chunk) = responses.message().await? {
        if let Some(t) = assembler.push(chunk).map_err(Status::from)? {
            latents = Some(t.to_host("latents").map_err(Status::from)?);
        }
    }
    Ok(latents.expect("latents"))
}

/// A seeded u8 video `[3, f, h, w]`.
fn video(f: usize, h: usize, w: usize) -> (Vec<usize>, Vec<u8>) {
    let n = 3 * f * h * w;
    let data = (0..n).map(|i| ((i * 7919 + i / 97) % 256) as u8).collect();
    (vec![3, f, h, w], data)
}

async fn serving() -> (testing::Running, Channel) {
    let worker = Worker::spawn("vae", 0, || load(CpuBackend, &ModelSource::Tiny, None));
    let server = testing::start(VaeService::new(worker, Metrics::new()).into_service()).await;
    let channel = server.channel().await;
    wait_serving(&channel, SERVICE_NAME, READY).await;
    (server, channel)
}

#[tokio::test]
async fn health_turns_serving_after_warm_up_and_reflection_lists_the_service() {
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let worker = Worker::spawn("vae", 0, move || {
        gate.recv().expect("released");
        load(CpuBackend, &ModelSource::Tiny, None)
    });
    let server = testing::start(VaeService::new(worker, Metrics::new()).into_service()).await;
    let channel = server.channel().await;
    for service in [SERVICE_NAME, ""] {
        assert_eq!(health(&channel, service).await, ServingStatus::NotServing);
    }
    let loading = decode(&channel, frame_chunks(&latents(1, 2, 2, 1)))
        .await
        .unwrap_err();
    assert_eq!(loading.code(), Code::Unavailable, "{loading:?}");

    release.send(()).unwrap();
    wait_serving(&channel, SERVICE_NAME, READY).await;
    let (v1, v1alpha) = reflected_services(&channel).await;
    for list in [&v1, &v1alpha] {
        assert!(list.iter().any(|s| s == SERVICE_NAME), "{list:?}");
        assert!(
            !list.iter().any(|s| s == "turbine.v1.TextEncoder"),
            "{list:?}"
        );
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn decoded_frames_equal_the_in_process_decode() {
    let (server, channel) = serving().await;
    let stage = DecodeStage::load(CpuBackend, &ModelSource::Tiny).unwrap();
    let z = latents(3, 4, 6, 9);
    let got = decode(&channel, frame_chunks(&z)).await.unwrap();
    let mut session = stage.session();
    let expected: Vec<_> = latent_frames(&z)
        .unwrap()
        .map(|f| session.push(&f.unwrap()).unwrap())
        .collect();
    let firsts: Vec<u32> = got.iter().map(|(first, _, _)| *first).collect();
    assert_eq!(firsts, [0, 1, 5]);
    for ((_, shape, data), frames) in got.iter().zip(&expected) {
        assert_eq!(shape, &frames.shape);
        assert!(data == &quantize_frames(frames).unwrap(), "frames differ");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn encoded_latents_equal_the_in_process_encode() {
    let (server, channel) = serving().await;
    let stage = DecodeStage::load(CpuBackend, &ModelSource::Tiny).unwrap();
    let (shape, data) = video(5, 16, 24);
    let wire = WireTensor::from_u8(shape.clone(), data.clone());
    let got = encode(&channel, wire.chunks("video")).await.unwrap();
    let expected = stage
        .encode(&dequantize_frames(&shape, &data).unwrap())
        .unwrap();
    assert_eq!(got.shape, [16, 2, 2, 3]);
    assert_eq!(got, expected);
    server.stop().await.unwrap();
}

#[test]
fn frames_quantize_exactly_as_the_video_writers_do() {
    // Between codes, exact halves, out of range, NaN.
    let values: Vec<f32> = (0..3 * 2 * 3 * 4)
        .map(|i| match i % 9 {
            0 => f32::NAN,
            1 => -1.5,
            2 => 1.25,
            3 => 1.0 / 255.0 - 1.0,
            _ => (i as f32 * 0.731).sin() * 1.02,
        })
        .collect();
    let frames = HostTensor::from_f32([3, 2, 3, 4], values.clone()).unwrap();
    let planes = quantize_frames(&frames).unwrap();
    let chunk = FrameChunk::new(&values, [3, 2, 3, 4]).unwrap();
    for (t, frame) in chunk.frames().enumerate() {
        let interleaved = frame.to_rgb8();
        for (p, rgb) in interleaved.chunks(3).enumerate() {
            for (c, &v) in rgb.iter().enumerate() {
                assert_eq!(
                    planes[(c * 2 + t) * 12 + p],
                    v,
                    "frame {t} pixel {p} channel {c}"
                );
            }
        }
    }
}

#[tokio::test]
async fn frames_decoded_before_a_bad_latent_frame_reach_the_client_before_its_error() {
    let (server, channel) = serving().await;
    let mut chunks = frame_chunks(&latents(2, 4, 6, 3));
    chunks.extend(frame_chunks(&latents(1, 2, 2, 3)));
    let mut responses = VaeClient::new(channel.clone())
        .decode(tokio_stream::iter(chunks))
        .await
        .unwrap()
        .into_inner();
    let mut firsts = Vec::new();
    let err = loop {
        match responses.message().await {
            Ok(Some(DecodedFrames { first_frame, .. })) => firsts.push(first_frame),
            Ok(None) => panic!("the stream ended without the grid change's error"),
            Err(status) => break status,
        }
    };
    firsts.dedup();
    assert_eq!(
        firsts,
        [0, 1],
        "the second chunk was in flight at the error"
    );
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().starts_with("latent_frame: [2, 2] differs"),
        "{}",
        err.message()
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn malformed_streams_are_invalid_argument_and_the_server_carries_on() {
    let (server, channel) = serving().await;
    let good = frame_chunks(&latents(2, 4, 6, 3));
    let mut shifted = good.clone();
    shifted[1].offset = 8;
    let mut renamed = good.clone();
    renamed[0].name = "latents".into();
    let grid_change = {
        let mut c = frame_chunks(&latents(1, 4, 6, 3));
        c.extend(frame_chunks(&latents(1, 2, 2, 3)));
        c
    };
    let mut truncated = good[..1].to_vec();
    truncated[0].data = truncated[0].data.slice(..100);
    let as_u8 = vec![TensorChunk {
        dtype: turbine_proto::v1::Dtype::U8 as i32,
        shape: vec![16, 1, 4, 6],
        data: vec![0u8; 16 * 24].into(),
        ..good[0].clone()
    }];
    let decode_cases: Vec<(Vec<TensorChunk>, &str)> = vec![
        (shifted, "latent_frame: chunk at offset"),
        (renamed, "latent_frame: chunk named"),
        (grid_change, "latent_frame: [2, 2] differs"),
        (truncated, "latent_frame: stream ended after"),
        (
            frame_chunks(&latents(1, 4, 6, 3))
                .into_iter()
                .map(|c| TensorChunk {
                    shape: vec![8, 2, 4, 6],
                    ..c
                })
                .collect(),
            "latent_frame: shape [8, 2, 4, 6]",
        ),
        (as_u8, "latent_frame: dtype U8"),
        (vec![], "latent_frame: the stream carried no latent frame"),
    ];
    for (chunks, prefix) in decode_cases {
        let err = decode(&channel, chunks).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{prefix}: {err:?}");
        assert!(
            err.message().starts_with(prefix),
            "{prefix}: {}",
            err.message()
        );
        assert_eq!(decode(&channel, good.clone()).await.unwrap().len(), 2);
    }

    let (shape, data) = video(5, 16, 24);
    let as_f32 = WireTensor::from_host(&dequantize_frames(&shape, &data).unwrap()).unwrap();
    let (four, four_data) = video(4, 16, 24);
    let encode_cases: Vec<(Vec<TensorChunk>, &str)> = vec![
        (as_f32.chunks("video"), "video: dtype F32 must be U8"),
        (
            WireTensor::from_u8(four, four_data).chunks("video"),
            "video: shape [3, 4, 16, 24]",
        ),
        (
            WireTensor::from_u8(shape.clone(), data.clone()).chunks("frames"),
            "video: chunk named",
        ),
        (vec![], "video: the stream ended before any chunk"),
    ];
    for (chunks, prefix) in encode_cases {
        let err = encode(&channel, chunks).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{prefix}: {err:?}");
        assert!(
            err.message().starts_with(prefix),
            "{prefix}: {}",
            err.message()
        );
        let ok = encode(
            &channel,
            WireTensor::from_u8(shape.clone(), data.clone()).chunks("video"),
        );
        assert_eq!(ok.await.unwrap().shape, [16, 2, 2, 3]);
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_drains_on_sigterm_and_exits_zero() {
    let mut binary = Binary::start(env!("CARGO_BIN_EXE_turbine-vae"), &["--tiny"]);
    let channel = testing::connect(binary.addr).await;
    wait_serving(&channel, SERVICE_NAME, READY).await;
    decode(&channel, frame_chunks(&latents(2, 4, 6, 1)))
        .await
        .unwrap();
    binary.sigterm();
    let status = binary.wait(Duration::from_secs(30));
    assert!(status.success(), "{status:?}\n{}", binary.log());
    assert!(binary.log().contains("drained"), "{}", binary.log());
}
