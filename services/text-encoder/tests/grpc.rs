//! The text encoder over real gRPC on loopback: readiness, reflection, parity with the
//! in-process text stage, errors, and the binary's SIGTERM drain.

use std::time::Duration;

use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_health::ServingStatus;
use turbine_pipeline::{ModelSource, TextStage};
use turbine_proto::v1::text_encoder_client::TextEncoderClient;
use turbine_proto::v1::{EncodeInfo, EncodeRequest, encode_response};
use turbine_rpc::tensor::TensorAssembler;
use turbine_rpc::testing::{self, Binary, health, reflected_services, wait_serving};
use turbine_rpc::worker::Worker;
use turbine_telemetry::Metrics;
use turbine_tensor::{Backend, CpuBackend, HostTensor};
use turbine_text_encoder::{SERVICE_NAME, TextEncoderService, load};

const READY: Duration = Duration::from_secs(60);

async fn encode(
    channel: &Channel,
    prompt: &str,
    allow_empty: bool,
) -> Result<(EncodeInfo, HostTensor), Status> {
    let mut responses = TextEncoderClient::new(channel.clone())
        .encode(EncodeRequest {
            prompt: prompt.into(),
            allow_empty,
        })
        .await?
        .into_inner();
    let mut info = None;
    let mut assembler = TensorAssembler::named("context");
    let mut context = None;
    while let Some(response) = responses.message().await? {
        match response.kind {
            Some(encode_response::Kind::Info(i)) => {
                assert!(
                    info.is_none() && context.is_none(),
                    "info comes first, once"
                );
                info = Some(i);
            }
            Some(encode_response::Kind::Context(chunk)) => {
                if let Some(t) = assembler.push(chunk).map_err(Status::from)? {
                    context = Some(t.to_host("context").map_err(Status::from)?);
                }
            }
            None => panic!("empty response"),
        }
    }
    Ok((info.expect("info"), context.expect("a whole context")))
}

async fn serving() -> (testing::Running, Channel) {
    let worker = Worker::spawn("text-encoder", 0, || load(CpuBackend, &ModelSource::Tiny));
    let server =
        testing::start(TextEncoderService::new(worker, Metrics::new()).into_service()).await;
    let channel = server.channel().await;
    wait_serving(&channel, SERVICE_NAME, READY).await;
    (server, channel)
}

#[tokio::test]
async fn health_turns_serving_after_warm_up_and_reflection_lists_the_service() {
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let worker = Worker::spawn("text-encoder", 0, move || {
        gate.recv().expect("released");
        load(CpuBackend, &ModelSource::Tiny)
    });
    let server =
        testing::start(TextEncoderService::new(worker, Metrics::new()).into_service()).await;
    let channel = server.channel().await;
    for service in [SERVICE_NAME, ""] {
        assert_eq!(health(&channel, service).await, ServingStatus::NotServing);
    }
    let loading = encode(&channel, "a cat", false).await.unwrap_err();
    assert_eq!(loading.code(), Code::Unavailable, "{loading:?}");

    release.send(()).unwrap();
    wait_serving(&channel, SERVICE_NAME, READY).await;
    let (v1, v1alpha) = reflected_services(&channel).await;
    for list in [&v1, &v1alpha] {
        assert!(list.iter().any(|s| s == SERVICE_NAME), "{list:?}");
        assert!(
            list.iter().any(|s| s == "grpc.health.v1.Health"),
            "{list:?}"
        );
        assert!(!list.iter().any(|s| s == "turbine.v1.Denoiser"), "{list:?}");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn context_equals_the_in_process_text_stage() {
    let (server, channel) = serving().await;
    let stage = TextStage::load(CpuBackend, &ModelSource::Tiny).unwrap();
    let long = "a very long prompt about foxes ".repeat(200);
    for (prompt, allow_empty) in [
        ("a red fox running through fresh snow", false),
        ("  ", true),
        (long.as_str(), false),
    ] {
        let (info, context) = encode(&channel, prompt, allow_empty).await.unwrap();
        let local = stage.encode("prompt", prompt, allow_empty).unwrap();
        let expected = stage.backend().download(&local.context).unwrap();
        assert_eq!(context, expected, "{prompt:?}: context differs");
        assert_eq!(
            (info.tokens as usize, info.truncated),
            (local.tokens, local.truncated)
        );
        // The prompt's rows only: the denoiser pads.
        assert_eq!(
            context.shape,
            [info.tokens as usize, stage.config().d_model]
        );
    }
    let (info, _) = encode(&channel, &long, false).await.unwrap();
    assert!(info.truncated && info.tokens as usize == stage.config().text_len);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_blank_prompt_is_invalid_and_the_server_carries_on() {
    let (server, channel) = serving().await;
    let err = encode(&channel, " \n\t", false).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("prompt: "), "{}", err.message());
    encode(&channel, "a cat", false).await.unwrap();
    server.stop().await.unwrap();
}

// Multi-threaded: while this thread blocks waiting for the process, the client connection must
// keep answering the server's shutdown handshake (GOAWAY, PING).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_drains_on_sigterm_and_exits_zero() {
    let mut binary = Binary::start(env!("CARGO_BIN_EXE_turbine-text-encoder"), &["--tiny"]);
    let channel = testing::connect(binary.addr).await;
    wait_serving(&channel, SERVICE_NAME, READY).await;
    encode(&channel, "a cat", false).await.unwrap();
    binary.sigterm();
    let status = binary.wait(Duration::from_secs(30));
    assert!(status.success(), "{status:?}\n{}", binary.log());
    assert!(binary.log().contains("drained"), "{}", binary.log());
}
