//! How the samplers drive the model and the observer: forwards per step, cancellation, checks.

mod common;

use std::ops::ControlFlow;

use common::Toy;
use turbine_samplers::{
    Conditioning, Error, FlowConfig, FlowSolver, RcmConfig, RcmMode, Result, SamplerConfig,
    SeededNoise, StepEvent, VelocityModel,
};
use turbine_tensor::{CpuBackend, CpuTensor};

const SHAPE: [usize; 3] = [2, 3, 4];

fn toy() -> Toy {
    Toy::new((0..24).map(|i| f64::from(i) / 24.0 - 0.5).collect())
}

fn sample(config: SamplerConfig, model: &mut Toy) -> Result<turbine_samplers::Latent> {
    config.sample(
        &CpuBackend::new(),
        model,
        &SHAPE,
        &mut SeededNoise::new(1),
        &mut (),
    )
}

#[test]
fn guidance_adds_one_negative_forward_per_step() {
    use Conditioning::{Negative, Positive};
    let guided = FlowConfig::new(3, 5.0, 5.0, FlowSolver::UniPc).unwrap();
    let mut model = toy();
    sample(guided.into(), &mut model).unwrap();
    let t = guided.schedule().timesteps().to_vec();
    let expected: Vec<_> = t
        .iter()
        .flat_map(|&t| [(t, Positive), (t, Negative)])
        .collect();
    assert_eq!(model.calls, expected);

    let unguided = FlowConfig::new(3, 5.0, 1.0, FlowSolver::Euler).unwrap();
    let mut model = toy();
    sample(unguided.into(), &mut model).unwrap();
    assert_eq!(
        model.calls,
        t.iter().map(|&t| (t, Positive)).collect::<Vec<_>>()
    );

    let rcm = RcmConfig::new(4, 80.0, RcmMode::Sde).unwrap();
    let mut model = toy();
    sample(rcm.into(), &mut model).unwrap();
    let fed: Vec<f64> = model.calls.iter().map(|&(t, _)| t).collect();
    assert_eq!(fed, [988.0, 932.0, 852.0, 608.0]);
    assert!(model.calls.iter().all(|&(_, c)| c == Positive));
}

#[test]
fn same_seed_reproduces_the_sample() {
    let config: SamplerConfig = RcmConfig::new(2, 80.0, RcmMode::Sde).unwrap().into();
    let a = sample(config, &mut toy()).unwrap();
    let b = sample(config, &mut toy()).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.shape(), SHAPE);
}

#[test]
fn observer_break_cancels_between_steps() {
    let config = FlowConfig::new(10, 5.0, 1.0, FlowSolver::UniPc).unwrap();
    let mut model = toy();
    let mut seen = Vec::new();
    let mut observer = |e: &StepEvent<'_>| {
        seen.push((e.index, e.total));
        if e.index == 2 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    let r = config.sample(
        &CpuBackend::new(),
        &mut model,
        &SHAPE,
        &mut SeededNoise::new(0),
        &mut observer,
    );
    assert!(matches!(
        r,
        Err(Error::Cancelled {
            completed: 3,
            total: 10
        })
    ));
    assert_eq!(seen, [(0, 10), (1, 10), (2, 10)]);
    assert_eq!(model.calls.len(), 3, "no forward after the break");
}

/// Answers with the wrong shape, or fails outright.
struct Broken {
    fail: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("weights not loaded")]
struct NotLoaded;

impl VelocityModel<CpuBackend> for Broken {
    fn velocity(&mut self, _: &CpuTensor, _: f64, _: Conditioning) -> Result<CpuTensor> {
        if self.fail {
            return Err(Error::Model(Box::new(NotLoaded)));
        }
        Ok(CpuTensor::new(vec![24], vec![0.0; 24])?)
    }
}

#[test]
fn model_output_shape_and_failures_surface_as_errors() {
    let config = RcmConfig::new(1, 80.0, RcmMode::Ode).unwrap();
    let run = |fail| {
        config.sample(
            &CpuBackend::new(),
            &mut Broken { fail },
            &SHAPE,
            &mut SeededNoise::new(0),
            &mut (),
        )
    };
    match run(false) {
        Err(Error::ModelOutputShape { expected, got }) => {
            assert_eq!((expected, got), (SHAPE.to_vec(), vec![24]));
        }
        other => panic!("{other:?}"),
    }
    let e = run(true).unwrap_err();
    assert_eq!(e.to_string(), "velocity model: weights not loaded");
}
