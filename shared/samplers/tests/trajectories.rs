//! Sampler trajectories against `tools/golden/samplers.py` (rCM transcribed from TurboDiffusion,
//! UniPC through diffusers 0.42.1 configured as Wan's scheduler, Euler from its formula).
//!
//! Tolerance: max relative error ≤ 1e-5 per step, relative to the step tensor's largest magnitude.
//! Both sides keep the state in f64 and feed the same toy model the same f32 inputs; they agree to
//! ~3e-16 today. What may legitimately differ is f64 operation order and libm vs PyTorch
//! `tanh`/`sin`/`sin+cos` in the last ulp, which can flip one f32 rounding of a model input or
//! output (≤ 6e-8 relative) and carry it through at most 10 steps, so the bound must stay well
//! above 1e-7. It must also catch solver slips: with this toy (its `sin(4t/1000)` term gives the
//! estimates curvature for the higher-order terms to act on) a predictor stuck at order 1 or a
//! wrong corrector weight moves a step by ~2e-4, and even a 10% change of the predictor's ρ by
//! 2.4e-5. f32-level slips in the schedule are below this bound; `schedule.rs` checks those exactly.

mod common;

use std::ops::ControlFlow;

use common::{Array, Fixture, Toy, max_rel_err};
use turbine_samplers::{
    FlowConfig, FlowSolver, Latent, RcmConfig, RcmMode, RecordedNoise, SamplerConfig, StepEvent,
};
use turbine_tensor::{CpuBackend, HostTensor};

const TOLERANCE: f64 = 1e-5;

struct Recorded {
    timesteps: Vec<f64>,
    denoised: Vec<Latent>,
    latents: Vec<Latent>,
}

fn run(fx: &Fixture, case: &str, config: SamplerConfig) {
    let noise = fx.get(&format!("{case}/noise"));
    let state_shape = noise.shape[1..].to_vec();
    let draws = (0..noise.rows()).map(|i| {
        let data = noise.row(i).iter().map(|&x| x as f32).collect();
        HostTensor::from_f32(state_shape.clone(), data).unwrap()
    });
    let mut noise_src = RecordedNoise::new(draws);
    let mut model = Toy::new(fx.get("toy/cond").data);
    let mut rec = Recorded {
        timesteps: Vec::new(),
        denoised: Vec::new(),
        latents: Vec::new(),
    };
    let mut observer = |e: &StepEvent<'_>| {
        assert_eq!(e.index, rec.timesteps.len());
        assert_eq!(e.total, config.schedule().steps());
        rec.timesteps.push(e.timestep);
        rec.denoised.push(e.denoised.clone());
        rec.latents.push(e.latent.clone());
        ControlFlow::Continue(())
    };
    let out = config
        .sample(
            &CpuBackend::new(),
            &mut model,
            &state_shape,
            &mut noise_src,
            &mut observer,
        )
        .unwrap();

    assert_eq!(
        noise_src.remaining(),
        0,
        "{case}: every stored noise tensor is drawn"
    );
    assert_eq!(
        rec.timesteps,
        fx.get(&format!("{case}/timesteps")).data,
        "{case}"
    );
    assert_eq!(&out, rec.latents.last().unwrap());
    compare(case, "x", &rec.latents, &fx.get(&format!("{case}/x")), 1);
    compare(
        case,
        "denoised",
        &rec.denoised,
        &fx.get(&format!("{case}/denoised")),
        0,
    );
}

/// `got[k]` against `want` row `k + offset` (row 0 of `x` is the initial state).
fn compare(case: &str, what: &str, got: &[Latent], want: &Array, offset: usize) {
    assert_eq!(got.len() + offset, want.rows(), "{case}/{what}");
    for (k, g) in got.iter().enumerate() {
        let err = max_rel_err(g.data(), want.row(k + offset));
        assert!(err <= TOLERANCE, "{case}/{what} step {k}: rel err {err:e}");
    }
}

#[test]
fn rcm_matches_turbodiffusion() {
    let fx = Fixture::open("rcm.safetensors");
    for (case, mode) in [
        ("rcm_sde_steps4_sigma80", RcmMode::Sde),
        ("rcm_sde_steps1_sigma80", RcmMode::Sde),
        ("rcm_sde_steps3_sigma200", RcmMode::Sde),
        ("rcm_ode_steps4_sigma200", RcmMode::Ode),
        ("rcm_ode_steps2_sigma1600", RcmMode::Ode),
    ] {
        let p = fx.get(&format!("{case}/params")).data;
        let config = RcmConfig::new(p[0] as usize, p[1], mode).unwrap();
        run(&fx, case, config.into());
    }
}

#[test]
fn flow_matches_diffusers_unipc_and_euler() {
    let fx = Fixture::open("flow.safetensors");
    for (case, solver) in [
        ("unipc_steps6_shift5_cfg1", FlowSolver::UniPc),
        ("unipc_steps10_shift3_cfg5", FlowSolver::UniPc),
        ("unipc_steps1_shift5_cfg1", FlowSolver::UniPc),
        ("unipc_steps2_shift5_cfg3.5", FlowSolver::UniPc),
        ("unipc_steps3_shift12_cfg1", FlowSolver::UniPc),
        ("euler_steps6_shift5_cfg5", FlowSolver::Euler),
        ("euler_steps10_shift3_cfg1", FlowSolver::Euler),
    ] {
        let p = fx.get(&format!("{case}/params")).data;
        let config = FlowConfig::new(p[0] as usize, p[1], p[2], solver).unwrap();
        run(&fx, case, config.into());
    }
}

#[test]
fn unipc_last_step_returns_the_final_estimate_exactly() {
    let fx = Fixture::open("flow.safetensors");
    let case = "unipc_steps6_shift5_cfg1";
    let noise = fx.get(&format!("{case}/noise"));
    let shape = noise.shape[1..].to_vec();
    let init = HostTensor::from_f32(
        shape.clone(),
        noise.data.iter().map(|&x| x as f32).collect(),
    )
    .unwrap();
    let mut last = None;
    let mut observer = |e: &StepEvent<'_>| {
        last = Some((e.denoised.clone(), e.latent.clone()));
        ControlFlow::Continue(())
    };
    FlowConfig::new(6, 5.0, 1.0, FlowSolver::UniPc)
        .unwrap()
        .sample(
            &CpuBackend::new(),
            &mut Toy::new(fx.get("toy/cond").data),
            &shape,
            &mut RecordedNoise::new([init]),
            &mut observer,
        )
        .unwrap();
    let (denoised, latent) = last.unwrap();
    assert_eq!(denoised, latent);
}
