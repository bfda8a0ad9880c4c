//! Turbine as a cluster: `turbine-text-encoder`, `turbine-denoiser` (one or two replicas),
//! `turbine-vae` (all `--tiny`) and `turbine-orchestrator` as separate processes on
//! `127.0.0.1`, ports chosen by the kernel, readiness from grpc.health.v1, every process killed
//! when its test ends. The harness (building and finding the binaries, processes, clusters, the
//! OTLP receiver) is this package's library, `tests/src/`.
//!
//! - [`e2e`]: SubmitJob → WatchJob → GetArtifact; the MP4 equals `turbine generate`'s.
//! - [`fault`]: a denoiser SIGKILLed mid-job (the job finishes on the other replica) and
//!   CancelJob stopping the denoiser within one step.
//! - [`trace`]: one job's spans from all four services reach an OTLP receiver as one trace.
//! - [`interop`]: the Python client (tools/python_client) against the cluster.
//! - [`validation`]: every invalid `GenerationParams` field is INVALID_ARGUMENT naming it.
//! - [`streams`]: malformed tensor streams to each stage service are INVALID_ARGUMENT and the
//!   service goes on serving.

mod e2e;
mod fault;
mod interop;
mod streams;
mod trace;
mod validation;

use turbine_proto::v1::generation_params::Sampler;
use turbine_proto::v1::{FlowSampler, FlowSolver, GenerationParams, RcmSampler};

/// A small request: `width`x`height`, `frames` frames, seeded, 16 fps.
pub fn params(
    prompt: &str,
    (width, height, frames): (u32, u32, u32),
    seed: u64,
) -> GenerationParams {
    GenerationParams {
        prompt: prompt.to_string(),
        width,
        height,
        frames,
        fps: Some(16.0),
        seed: Some(seed),
        ..GenerationParams::default()
    }
}

/// rCM with `steps` steps (TurboDiffusion's sampler; the default).
pub fn rcm(steps: u32) -> Option<Sampler> {
    Some(Sampler::Rcm(RcmSampler {
        steps,
        ..RcmSampler::default()
    }))
}

/// Wan's flow-matching sampler: `steps` steps of `solver`, shift 5, guidance `guidance`.
pub fn flow(solver: FlowSolver, steps: u32, guidance: f64) -> Option<Sampler> {
    Some(Sampler::Flow(FlowSampler {
        steps,
        shift: Some(5.0),
        guidance: Some(guidance),
        solver: solver as i32,
    }))
}
