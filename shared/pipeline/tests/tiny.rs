//! The whole pipeline on the bundled tiny preset: frames arrive in order and in the requested
//! number, equal to the stages run one after another, runs are reproducible from the seed, and
//! every sampler and attention mode runs.

use std::ops::ControlFlow;

use turbine_models::wan::AttentionMode;
use turbine_pipeline::{
    DecodeStage, DenoiseStage, Event, FrameSink, GenerateRequest, MAX_CONTEXT_ROWS, ModelSource,
    Pipeline, Stage, TextStage, VideoShape, latent_frames,
};
use turbine_samplers::{FlowConfig, FlowSolver, RcmConfig, RcmMode, SamplerConfig};
use turbine_tensor::{Backend, CpuBackend, HostTensor, SlaParams};

#[derive(Default)]
struct Collect {
    chunks: Vec<usize>,
    values: Vec<f32>,
}

impl FrameSink for Collect {
    fn push(
        &mut self,
        frames: &HostTensor,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.chunks.push(frames.shape[1]);
        self.values.extend(frames.to_f32_vec());
        Ok(())
    }
}

fn request(sampler: SamplerConfig, seed: u64) -> GenerateRequest {
    GenerateRequest {
        prompt: "a red fox running through fresh snow".into(),
        negative_prompt: String::new(),
        shape: VideoShape::new(48, 32, 9).unwrap(),
        seed,
        sampler,
        attention: AttentionMode::Dense,
    }
}

/// SLA attention, which the tiny preset cannot run (it has no SLA-tuned proj_l).
fn sla() -> AttentionMode {
    AttentionMode::Sla(SlaParams::sage(0.1))
}

fn rcm() -> SamplerConfig {
    RcmConfig::new(4, 80.0, RcmMode::Sde).unwrap().into()
}

fn run(pipeline: &mut Pipeline<CpuBackend>, req: &GenerateRequest) -> (Collect, Vec<Event>) {
    let mut sink = Collect::default();
    let mut events = Vec::new();
    let report = pipeline
        .generate(req, &mut |e| events.push(e.clone()), &mut sink)
        .unwrap();
    assert_eq!(report.frames, 9);
    assert_eq!(report.latent_shape, [16, 3, 4, 6]);
    (sink, events)
}

#[test]
fn tiny_preset_generates_reproducible_frames() {
    let mut pipeline = Pipeline::load(CpuBackend, &ModelSource::Tiny).unwrap();
    let (a, events) = run(&mut pipeline, &request(rcm(), 7));
    // First latent frame -> 1 frame, each later one -> 4, each handed over as decoded.
    assert_eq!(a.chunks, [1, 4, 4]);
    assert_eq!(a.values.len(), 3 * 9 * 32 * 48);
    assert!(
        a.values
            .iter()
            .all(|v| v.is_finite() && (-1.0..=1.0).contains(v))
    );
    let spread = a.values.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(spread > 1e-3, "frames are flat");
    let steps: Vec<f64> = events
        .iter()
        .filter_map(|e| {
            if let Event::Step { timestep, .. } = e {
                Some(*timestep)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(steps, [988.0, 932.0, 852.0, 608.0]);
    let stages: Vec<Stage> = events
        .iter()
        .filter_map(|e| {
            if let Event::StageFinished { stage, .. } = e {
                Some(*stage)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(
        stages,
        [Stage::TextEncode, Stage::Denoise, Stage::VaeDecode]
    );

    let (b, _) = run(&mut pipeline, &request(rcm(), 7));
    assert_eq!(a.values, b.values, "same seed, different video");
    let (c, _) = run(&mut pipeline, &request(rcm(), 8));
    assert_ne!(a.values, c.values, "different seeds, same video");
}

#[test]
fn noise_drawn_before_the_other_models_load_gives_the_same_frames() {
    // As `turbine generate` does: the noise starts once the DiT is loaded, the rest loads after.
    let req = request(rcm(), 7);
    let denoise = DenoiseStage::load(CpuBackend, &ModelSource::Tiny).unwrap();
    let noise = denoise.noise(&req);
    let decode = DecodeStage::load(CpuBackend, &ModelSource::Tiny).unwrap();
    let text = TextStage::load(CpuBackend, &ModelSource::Tiny).unwrap();
    let mut early = Pipeline::from_stages(text, denoise, decode).unwrap();
    let mut drawn_early = Collect::default();
    early
        .generate_from(&req, noise, &mut |_| {}, &mut drawn_early)
        .unwrap();

    let mut pipeline = Pipeline::load(CpuBackend, &ModelSource::Tiny).unwrap();
    let (drawn_with_the_request, _) = run(&mut pipeline, &req);
    assert_eq!(drawn_early.values, drawn_with_the_request.values);
}

/// The latents of `req` from the text and denoise stages run by hand.
fn latents(req: &GenerateRequest) -> HostTensor {
    let text = TextStage::load(CpuBackend, &ModelSource::Tiny).unwrap();
    let mut denoise = DenoiseStage::load(CpuBackend, &ModelSource::Tiny).unwrap();
    let prompt = text.encode("prompt", &req.prompt, false).unwrap();
    let context = denoise.context("context", &prompt.context).unwrap();
    denoise
        .denoise(req, &mut denoise.noise(req), &context, None, &mut |_| {
            ControlFlow::Continue(())
        })
        .unwrap()
}

#[test]
fn the_prompts_rows_and_the_context_padded_to_512_rows_give_the_same_latents() {
    let req = request(rcm(), 5);
    let text = TextStage::load(CpuBackend, &ModelSource::Tiny).unwrap();
    let mut denoise = DenoiseStage::load(CpuBackend, &ModelSource::Tiny).unwrap();
    let prompt = text.encode("prompt", &req.prompt, false).unwrap();
    let rows = CpuBackend.download(&prompt.context).unwrap();
    assert_eq!(
        rows.shape[0], prompt.tokens,
        "the text stage returns the prompt's rows"
    );
    let mut padded = rows.to_f32_vec();
    padded.resize(MAX_CONTEXT_ROWS * rows.shape[1], 0.0);
    let padded = HostTensor::from_f32([MAX_CONTEXT_ROWS, rows.shape[1]], padded).unwrap();
    let mut sample = |context: &HostTensor| {
        let context = denoise
            .context("context", &CpuBackend.upload(context).unwrap())
            .unwrap();
        denoise
            .denoise(&req, &mut denoise.noise(&req), &context, None, &mut |_| {
                ControlFlow::Continue(())
            })
            .unwrap()
    };
    assert_eq!(sample(&rows), sample(&padded));
}

#[test]
fn overlapped_decode_hands_on_the_frames_of_a_sequential_one_in_order() {
    let req = request(rcm(), 5);
    let latents = latents(&req);
    let frames: Vec<HostTensor> = latent_frames(&latents)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let decode = DecodeStage::load(CpuBackend, &ModelSource::Tiny).unwrap();
    let mut sequential = decode.session();
    let want: Vec<HostTensor> = frames.iter().map(|f| sequential.push(f).unwrap()).collect();

    // Every frame queued before any is waited for, then waited for last to first.
    let mut queued_ahead = decode.session();
    let pending: Vec<_> = frames
        .iter()
        .map(|f| queued_ahead.push_async(f).unwrap())
        .collect();
    let mut got: Vec<HostTensor> = pending
        .into_iter()
        .rev()
        .map(|p| p.wait().unwrap())
        .collect();
    got.reverse();
    assert!(got == want, "frames differ from the sequential decode");

    let mut pipeline = Pipeline::load(CpuBackend, &ModelSource::Tiny).unwrap();
    let (sink, events) = run(&mut pipeline, &req);
    assert_eq!(sink.chunks, [1, 4, 4]);
    assert!(
        sink.values
            == want
                .iter()
                .flat_map(HostTensor::to_f32_vec)
                .collect::<Vec<_>>(),
        "the pipeline's frames differ from the sequential decode"
    );
    let progress: Vec<(usize, usize)> = events
        .iter()
        .filter_map(|e| {
            if let Event::Frames { done, total } = e {
                Some((*done, *total))
            } else {
                None
            }
        })
        .collect();
    assert_eq!(progress, [(1, 9), (5, 9), (9, 9)]);
    assert!(matches!(
        events.last(),
        Some(Event::StageFinished {
            stage: Stage::VaeDecode,
            ..
        })
    ));
}

#[test]
fn every_sampler_and_attention_mode_runs() {
    let mut pipeline = Pipeline::load(CpuBackend, &ModelSource::Tiny).unwrap();
    let samplers: [SamplerConfig; 3] = [
        RcmConfig::new(2, 200.0, RcmMode::Ode).unwrap().into(),
        FlowConfig::new(3, 5.0, 5.0, FlowSolver::UniPc)
            .unwrap()
            .into(),
        FlowConfig::new(2, 3.0, 1.0, FlowSolver::Euler)
            .unwrap()
            .into(),
    ];
    for sampler in samplers {
        run(&mut pipeline, &request(sampler, 1));
    }
    // The tiny preset has no SLA-tuned proj_l, so SLA is refused with the key named.
    let mut req = request(rcm(), 1);
    req.attention = sla();
    let err = pipeline
        .generate(&req, &mut |_| {}, &mut Collect::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("proj_l"), "{err}");
}

#[test]
fn empty_prompt_is_an_invalid_request() {
    let mut pipeline = Pipeline::load(CpuBackend, &ModelSource::Tiny).unwrap();
    let mut req = request(rcm(), 1);
    req.prompt = "  \n ".into();
    let err = pipeline
        .generate(&req, &mut |_| {}, &mut Collect::default())
        .unwrap_err();
    assert!(
        matches!(
            err,
            turbine_pipeline::Error::InvalidRequest {
                field: "prompt",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn stages_warm_up_on_a_request_size() {
    let shape = VideoShape::new(64, 48, 9).unwrap();
    let mut denoise = DenoiseStage::load(CpuBackend, &ModelSource::Tiny).unwrap();
    denoise.warm_up(Some(&shape)).unwrap();
    denoise.warm_up(None).unwrap();
    // In a request's own attention mode; one the model cannot run fails as the request would.
    let mut req = request(rcm(), 1);
    req.attention = AttentionMode::Sage;
    denoise.warm_up_for(&req).unwrap();
    req.attention = sla();
    let err = denoise.warm_up_for(&req).unwrap_err().to_string();
    assert!(err.contains("proj_l"), "{err}");
    let decode = DecodeStage::load(CpuBackend, &ModelSource::Tiny).unwrap();
    decode.warm_up(Some(&shape)).unwrap();
    decode
        .warm_up(Some(&VideoShape::new(32, 32, 1).unwrap()))
        .unwrap();
    decode.warm_up(None).unwrap();
    // At a prompt's token count; one the tokenizer refuses at a single token, its error left to
    // the request.
    let text = TextStage::load(CpuBackend, &ModelSource::Tiny).unwrap();
    text.warm_up_for("a red fox running through fresh snow")
        .unwrap();
    text.warm_up_for(" \t ").unwrap();
    let err = text.encode("prompt", " \t ", false).err().unwrap();
    assert!(err.to_string().contains("prompt"), "{err}");
}
