//! The denoiser over real gRPC on loopback: readiness, reflection, parity with the in-process
//! denoise stage, previews, cancellation within one step, malformed input streams, the binary's
//! SIGTERM drain (complete, and cut short by the drain timeout), and its warm-up attention modes
//! on an SLA-tuned checkpoint folder.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};
use tonic_health::ServingStatus;
use turbine_denoiser::{DenoiserService, SERVICE_NAME, load};
use turbine_models::seeded::seeded_safetensors;
use turbine_models::wan::{AttentionMode, WanConfig};
use turbine_pipeline::{DenoiseStage, ModelSource, TextStage, latent_frames};
use turbine_proto::v1::denoiser_client::DenoiserClient;
use turbine_proto::v1::{
    Attention, AttentionMode as WireAttention, DenoiseEvent, DenoiseInput, DenoiseSetup,
    FlowSampler, FlowSolver, GenerationParams, Preview, RcmSampler, StepProgress, TensorChunk,
    denoise_event, denoise_input, generation_params::Sampler,
};
use turbine_rpc::params::validate;
use turbine_rpc::tensor::{TensorAssembler, WireTensor};
use turbine_rpc::testing::{self, Binary, health, reflected_services, wait_serving};
use turbine_rpc::worker::Worker;
use turbine_telemetry::Metrics;
use turbine_tensor::{Backend, CpuBackend, HostTensor, SlaParams};

const READY: Duration = Duration::from_secs(60);

fn params(width: u32, height: u32, frames: u32, sampler: Sampler) -> GenerationParams {
    GenerationParams {
        prompt: "a red fox running through fresh snow".into(),
        negative_prompt: "blurry".into(),
        width,
        height,
        frames,
        sampler: Some(sampler),
        ..GenerationParams::default()
    }
}

fn rcm(steps: u32) -> Sampler {
    Sampler::Rcm(RcmSampler {
        steps,
        ..RcmSampler::default()
    })
}

fn flow(steps: u32, guidance: f64) -> Sampler {
    Sampler::Flow(FlowSampler {
        steps,
        guidance: Some(guidance),
        solver: FlowSolver::Euler as i32,
        ..FlowSampler::default()
    })
}

/// The tiny preset's text contexts of `params`' prompts, as the text encoder sends them.
fn contexts(params: &GenerationParams) -> (HostTensor, HostTensor) {
    let text = TextStage::load(CpuBackend, &ModelSource::Tiny).unwrap();
    let encode = |prompt: &str, allow_empty| {
        let encoded = text.encode("prompt", prompt, allow_empty).unwrap();
        text.backend().download(&encoded.context).unwrap()
    };
    (
        encode(&params.prompt, false),
        encode(&params.negative_prompt, true),
    )
}

fn setup(params: &GenerationParams, seed: u64) -> DenoiseInput {
    DenoiseInput {
        kind: Some(denoise_input::Kind::Setup(DenoiseSetup {
            params: Some(params.clone()),
            seed,
        })),
    }
}

fn as_inputs(chunks: Vec<TensorChunk>) -> Vec<DenoiseInput> {
    chunks
        .into_iter()
        .map(|c| DenoiseInput {
            kind: Some(denoise_input::Kind::Context(c)),
        })
        .collect()
}

fn chunks(name: &str, t: &HostTensor) -> Vec<TensorChunk> {
    WireTensor::from_host(t).unwrap().chunks(name)
}

/// A well-formed request: setup, context and (when guided) the negative context.
fn request(params: &GenerationParams, seed: u64) -> Vec<DenoiseInput> {
    let (context, negative) = contexts(params);
    let mut inputs = vec![setup(params, seed)];
    inputs.extend(as_inputs(chunks("context", &context)));
    let guided = validate(params, seed)
        .unwrap()
        .request
        .uses_negative_prompt();
    if guided {
        inputs.extend(as_inputs(chunks("negative_context", &negative)));
    }
    inputs
}

#[derive(Default)]
struct Outcome {
    progress: Vec<StepProgress>,
    previews: Vec<Preview>,
    latent_frames: Vec<HostTensor>,
}

async fn start_call(
    channel: &Channel,
    inputs: Vec<DenoiseInput>,
) -> Result<Streaming<DenoiseEvent>, Status> {
    Ok(DenoiserClient::new(channel.clone())
        .denoise(tokio_stream::iter(inputs))
        .await?
        .into_inner())
}

async fn denoise(channel: &Channel, inputs: Vec<DenoiseInput>) -> Result<Outcome, Status> {
    let mut events = start_call(channel, inputs).await?;
    let mut out = Outcome::default();
    let mut assembler = TensorAssembler::named("latent_frame");
    while let Some(event) = events.message().await? {
        match event.kind.expect("event kind") {
            denoise_event::Kind::Progress(p) => out.progress.push(p),
            denoise_event::Kind::Preview(p) => out.previews.push(p),
            denoise_event::Kind::Latent(chunk) => {
                if let Some(t) = assembler.push(chunk).map_err(Status::from)? {
                    out.latent_frames
                        .push(t.to_host("latent_frame").map_err(Status::from)?);
                }
            }
        }
    }
    Ok(out)
}

/// The same generation in process, on the tiny preset.
fn local_latent_frames(params: &GenerationParams, seed: u64) -> Vec<HostTensor> {
    local_latent_frames_of(&ModelSource::Tiny, params, seed)
}

/// The same generation in process, on the DiT of `source`.
fn local_latent_frames_of(
    source: &ModelSource,
    params: &GenerationParams,
    seed: u64,
) -> Vec<HostTensor> {
    let mut stage = DenoiseStage::load(CpuBackend, source).unwrap();
    let request = validate(params, seed).unwrap().request;
    let (context, negative) = contexts(params);
    let b = *stage.backend();
    let context = stage
        .context("context", &b.upload(&context).unwrap())
        .unwrap();
    let negative = request.uses_negative_prompt().then(|| {
        stage
            .context("negative_context", &b.upload(&negative).unwrap())
            .unwrap()
    });
    let latents = stage
        .denoise(
            &request,
            &mut stage.noise(&request),
            &context,
            negative.as_ref(),
            &mut |_| ControlFlow::Continue(()),
        )
        .unwrap();
    latent_frames(&latents)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

async fn serving() -> (testing::Running, Channel, DenoiserService<CpuBackend>) {
    let service = DenoiserService::new(
        Worker::spawn("denoiser", 0, || {
            load(CpuBackend, &ModelSource::Tiny, None, &[])
        }),
        Metrics::new(),
    );
    let server = testing::start(service.clone().into_service()).await;
    let channel = server.channel().await;
    wait_serving(&channel, SERVICE_NAME, READY).await;
    (server, channel, service)
}

#[tokio::test]
async fn health_turns_serving_after_warm_up_and_reflection_lists_the_service() {
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let worker = Worker::spawn("denoiser", 0, move || {
        gate.recv().expect("released");
        load(CpuBackend, &ModelSource::Tiny, None, &[])
    });
    let server = testing::start(DenoiserService::new(worker, Metrics::new()).into_service()).await;
    let channel = server.channel().await;
    for service in [SERVICE_NAME, ""] {
        assert_eq!(health(&channel, service).await, ServingStatus::NotServing);
    }
    let p = params(48, 32, 9, rcm(2));
    let loading = denoise(&channel, request(&p, 1))
        .await
        .err()
        .expect("refused");
    assert_eq!(loading.code(), Code::Unavailable, "{loading:?}");

    release.send(()).unwrap();
    wait_serving(&channel, SERVICE_NAME, READY).await;
    let (v1, v1alpha) = reflected_services(&channel).await;
    for list in [&v1, &v1alpha] {
        assert!(list.iter().any(|s| s == SERVICE_NAME), "{list:?}");
        assert!(!list.iter().any(|s| s == "turbine.v1.Vae"), "{list:?}");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn latents_equal_the_in_process_denoise_stage() {
    let (server, channel, _) = serving().await;
    for (p, seed) in [
        (params(48, 32, 9, rcm(4)), 7),
        (params(32, 32, 5, flow(3, 4.0)), 11),
    ] {
        let out = denoise(&channel, request(&p, seed)).await.unwrap();
        let steps = validate(&p, seed).unwrap().request.sampler.schedule();
        let timesteps: Vec<f64> = out.progress.iter().map(|s| s.timestep).collect();
        assert_eq!(timesteps, steps.timesteps());
        assert!(
            out.progress
                .iter()
                .enumerate()
                .all(|(i, s)| s.step as usize == i && s.total as usize == steps.steps())
        );
        assert!(out.previews.is_empty(), "previews were not asked for");
        let expected = local_latent_frames(&p, seed);
        assert_eq!(out.latent_frames.len(), (p.frames as usize - 1) / 4 + 1);
        assert!(
            out.latent_frames == expected,
            "latents differ from the in-process stage"
        );
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn previews_are_small_pngs_of_the_middle_latent_frame() {
    let (server, channel, _) = serving().await;
    let p = GenerationParams {
        previews: true,
        ..params(64, 48, 9, rcm(3))
    };
    let out = denoise(&channel, request(&p, 3)).await.unwrap();
    assert_eq!(out.previews.len(), 3);
    for (i, preview) in out.previews.iter().enumerate() {
        assert_eq!(preview.step as usize, i);
        assert_eq!(
            (preview.width, preview.height),
            (8, 6),
            "one pixel per latent position"
        );
        assert!(preview.png.starts_with(b"\x89PNG\r\n\x1a\n"));
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_stops_sampling_within_one_step() {
    let (server, channel, service) = serving().await;
    // 1000 Euler steps at 256x256x33 run for minutes; each step takes long enough that the
    // cancellation reaches the server well inside one.
    let p = params(256, 256, 33, flow(1000, 1.0));
    let mut events = start_call(&channel, request(&p, 5)).await.unwrap();
    let mut seen = 0;
    let mut step_seconds = 0.0;
    while seen < 2 {
        if let Some(denoise_event::Kind::Progress(s)) =
            events.message().await.unwrap().unwrap().kind
        {
            seen += 1;
            step_seconds = s.seconds;
        }
    }
    let before = service.steps_run();
    drop(events);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !service.is_idle() {
        assert!(Instant::now() < deadline, "sampling did not stop");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let after = service.steps_run();
    assert!(
        after - before <= 1,
        "{} steps ran after the cancel (steps take {step_seconds:.3} s)",
        after - before
    );
    // The replica is free for the next call.
    denoise(&channel, request(&params(48, 32, 5, rcm(1)), 1))
        .await
        .unwrap();
    server.stop().await.unwrap();
}

#[tokio::test]
async fn malformed_input_streams_are_invalid_argument_and_the_server_carries_on() {
    let (server, channel, _) = serving().await;
    let p = params(48, 32, 5, rcm(1));
    let guided = params(48, 32, 5, flow(2, 3.0));
    let (context, negative) = contexts(&p);
    let whole = chunks("context", &context);
    // The context split into four pieces (of whole f32s), so there are chunks after the first
    // to corrupt.
    let piece = whole[0].data.len().div_ceil(16) * 4;
    let pieces: Vec<TensorChunk> = whole[0]
        .data
        .chunks(piece)
        .scan(0u64, |offset, data| {
            let chunk = TensorChunk {
                offset: *offset,
                data: whole[0].data.slice_ref(data),
                ..whole[0].clone()
            };
            *offset += data.len() as u64;
            Some(chunk)
        })
        .collect();
    assert!(pieces.len() >= 3);
    let with = |context: Vec<TensorChunk>| {
        let mut inputs = vec![setup(&p, 1)];
        inputs.extend(as_inputs(context));
        inputs
    };
    let mut shifted = pieces.clone();
    shifted[1].offset += 4;
    let mut reshaped = pieces.clone();
    reshaped[2].shape = vec![256, 128];
    let narrow = HostTensor::from_f32([512, 32], vec![0.0; 512 * 32]).unwrap();
    let bad_params = GenerationParams {
        frames: 80,
        ..p.clone()
    };
    let cases: Vec<(Vec<DenoiseInput>, &str)> = vec![
        (with(shifted), "context: chunk at offset"),
        (with(reshaped), "context: chunk header"),
        (with(pieces[..2].to_vec()), "context: stream ended after"),
        (with(chunks("context", &narrow)), "context: shape [512, 32]"),
        (
            with(chunks("prompt", &context)),
            "context: unexpected tensor",
        ),
        (with(vec![]), "context: the stream ended"),
        (as_inputs(whole.clone()), "setup: the first message"),
        (vec![setup(&bad_params, 1)], "frames: 80 must be 4k+1"),
        (
            {
                let mut i = vec![setup(&p, 1)];
                i.extend(as_inputs(chunks("negative_context", &negative)));
                i.extend(as_inputs(whole.clone()));
                i
            },
            "negative_context: not used",
        ),
        (
            {
                let mut i = vec![setup(&guided, 1)];
                i.extend(as_inputs(whole.clone()));
                i
            },
            "negative_context: the stream ended",
        ),
    ];
    for (inputs, prefix) in cases {
        let err = denoise(&channel, inputs).await.err().expect("refused");
        assert_eq!(err.code(), Code::InvalidArgument, "{prefix}: {err:?}");
        assert!(
            err.message().starts_with(prefix),
            "{prefix}: {}",
            err.message()
        );
        // The next well-formed call is served.
        let ok = denoise(&channel, request(&p, 2)).await.unwrap();
        assert_eq!(ok.latent_frames.len(), 2);
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_running_generation_finish_then_exits_zero() {
    let mut binary = Binary::start(env!("CARGO_BIN_EXE_turbine-denoiser"), &["--tiny"]);
    let channel = testing::connect(binary.addr).await;
    wait_serving(&channel, SERVICE_NAME, READY).await;
    const STEPS: u32 = 100;
    let p = params(128, 128, 17, flow(STEPS, 1.0));
    let mut events = start_call(&channel, request(&p, 4)).await.unwrap();
    let first = events.next().await.unwrap().unwrap();
    assert!(matches!(first.kind, Some(denoise_event::Kind::Progress(_))));
    binary.sigterm();
    // Draining: the listener is closed, new connections are refused.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(binary.addr).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (mut steps_after_close, mut latent_chunks, mut last_step) = (0, 0, 0);
    while let Some(event) = events.message().await.unwrap() {
        match event.kind.unwrap() {
            denoise_event::Kind::Progress(s) => {
                steps_after_close += 1;
                last_step = s.step;
            }
            denoise_event::Kind::Latent(_) => latent_chunks += 1,
            denoise_event::Kind::Preview(_) => {}
        }
    }
    assert_eq!(
        (last_step, latent_chunks),
        (STEPS - 1, 5),
        "the call ran to its end"
    );
    // More steps than the response buffers hold: sampling went on after the listener closed.
    assert!(
        steps_after_close > 10,
        "{steps_after_close} steps after the close"
    );
    let status = binary.wait(Duration::from_secs(30));
    assert!(status.success(), "{status:?}\n{}", binary.log());
    assert!(binary.log().contains("drained"), "{}", binary.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_timeout_bounds_shutdown() {
    let mut binary = Binary::start(
        env!("CARGO_BIN_EXE_turbine-denoiser"),
        &["--tiny", "--drain-timeout", "0.5"],
    );
    let channel = testing::connect(binary.addr).await;
    wait_serving(&channel, SERVICE_NAME, READY).await;
    let p = params(256, 256, 33, flow(1000, 1.0));
    let mut events = start_call(&channel, request(&p, 4)).await.unwrap();
    events.next().await.unwrap().unwrap();
    let signalled = Instant::now();
    binary.sigterm();
    let status = binary.wait(Duration::from_secs(30));
    assert!(status.success(), "{status:?}\n{}", binary.log());
    assert!(signalled.elapsed() < Duration::from_secs(10));
    assert!(binary.log().contains("drain timeout"), "{}", binary.log());
    // The abandoned call ends with an error, not a truncated success.
    let rest: Vec<_> = events.collect().await;
    assert!(rest.iter().any(Result::is_err), "the stream ended cleanly");
}

/// A model folder holding the tiny DiT as a TurboWan checkpoint: `config.json` and seeded
/// weights with every block's SLA `proj_l`.
fn sla_tuned_tiny_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let config = WanConfig::tiny();
    let mut tensors = config.tensor_shapes();
    tensors.extend(config.proj_l_shapes());
    std::fs::write(
        dir.path().join("diffusion_pytorch_model.safetensors"),
        seeded_safetensors(&tensors, 31).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_string(&config).unwrap(),
    )
    .unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sla_tuned_checkpoint_warms_up_in_sagesla_too_and_serves_it() {
    let dir = sla_tuned_tiny_folder();
    let folder = dir.path().to_str().unwrap();
    let source = ModelSource::Files(turbine_pipeline::ModelFiles::in_dir(dir.path()));
    let sagesla = AttentionMode::SageSla(SlaParams::sage(SlaParams::DEFAULT_TOPK));
    for (source, modes) in [
        (&ModelSource::Tiny, vec![AttentionMode::Dense]),
        (&source, vec![AttentionMode::Dense, sagesla]),
    ] {
        let stage = DenoiseStage::load(CpuBackend, source).unwrap();
        assert_eq!(stage.default_warm_up_modes(), modes, "{source:?}");
    }

    let binary = Binary::start(
        env!("CARGO_BIN_EXE_turbine-denoiser"),
        &["--model-dir", folder, "--warm-up-shape", "48x32x9"],
    );
    let channel = testing::connect(binary.addr).await;
    wait_serving(&channel, SERVICE_NAME, READY).await;
    let log = binary.log();
    for mode in [
        "attention=dense",
        "attention=sagesla topk 0.1 blocks 64x128",
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains("warmed up") && l.contains(mode)),
            "no {mode} warm-up:\n{log}"
        );
    }
    let p = GenerationParams {
        attention: Some(Attention {
            mode: WireAttention::SageSla as i32,
            ..Attention::default()
        }),
        ..params(48, 32, 9, rcm(2))
    };
    let out = denoise(&channel, request(&p, 5)).await.unwrap();
    assert!(
        out.latent_frames == local_latent_frames_of(&source, &p, 5),
        "SageSLA latents differ from the in-process stage"
    );
}

#[test]
fn a_warm_up_mode_the_checkpoint_cannot_run_fails_the_load_naming_proj_l() {
    let mut binary = Binary::start(
        env!("CARGO_BIN_EXE_turbine-denoiser"),
        &["--tiny", "--warm-up-attention", "dense,sagesla:0.2"],
    );
    let status = binary.wait(READY);
    let log = binary.log();
    assert!(!status.success(), "{log}");
    assert!(log.contains("proj_l"), "{log}");
}
