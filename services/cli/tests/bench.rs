//! `turbine bench` as a user runs it, on the CPU backend and the tiny preset: the JSON report holds
//! the timing, FLOP and shape fields; the exported weights load as a checkpoint that reproduces
//! the dumped outputs; bad sizes exit non-zero with a message naming the flag.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use turbine_checkpoint::TensorStore;
use turbine_models::wan::{AttentionMode, WanConfig, WanModel};
use turbine_tensor::{Backend, CpuBackend, compare};

fn turbine(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_turbine"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run turbine")
}

/// `turbine bench` on the tiny preset, CPU, a 64x32 5-frame video and 7 text tokens, no warm-up,
/// writing b.json, plus `extra`.
fn tiny_bench(extra: &[&str], dir: &Path) -> Output {
    let mut args = vec![
        "bench",
        "--model",
        "tiny",
        "--backend",
        "cpu",
        "--size",
        "64x32",
        "--frames",
        "5",
        "--text-tokens",
        "7",
        "--warmup",
        "0",
        "--json",
        "b.json",
    ];
    args.extend_from_slice(extra);
    turbine(&args, dir)
}

#[test]
fn reports_json_and_exports_weights_that_reproduce_the_dump() {
    let dir = tempfile::tempdir().unwrap();
    let out = tiny_bench(
        &[
            "--iters",
            "2",
            "--seed",
            "3",
            "--export-weights",
            "w.safetensors",
            "--dump",
            "d.safetensors",
            "--dump-timesteps",
            "900,10",
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("b.json")).unwrap()).unwrap();
    assert_eq!(report["latent"], serde_json::json!([16, 2, 4, 8]));
    assert_eq!(report["tokens"], 16);
    assert!(report["forward"]["median_ms"].as_f64().unwrap() > 0.0);
    // The CPU has no energy counter to read: null, not a made-up zero.
    assert!(report["forward"]["energy"].is_null(), "{report}");
    let (load, weights) = (report["load_s"].as_f64(), report["weights_s"].as_f64());
    assert!(weights.unwrap() > 0.0 && weights <= load, "{report}");
    let flops = WanConfig::tiny().forward_flops(16, 7);
    assert_eq!(report["flops_per_forward"].as_f64().unwrap(), flops);

    // The exported checkpoint is an ordinary one: loading it and running the dumped inputs gives
    // the dumped outputs.
    let weights = TensorStore::open(dir.path().join("w.safetensors")).unwrap();
    let dump = TensorStore::open(dir.path().join("d.safetensors")).unwrap();
    assert_eq!(dump.metadata("timesteps"), Some("900,10"));
    let b = CpuBackend;
    let model = WanModel::load(b, WanConfig::tiny(), &weights, AttentionMode::Dense).unwrap();
    let ctx = model
        .encode_context(&b.upload(&dump.get("context").unwrap()).unwrap())
        .unwrap();
    let x = b.upload(&dump.get("x").unwrap()).unwrap();
    for (i, t) in [900.0, 10.0].into_iter().enumerate() {
        let got = b
            .download(&model.forward(&x, t, &ctx, None).unwrap())
            .unwrap();
        let want = dump.get(&format!("out{i}")).unwrap();
        assert_eq!(
            compare::max_rel_err(&got.to_f32_vec(), &want.to_f32_vec()),
            0.0
        );
    }
}

#[test]
fn bad_sizes_name_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    for (args, message) in [
        (
            vec!["--model", "tiny", "--size", "65x32"],
            "multiples of 16",
        ),
        (
            vec!["--model", "tiny", "--frames", "6"],
            "--frames must be 4k+1",
        ),
        (vec!["--model", "huge"], "unknown preset"),
    ] {
        let mut all = vec!["bench", "--backend", "cpu", "--iters", "1"];
        all.extend(args);
        let out = turbine(&all, dir.path());
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn sparse_attention_modes_add_proj_l_to_random_weights() {
    let dir = tempfile::tempdir().unwrap();
    for (mode, name) in [
        ("sagesla", "sagesla topk 0.5 blocks 64x128"),
        ("sla", "sla topk 0.5 blocks 128x64"),
        ("sage", "sage"),
    ] {
        let out = tiny_bench(
            &["--iters", "1", "--attention", mode, "--topk", "0.5"],
            dir.path(),
        );
        assert!(
            out.status.success(),
            "{mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("b.json")).unwrap()).unwrap();
        assert_eq!(report["attention"], name);
    }
}
