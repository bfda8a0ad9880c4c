//! Real torch.save checkpoints of the `micro` DiT (tools/golden/wan_dit.py) in the layouts Wan and
//! TurboDiffusion ship: the original (fp32, Conv3d patch embedding), TurboWan (bf16, fp32 norms,
//! Linear patch embedding, `proj_l`) and TurboWan `-quant` (int8 + 128×128 block scales), each
//! converted with `turbine convert`'s code, loaded, and run against diffusers' output (the quantized
//! one against the model with the dequantized weights). Tolerance as in wan_dit.rs.

mod common;

use std::path::Path;

use common::{fixture, load, max_rel_err, open};
use turbine_checkpoint::TensorStore;
use turbine_checkpoint::convert::{ConvertOptions, convert};
use turbine_models::wan::{AttentionMode, WanConfig, WanModel};
use turbine_tensor::{CpuBackend, SlaParams};

fn micro() -> WanConfig {
    WanConfig {
        dim: 128,
        ffn_dim: 256,
        num_heads: 1,
        num_layers: 1,
        text_dim: 32,
        ..WanConfig::tiny()
    }
}

fn converted(pth: &str, dir: &Path) -> TensorStore {
    let out = dir.join(pth.replace(".pth", ".safetensors"));
    convert(
        &fixture(&format!("wan_dit/{pth}")),
        &out,
        &ConvertOptions::default(),
    )
    .unwrap();
    TensorStore::open(&out).unwrap()
}

fn meta<T: std::str::FromStr>(store: &TensorStore, key: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    store.metadata(key).unwrap().parse().unwrap()
}

#[test]
fn original_turbo_and_quantized_checkpoints_load_and_match() {
    let dir = tempfile::tempdir().unwrap();
    let expected = open("wan_dit/micro_expected.safetensors");
    let t: f64 = meta(&expected, "timestep");
    let sla = AttentionMode::Sla(SlaParams {
        topk: meta(&expected, "topk"),
        block_q: meta(&expected, "block_q"),
        block_k: meta(&expected, "block_k"),
    });
    for (pth, mode, out) in [
        ("micro_original.pth", AttentionMode::Dense, "original.out"),
        ("micro_turbo.pth", sla, "turbo.out"),
        ("micro_turbo_quant.pth", sla, "turbo_quant.out"),
    ] {
        let store = converted(pth, dir.path());
        let model = WanModel::load(CpuBackend, micro(), &store, mode).unwrap();
        let ctx = model.encode_context(&load(&expected, "context")).unwrap();
        let got = model.forward(&load(&expected, "x"), t, &ctx, None).unwrap();
        let err = max_rel_err(&got, &load(&expected, out));
        println!("{pth}: max rel err {err:.2e}");
        assert!(err <= 1e-4, "{pth}: {err}");
    }
}

#[test]
fn mismatched_checkpoints_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = converted("micro_turbo_quant.pth", dir.path());
    // The quantized file against the wrong shape: the int8 weight's key and both shapes.
    let wider = WanConfig {
        ffn_dim: 384,
        ..micro()
    };
    let err = WanModel::load(CpuBackend, wider, &store, AttentionMode::Dense)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("blocks.0.ffn.0.int8_weight")
            && err.contains("[384, 128]")
            && err.contains("[256, 128]"),
        "{err}"
    );
    // The tiny preset's config against the micro file.
    let err = WanModel::load(CpuBackend, WanConfig::tiny(), &store, AttentionMode::Dense)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("blocks.0.modulation")
            && err.contains("[1, 6, 256]")
            && err.contains("[1, 6, 128]"),
        "{err}"
    );
}

#[test]
fn corrupted_pth_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("wan_dit/micro_turbo.pth")).unwrap();
    let truncated = dir.path().join("truncated.pth");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = convert(
        &truncated,
        &dir.path().join("out.safetensors"),
        &ConvertOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("truncated.pth"), "{err}");
    assert!(!dir.path().join("out.safetensors").exists());
}
