//! The CPU Wan DiT against diffusers' `WanTransformer3DModel` (fp32) and the PyTorch SLA
//! transcription: fixtures from tools/golden/wan_dit.py.
//!
//! Tolerance: 1e-4 of the output's scale. Both sides compute in f32 with the same weights; they
//! differ in summation order (GEMM blocking, softmax) only, which over two blocks of K ≤ 384 dot
//! products amounts to a few 1e-6 relative; 1e-4 leaves room for platform differences while still
//! catching any wrong formula (a missing term or misplaced channel shows as ≥ 1e-2).

mod common;

use common::{load, max_rel_err, open, renamed};
use turbine_checkpoint::TensorStore;
use turbine_models::wan::{AttentionMode, WanConfig, WanModel, weights::to_diffusers};
use turbine_tensor::{Backend, CpuBackend, SlaParams};

const TOL: f32 = 1e-4;

fn tiny(store: &TensorStore, mode: AttentionMode) -> WanModel<CpuBackend> {
    WanModel::load(CpuBackend, WanConfig::tiny(), store, mode).unwrap()
}

fn run(model: &WanModel<CpuBackend>, cases: &TensorStore, case: &str, t: f64) -> f32 {
    let ctx = model
        .encode_context(&load(cases, &format!("{case}.context")))
        .unwrap();
    let out = model
        .forward(&load(cases, &format!("{case}.x")), t, &ctx, None)
        .unwrap();
    max_rel_err(&out, &load(cases, &format!("{case}.out")))
}

fn meta_f64(store: &TensorStore, key: &str) -> f64 {
    store.metadata(key).unwrap().parse().unwrap()
}

#[test]
fn dense_forward_matches_diffusers() {
    let weights = open("wan_dit/tiny.safetensors");
    let cases = open("wan_dit/forward.safetensors");
    let mut model = tiny(&weights, AttentionMode::Dense);
    let n: usize = cases.metadata("dense_cases").unwrap().parse().unwrap();
    assert!(n >= 4);
    for i in 0..n {
        let case = format!("case{i}");
        let t = meta_f64(&cases, &format!("{case}.timestep"));
        let err = run(&model, &cases, &case, t);
        println!("{case}: max rel err {err:.2e}");
        assert!(err <= TOL, "{case}: {err}");
        // Dense Sage attention is 8-bit on GPUs that have it and exact on the CPU.
        model.set_attention(AttentionMode::Sage).unwrap();
        assert_eq!(run(&model, &cases, &case, t), err, "{case} with Sage");
        model.set_attention(AttentionMode::Dense).unwrap();
    }
}

#[derive(serde::Deserialize)]
struct SlaCase {
    timestep: f64,
    topk: f64,
    block_q: usize,
    block_k: usize,
}

#[test]
fn sla_forward_matches_reference() {
    let weights = open("wan_dit/tiny.safetensors");
    let cases = open("wan_dit/forward.safetensors");
    let mut model = tiny(&weights, AttentionMode::Dense);
    let n: usize = cases.metadata("sla_cases").unwrap().parse().unwrap();
    for i in 0..n {
        let case = format!("sla{i}");
        let p: SlaCase = serde_json::from_str(cases.metadata(&case).unwrap()).unwrap();
        let params = SlaParams {
            topk: p.topk,
            block_q: p.block_q,
            block_k: p.block_k,
        };
        model.set_attention(AttentionMode::Sla(params)).unwrap();
        let err = run(&model, &cases, &case, p.timestep);
        println!("{case} ({params:?}): max rel err {err:.2e}");
        assert!(err <= TOL, "{case}: {err}");
        // SageSLA is SLA with 8-bit numerics, which the CPU computes exactly.
        model.set_attention(AttentionMode::SageSla(params)).unwrap();
        assert_eq!(
            run(&model, &cases, &case, p.timestep),
            err,
            "{case} as SageSLA"
        );
        // The case must exercise SLA: dense attention gives a clearly different output.
        model.set_attention(AttentionMode::Dense).unwrap();
        assert!(
            run(&model, &cases, &case, p.timestep) > 1e-2,
            "{case} does not separate SLA from dense"
        );
    }
}

#[test]
fn diffusers_and_prefixed_layouts_give_the_same_output() {
    let weights = open("wan_dit/tiny.safetensors");
    let cases = open("wan_dit/forward.safetensors");
    let reference = tiny(&weights, AttentionMode::Dense);
    let ctx = reference
        .encode_context(&load(&cases, "case1.context"))
        .unwrap();
    let x = load(&cases, "case1.x");
    let want = reference.forward(&x, 608.0, &ctx, None).unwrap();
    for rename in [to_diffusers as fn(&str) -> String, |n: &str| {
        format!("net.{n}")
    }] {
        let store = renamed(&weights, |n| Some(rename(n)));
        let model = tiny(&store, AttentionMode::Dense);
        let ctx = model
            .encode_context(&load(&cases, "case1.context"))
            .unwrap();
        let got = model.forward(&x, 608.0, &ctx, None).unwrap();
        assert_eq!(got.data(), want.data());
    }
}

#[test]
fn sla_without_proj_l_is_an_error_naming_the_key() {
    let weights = open("wan_dit/tiny.safetensors");
    let store = renamed(&weights, |n| Some(n.replace("proj_l", "proj_x")));
    let sla = AttentionMode::Sla(SlaParams {
        topk: 0.1,
        block_q: 64,
        block_k: 128,
    });
    let err = WanModel::load(CpuBackend, WanConfig::tiny(), &store, sla)
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("blocks.0.self_attn.attn_op.local_attn.proj_l.weight"),
        "{err}"
    );
    // Dense attention does not need it.
    let mut model = tiny(&store, AttentionMode::Dense);
    assert!(model.set_attention(sla).is_err());
}

#[test]
fn load_errors_name_key_and_shapes() {
    let weights = open("wan_dit/tiny.safetensors");
    let wrong = WanConfig {
        ffn_dim: 512,
        ..WanConfig::tiny()
    };
    let err = WanModel::load(CpuBackend, wrong, &weights, AttentionMode::Dense)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("blocks.0.ffn.0.weight")
            && err.contains("[512, 256]")
            && err.contains("[384, 256]"),
        "{err}"
    );

    let store = renamed(&weights, |n| {
        (n != "blocks.1.norm3.bias").then(|| n.to_string())
    });
    let err = WanModel::load(CpuBackend, WanConfig::tiny(), &store, AttentionMode::Dense)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("missing tensor `blocks.1.norm3.bias`"),
        "{err}"
    );

    let not_wan = open("sla/sla.safetensors");
    let err = WanModel::load(
        CpuBackend,
        WanConfig::tiny(),
        &not_wan,
        AttentionMode::Dense,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("not a Wan DiT checkpoint"), "{err}");
}

#[test]
fn bad_inputs_are_errors() {
    let weights = open("wan_dit/tiny.safetensors");
    let model = tiny(&weights, AttentionMode::Dense);
    let b = CpuBackend;
    let ctx_t = b
        .upload(&turbine_tensor::HostTensor::from_f32([3, 64], vec![0.5; 192]).unwrap())
        .unwrap();
    let ctx = model.encode_context(&ctx_t).unwrap();
    let latents = |shape: [usize; 4]| {
        let n = shape.iter().product();
        b.upload(&turbine_tensor::HostTensor::from_f32(shape, vec![0.1; n]).unwrap())
            .unwrap()
    };
    for (shape, needle) in [
        ([16, 1, 3, 4], "multiple of the patch"),
        ([15, 1, 4, 4], "channels"),
    ] {
        let err = model
            .forward(&latents(shape), 1.0, &ctx, None)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(needle), "{err}");
    }
    let err = model
        .forward(&latents([16, 1, 4, 4]), f64::NAN, &ctx, None)
        .err()
        .unwrap();
    assert!(err.to_string().contains("timestep"));
    let bad_ctx = b
        .upload(&turbine_tensor::HostTensor::from_f32([3, 32], vec![0.5; 96]).unwrap())
        .unwrap();
    assert!(model.encode_context(&bad_ctx).is_err());
}
