mod common;

use common::Fixture;
use turbine_samplers::{FlowConfig, FlowSolver, RcmConfig, RcmMode};

#[test]
fn rcm_t2v_default_feeds_upstream_timesteps() {
    let c = RcmConfig::new(4, RcmConfig::SIGMA_MAX_T2V, RcmMode::Sde).unwrap();
    let s = c.schedule();
    assert_eq!(s.timesteps(), [988.0, 932.0, 852.0, 608.0]);
    let expected_s = [0.987654, 0.933781, 0.852895, 0.608979, 0.0];
    for (got, want) in s.sigmas().iter().zip(expected_s) {
        assert!((got - want).abs() < 1e-6, "{:?}", s.sigmas());
    }
}

#[test]
fn rcm_i2v_default_starts_at_996() {
    let c = RcmConfig::new(4, RcmConfig::SIGMA_MAX_I2V, RcmMode::Sde).unwrap();
    assert_eq!(c.schedule().timesteps(), [996.0, 932.0, 852.0, 608.0]);
}

#[test]
fn rcm_schedules_match_fixture() {
    let fx = Fixture::open("schedules.safetensors");
    for sigma_max in [80, 200, 1600] {
        for steps in 1..=4 {
            let key = format!("rcm/steps{steps}_sigma{sigma_max}");
            let s = RcmConfig::new(steps, f64::from(sigma_max), RcmMode::Sde)
                .unwrap()
                .schedule();
            assert_eq!(s.steps(), steps);
            // Fed timesteps are bf16 values: any slip in the rounding chain shows as a whole step.
            assert_eq!(
                s.timesteps(),
                fx.get(&format!("{key}/timesteps")).data,
                "{key}"
            );
            // sin/cos may differ from PyTorch's in the last ulp.
            let want = fx.get(&format!("{key}/sigmas")).data;
            for (g, w) in s.sigmas().iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-15,
                    "{key}: {:?} vs {want:?}",
                    s.sigmas()
                );
            }
        }
    }
}

#[test]
fn flow_schedules_match_diffusers_with_wan_sigmas() {
    let fx = Fixture::open("schedules.safetensors");
    for (steps, shift) in [(6, 5.0), (10, 3.0), (40, 12.0), (50, 5.0)] {
        let key = format!("flow/steps{steps}_shift{shift}");
        let s = FlowConfig::new(steps, shift, 1.0, FlowSolver::UniPc)
            .unwrap()
            .schedule();
        // Both sides are the same f64 arithmetic narrowed to f32: exact.
        assert_eq!(s.sigmas(), fx.get(&format!("{key}/sigmas")).data, "{key}");
        assert_eq!(
            s.timesteps(),
            fx.get(&format!("{key}/timesteps")).data,
            "{key}"
        );
        assert_eq!(*s.sigmas().last().unwrap(), 0.0);
    }
}
