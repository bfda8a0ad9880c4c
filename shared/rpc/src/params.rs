//! `GenerationParams` (params.proto) validated into the pipeline's [`GenerateRequest`], with the
//! proto's defaults for unset fields. Every error names its field first
//! (`"frames: 80 must be 4k+1 ..."`).

use turbine_models::wan::AttentionMode;
use turbine_pipeline::{GenerateRequest, VideoShape};
use turbine_proto::v1::{
    Attention, AttentionMode as WireAttention, FlowSampler, FlowSolver as WireSolver,
    GenerationParams, RcmSampler, generation_params::Sampler,
};
use turbine_samplers::{FlowConfig, FlowSolver, RcmConfig, RcmMode, SamplerConfig};
use turbine_tensor::SlaParams;

use crate::{Error, Result};

pub const DEFAULT_WIDTH: u32 = 832;
pub const DEFAULT_HEIGHT: u32 = 480;
pub const DEFAULT_FRAMES: u32 = 81;
pub const DEFAULT_FPS: f64 = 16.0;
/// The H.264 writer's frame-rate range (OpenH264's rate control clamps to it).
const MAX_FPS: f64 = 60.0;
const RCM_DEFAULT_STEPS: u32 = 4;
const FLOW_DEFAULT_STEPS: u32 = 50;
const FLOW_MAX_STEPS: u32 = 1000;

/// A validated `GenerationParams`.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidParams {
    pub request: GenerateRequest,
    /// Frame rate of the output video.
    pub fps: f64,
    /// Send step previews.
    pub previews: bool,
}

/// Validates `params` for a run with `seed` (callers resolve `params.seed` first: the orchestrator
/// draws one when unset, the denoiser takes `DenoiseSetup.seed`).
pub fn validate(params: &GenerationParams, seed: u64) -> Result<ValidParams> {
    if params.prompt.trim().is_empty() {
        return Err(Error::invalid(
            "prompt",
            "required, and not only whitespace",
        ));
    }
    let or = |v: u32, default: u32| if v == 0 { default } else { v };
    let shape = VideoShape::new(
        or(params.width, DEFAULT_WIDTH),
        or(params.height, DEFAULT_HEIGHT),
        or(params.frames, DEFAULT_FRAMES),
    )?;
    let fps = params.fps.unwrap_or(DEFAULT_FPS);
    if !(fps.is_finite() && (1.0..=MAX_FPS).contains(&fps)) {
        return Err(Error::invalid(
            "fps",
            format!("{fps} must be in [1, {MAX_FPS}]"),
        ));
    }
    let sampler = match &params.sampler {
        None => rcm(&RcmSampler::default())?,
        Some(Sampler::Rcm(r)) => rcm(r)?,
        Some(Sampler::Flow(f)) => flow(f)?,
    };
    Ok(ValidParams {
        request: GenerateRequest {
            prompt: params.prompt.clone(),
            negative_prompt: params.negative_prompt.clone(),
            shape,
            seed,
            sampler,
            attention: attention(params.attention.as_ref())?,
        },
        fps,
        previews: params.previews,
    })
}

fn positive(field: &'static str, v: f64) -> Result<f64> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(Error::invalid(field, format!("{v} must be finite and > 0")))
    }
}

fn rcm(r: &RcmSampler) -> Result<SamplerConfig> {
    let steps = if r.steps == 0 {
        RCM_DEFAULT_STEPS
    } else {
        r.steps
    };
    if steps as usize > RcmConfig::MAX_STEPS {
        return Err(Error::invalid(
            "rcm.steps",
            format!("{steps} must be in 1..={}", RcmConfig::MAX_STEPS),
        ));
    }
    let sigma_max = positive(
        "rcm.sigma_max",
        r.sigma_max.unwrap_or(RcmConfig::SIGMA_MAX_T2V),
    )?;
    let mode = if r.ode { RcmMode::Ode } else { RcmMode::Sde };
    let config = RcmConfig::new(steps as usize, sigma_max, mode)
        .map_err(|e| Error::invalid("rcm", e.to_string()))?;
    Ok(config.into())
}

fn flow(f: &FlowSampler) -> Result<SamplerConfig> {
    let steps = if f.steps == 0 {
        FLOW_DEFAULT_STEPS
    } else {
        f.steps
    };
    if steps > FLOW_MAX_STEPS {
        return Err(Error::invalid(
            "flow.steps",
            format!("{steps} must be in 1..={FLOW_MAX_STEPS}"),
        ));
    }
    let shift = positive("flow.shift", f.shift.unwrap_or(FlowConfig::DEFAULT_SHIFT))?;
    let guidance = f.guidance.unwrap_or(FlowConfig::DEFAULT_GUIDANCE);
    if !(guidance.is_finite() && guidance >= 1.0) {
        return Err(Error::invalid(
            "flow.guidance",
            format!("{guidance} must be finite and >= 1 (1 disables guidance)"),
        ));
    }
    let solver = match WireSolver::try_from(f.solver) {
        Ok(WireSolver::Unspecified | WireSolver::Unipc) => FlowSolver::UniPc,
        Ok(WireSolver::Euler) => FlowSolver::Euler,
        Err(_) => {
            return Err(Error::invalid(
                "flow.solver",
                format!("unknown value {}", f.solver),
            ));
        }
    };
    let config = FlowConfig::new(steps as usize, shift, guidance, solver)
        .map_err(|e| Error::invalid("flow", e.to_string()))?;
    Ok(config.into())
}

fn attention(a: Option<&Attention>) -> Result<AttentionMode> {
    let Some(a) = a else {
        return Ok(AttentionMode::Dense);
    };
    match WireAttention::try_from(a.mode) {
        Ok(WireAttention::Unspecified | WireAttention::Dense) => Ok(AttentionMode::Dense),
        Ok(WireAttention::Sage) => Ok(AttentionMode::Sage),
        Ok(mode @ (WireAttention::Sla | WireAttention::SageSla)) => {
            let sage = mode == WireAttention::SageSla;
            let topk = a.topk.unwrap_or(SlaParams::DEFAULT_TOPK);
            if !(topk > 0.0 && topk <= 1.0) {
                return Err(Error::invalid(
                    "attention.topk",
                    format!("{topk} must be in (0, 1]"),
                ));
            }
            let block =
                |field: &'static str, v: Option<u32>, default: u32| match v.unwrap_or(default) {
                    0 => Err(Error::invalid(field, "must be > 0")),
                    n => Ok(n as usize),
                };
            let defaults = if sage {
                SlaParams::sage(topk)
            } else {
                SlaParams::sla(topk)
            };
            let params = SlaParams {
                topk,
                block_q: block("attention.block_q", a.block_q, defaults.block_q as u32)?,
                block_k: block("attention.block_k", a.block_k, defaults.block_k as u32)?,
            };
            params
                .validate()
                .map_err(|e| Error::invalid("attention", e.to_string()))?;
            if !sage {
                return Ok(AttentionMode::Sla(params));
            }
            if params != defaults {
                return Err(Error::invalid(
                    "attention.block_q",
                    format!(
                        "SageSLA blocks are {} x {} tokens, got {} x {}",
                        defaults.block_q, defaults.block_k, params.block_q, params.block_k
                    ),
                ));
            }
            Ok(AttentionMode::SageSla(params))
        }
        Err(_) => Err(Error::invalid(
            "attention.mode",
            format!("unknown value {}", a.mode),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> GenerationParams {
        GenerationParams {
            prompt: "a red fox".into(),
            ..GenerationParams::default()
        }
    }

    #[test]
    fn unset_fields_take_the_proto_defaults() {
        let v = validate(&params(), 42).unwrap();
        let r = &v.request;
        assert_eq!(
            (r.shape.width(), r.shape.height(), r.shape.frames()),
            (832, 480, 81)
        );
        assert_eq!(r.seed, 42);
        assert_eq!(
            r.sampler,
            SamplerConfig::from(RcmConfig::new(4, 80.0, RcmMode::Sde).unwrap())
        );
        assert_eq!(r.attention, AttentionMode::Dense);
        assert_eq!((v.fps, v.previews), (16.0, false));

        let flow = GenerationParams {
            sampler: Some(Sampler::Flow(FlowSampler::default())),
            attention: Some(Attention {
                mode: WireAttention::Sla as i32,
                ..Attention::default()
            }),
            ..params()
        };
        let r = validate(&flow, 1).unwrap().request;
        assert_eq!(
            r.sampler,
            SamplerConfig::from(FlowConfig::new(50, 5.0, 5.0, FlowSolver::UniPc).unwrap())
        );
        assert_eq!(
            r.attention,
            AttentionMode::Sla(SlaParams {
                topk: 0.1,
                block_q: 128,
                block_k: 64
            })
        );
    }

    #[test]
    fn sage_modes_take_sagesla_blocks() {
        let with = |mode: WireAttention, a: Attention| GenerationParams {
            attention: Some(Attention {
                mode: mode as i32,
                ..a
            }),
            ..params()
        };
        let r = validate(&with(WireAttention::Sage, Attention::default()), 1).unwrap();
        assert_eq!(r.request.attention, AttentionMode::Sage);
        let sparse = Attention {
            topk: Some(0.15),
            ..Attention::default()
        };
        let r = validate(&with(WireAttention::SageSla, sparse), 1).unwrap();
        assert_eq!(
            r.request.attention,
            AttentionMode::SageSla(SlaParams::sage(0.15))
        );
        let explicit = Attention {
            block_q: Some(64),
            block_k: Some(128),
            ..sparse
        };
        let r = validate(&with(WireAttention::SageSla, explicit), 1).unwrap();
        assert_eq!(
            r.request.attention,
            AttentionMode::SageSla(SlaParams::sage(0.15))
        );
        let other = Attention {
            block_q: Some(128),
            ..sparse
        };
        let err = validate(&with(WireAttention::SageSla, other), 1).unwrap_err();
        assert!(
            err.to_string().contains("attention.block_q") && err.to_string().contains("64 x 128"),
            "{err}"
        );
    }

    #[test]
    fn each_bad_field_is_named_first() {
        let rcm = |r: RcmSampler| Some(Sampler::Rcm(r));
        let flow = |f: FlowSampler| Some(Sampler::Flow(f));
        let sla = |a: Attention| {
            Some(Attention {
                mode: WireAttention::Sla as i32,
                ..a
            })
        };
        let cases: Vec<(GenerationParams, &str)> = vec![
            (
                GenerationParams {
                    prompt: " \n".into(),
                    ..params()
                },
                "prompt: ",
            ),
            (
                GenerationParams {
                    frames: 80,
                    ..params()
                },
                "frames: 80 must be 4k+1",
            ),
            (
                GenerationParams {
                    width: 830,
                    ..params()
                },
                "width: 830",
            ),
            (
                GenerationParams {
                    height: 8192,
                    ..params()
                },
                "height: 8192",
            ),
            (
                GenerationParams {
                    fps: Some(0.0),
                    ..params()
                },
                "fps: ",
            ),
            (
                GenerationParams {
                    fps: Some(f64::NAN),
                    ..params()
                },
                "fps: ",
            ),
            (
                GenerationParams {
                    sampler: rcm(RcmSampler {
                        steps: 5,
                        ..RcmSampler::default()
                    }),
                    ..params()
                },
                "rcm.steps: ",
            ),
            (
                GenerationParams {
                    sampler: rcm(RcmSampler {
                        sigma_max: Some(-1.0),
                        ..RcmSampler::default()
                    }),
                    ..params()
                },
                "rcm.sigma_max: ",
            ),
            (
                GenerationParams {
                    sampler: flow(FlowSampler {
                        steps: 1001,
                        ..FlowSampler::default()
                    }),
                    ..params()
                },
                "flow.steps: ",
            ),
            (
                GenerationParams {
                    sampler: flow(FlowSampler {
                        shift: Some(0.0),
                        ..FlowSampler::default()
                    }),
                    ..params()
                },
                "flow.shift: ",
            ),
            (
                GenerationParams {
                    sampler: flow(FlowSampler {
                        guidance: Some(0.5),
                        ..FlowSampler::default()
                    }),
                    ..params()
                },
                "flow.guidance: ",
            ),
            (
                GenerationParams {
                    sampler: flow(FlowSampler {
                        solver: 9,
                        ..FlowSampler::default()
                    }),
                    ..params()
                },
                "flow.solver: ",
            ),
            (
                GenerationParams {
                    attention: Some(Attention {
                        mode: 7,
                        ..Attention::default()
                    }),
                    ..params()
                },
                "attention.mode: ",
            ),
            (
                GenerationParams {
                    attention: sla(Attention {
                        topk: Some(1.5),
                        ..Attention::default()
                    }),
                    ..params()
                },
                "attention.topk: ",
            ),
            (
                GenerationParams {
                    attention: sla(Attention {
                        block_k: Some(0),
                        ..Attention::default()
                    }),
                    ..params()
                },
                "attention.block_k: ",
            ),
        ];
        for (p, prefix) in cases {
            let status = tonic::Status::from(validate(&p, 0).unwrap_err());
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{prefix}");
            assert!(
                status.message().starts_with(prefix),
                "{prefix}: {}",
                status.message()
            );
        }
    }
}
