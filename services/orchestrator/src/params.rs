//! `GenerationParams` checked at submission with the stages' own validation
//! ([`turbine_rpc::params`]), plus what only the orchestrator needs: a seed for requests without
//! one, bounded prompt sizes, and a frame size the H.264 encoder takes (every job ends in an MP4,
//! so a size it refuses is refused before any GPU work).

use turbine_models::wan::AttentionMode;
use turbine_proto::v1::{
    Attention, AttentionMode as WireAttention, FlowSampler, FlowSolver as WireSolver,
    GenerationParams, RcmSampler, generation_params::Sampler,
};
use turbine_samplers::{FlowSolver, RcmMode, SamplerConfig};

use crate::error::{Error, Result};
use crate::stages::VideoSize;

/// The umT5 encoder reads 512 tokens; 16 KiB of text is far past that and keeps a runaway client
/// from parking megabytes in the queue.
pub const MAX_PROMPT_BYTES: usize = 16 * 1024;
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 128;

/// A request that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidParams {
    /// The request as the stages run it: every default filled in and the seed set. The denoiser
    /// receives it and `Job.params` reports it, so resubmitting it reproduces the video.
    pub resolved: GenerationParams,
    pub seed: u64,
    pub video: VideoSize,
    pub fps: f64,
    /// Classifier-free guidance is on: the negative prompt is encoded too.
    pub uses_negative: bool,
}

impl ValidParams {
    pub fn prompt(&self) -> &str {
        &self.resolved.prompt
    }

    pub fn negative_prompt(&self) -> &str {
        &self.resolved.negative_prompt
    }
}

/// Validates `params`, choosing a seed with `random_seed` when the request left it unset.
pub fn validate(
    params: Option<GenerationParams>,
    random_seed: impl FnOnce() -> u64,
) -> Result<ValidParams> {
    let p = params.ok_or_else(|| Error::invalid("params", "required"))?;
    for (field, text) in [
        ("prompt", &p.prompt),
        ("negative_prompt", &p.negative_prompt),
    ] {
        if text.len() > MAX_PROMPT_BYTES {
            return Err(Error::invalid(
                field,
                format!("{} bytes, at most {MAX_PROMPT_BYTES}", text.len()),
            ));
        }
    }
    let seed = p.seed.unwrap_or_else(random_seed);
    let valid = turbine_rpc::params::validate(&p, seed)
        .map_err(|e| Error::InvalidArgument(tonic::Status::from(e).message().to_string()))?;
    let request = &valid.request;
    let video = VideoSize {
        width: request.shape.width(),
        height: request.shape.height(),
        frames: request.shape.frames(),
    };
    check_encodable(video)?;
    Ok(ValidParams {
        resolved: GenerationParams {
            prompt: p.prompt,
            negative_prompt: p.negative_prompt,
            width: video.width,
            height: video.height,
            frames: video.frames,
            fps: Some(valid.fps),
            seed: Some(seed),
            sampler: Some(sampler(&request.sampler)),
            attention: Some(attention(&request.attention)),
            previews: valid.previews,
        },
        seed,
        video,
        fps: valid.fps,
        uses_negative: request.uses_negative_prompt(),
    })
}

/// Checks an idempotency key: empty means none.
pub fn idempotency_key(key: String) -> Result<Option<String>> {
    let chars = key.chars().count();
    if chars > MAX_IDEMPOTENCY_KEY_CHARS {
        return Err(Error::invalid(
            "idempotency_key",
            format!("{chars} characters, at most {MAX_IDEMPOTENCY_KEY_CHARS}"),
        ));
    }
    Ok((!key.is_empty()).then_some(key))
}

/// OpenH264's limits, in either orientation.
fn check_encodable(video: VideoSize) -> Result<()> {
    let (long, short) = (turbine_media::MAX_LONG_SIDE, turbine_media::MAX_SHORT_SIDE);
    let (w, h) = (video.width as usize, video.height as usize);
    let too_big = |side: usize, other: usize| side > long || (side > short && other > short);
    let field = if too_big(w, h) {
        "width"
    } else if too_big(h, w) {
        "height"
    } else {
        return Ok(());
    };
    Err(Error::invalid(
        field,
        format!("{w}x{h} is beyond the H.264 encoder's {long}x{short} (either orientation)"),
    ))
}

fn sampler(config: &SamplerConfig) -> Sampler {
    match config {
        SamplerConfig::Rcm(c) => Sampler::Rcm(RcmSampler {
            steps: c.steps() as u32,
            sigma_max: Some(c.sigma_max()),
            ode: c.mode() == RcmMode::Ode,
        }),
        SamplerConfig::Flow(c) => Sampler::Flow(FlowSampler {
            steps: c.steps() as u32,
            shift: Some(c.shift()),
            guidance: Some(c.guidance()),
            solver: match c.solver() {
                FlowSolver::UniPc => WireSolver::Unipc,
                FlowSolver::Euler => WireSolver::Euler,
            } as i32,
        }),
    }
}

fn attention(mode: &AttentionMode) -> Attention {
    match mode {
        AttentionMode::Dense => Attention {
            mode: WireAttention::Dense as i32,
            ..Attention::default()
        },
        AttentionMode::Sage => Attention {
            mode: WireAttention::Sage as i32,
            ..Attention::default()
        },
        AttentionMode::Sla(p) | AttentionMode::SageSla(p) => Attention {
            mode: if matches!(mode, AttentionMode::Sla(_)) {
                WireAttention::Sla
            } else {
                WireAttention::SageSla
            } as i32,
            topk: Some(p.topk),
            block_q: Some(p.block_q as u32),
            block_k: Some(p.block_k as u32),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt() -> GenerationParams {
        GenerationParams {
            prompt: "a cat".into(),
            ..GenerationParams::default()
        }
    }

    #[test]
    fn defaults_are_filled_in_and_the_seed_is_chosen_once() {
        let v = validate(Some(prompt()), || 7).unwrap();
        assert_eq!(
            (v.video.width, v.video.height, v.video.frames, v.fps),
            (832, 480, 81, 16.0)
        );
        assert_eq!((v.seed, v.resolved.seed), (7, Some(7)));
        assert_eq!(v.video.latent_frames(), 21);
        assert!(!v.uses_negative);
        assert_eq!(
            v.resolved.sampler,
            Some(Sampler::Rcm(RcmSampler {
                steps: 4,
                sigma_max: Some(80.0),
                ode: false
            }))
        );
        // The resolved request validates to itself: the denoiser sees what the job reports.
        let again = validate(Some(v.resolved.clone()), || unreachable!("seed set")).unwrap();
        assert_eq!(again, v);

        let flow = GenerationParams {
            sampler: Some(Sampler::Flow(FlowSampler::default())),
            ..prompt()
        };
        assert!(validate(Some(flow), || 0).unwrap().uses_negative);
        let no_cfg = GenerationParams {
            sampler: Some(Sampler::Flow(FlowSampler {
                guidance: Some(1.0),
                ..FlowSampler::default()
            })),
            ..prompt()
        };
        assert!(!validate(Some(no_cfg), || 0).unwrap().uses_negative);
    }

    #[test]
    fn orchestrator_limits_name_their_field() {
        let cases = [
            (None, "params: "),
            (
                Some(GenerationParams {
                    prompt: "x".repeat(MAX_PROMPT_BYTES + 1),
                    ..prompt()
                }),
                "prompt: ",
            ),
            (
                Some(GenerationParams {
                    negative_prompt: "x".repeat(MAX_PROMPT_BYTES + 1),
                    ..prompt()
                }),
                "negative_prompt: ",
            ),
            (
                Some(GenerationParams {
                    width: 4096,
                    ..prompt()
                }),
                "width: ",
            ),
            (
                Some(GenerationParams {
                    width: 2176,
                    height: 2176,
                    ..prompt()
                }),
                "width: ",
            ),
            (
                Some(GenerationParams {
                    width: 480,
                    height: 3856,
                    ..prompt()
                }),
                "height: ",
            ),
        ];
        for (params, prefix) in cases {
            let message = validate(params, || 0).unwrap_err().to_string();
            assert!(message.starts_with(prefix), "{prefix}: {message}");
        }
        assert!(
            validate(
                Some(GenerationParams {
                    width: 2160,
                    height: 3840,
                    ..prompt()
                }),
                || 0
            )
            .is_ok()
        );
    }

    #[test]
    fn keys_longer_than_128_characters_are_refused() {
        assert_eq!(idempotency_key(String::new()).unwrap(), None);
        assert!(idempotency_key("é".repeat(128)).unwrap().is_some());
        let err = idempotency_key("k".repeat(129)).unwrap_err();
        assert!(err.to_string().starts_with("idempotency_key: "));
    }
}
