use turbine_samplers::{Error, FlowConfig, FlowSolver, RcmConfig, RcmMode};

fn assert_invalid<T: std::fmt::Debug>(r: Result<T, Error>, name: &str) {
    match r {
        Err(Error::InvalidParameter { name: got, .. }) => assert_eq!(got, name),
        other => panic!("expected an invalid {name}, got {other:?}"),
    }
}

#[test]
fn rcm_rejects_out_of_range_parameters() {
    for steps in [0, 5, 50] {
        assert_invalid(RcmConfig::new(steps, 80.0, RcmMode::Sde), "rCM steps");
    }
    for sigma_max in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert_invalid(RcmConfig::new(4, sigma_max, RcmMode::Ode), "rCM sigma_max");
    }
    for steps in 1..=RcmConfig::MAX_STEPS {
        assert!(RcmConfig::new(steps, 1600.0, RcmMode::Sde).is_ok());
    }
}

#[test]
fn flow_rejects_out_of_range_parameters() {
    let ok = |steps, shift, guidance| FlowConfig::new(steps, shift, guidance, FlowSolver::UniPc);
    assert_invalid(ok(0, 5.0, 5.0), "flow steps");
    for shift in [0.0, -3.0, f64::NAN, f64::INFINITY] {
        assert_invalid(ok(10, shift, 5.0), "flow shift");
    }
    for guidance in [0.99, 0.0, -5.0, f64::NAN, f64::INFINITY] {
        assert_invalid(ok(10, 5.0, guidance), "guidance scale");
    }
    let c = ok(1, 0.5, 1.0).unwrap();
    assert_eq!((c.steps(), c.shift(), c.guidance()), (1, 0.5, 1.0));
}

#[test]
fn error_messages_name_the_parameter_and_the_range() {
    let e = RcmConfig::new(5, 80.0, RcmMode::Sde).unwrap_err();
    assert_eq!(e.to_string(), "invalid rCM steps = 5: 1 to 4");
}
