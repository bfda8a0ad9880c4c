//! CPU sparse-linear attention against the PyTorch fp32 transcription of TurboDiffusion's SLA
//! (tools/golden/wan_dit.py, `sla_fixtures`): q, k, v `[300, 2, 128]`, several top-k and block shapes.
//!
//! Tolerance 1e-4 of the output scale: both sides are f32 with different summation orders over at
//! most 300 keys and 128 channels (~1e-6 relative); the block maps must match exactly.

use std::path::PathBuf;

use turbine_checkpoint::TensorStore;
use turbine_tensor::{
    Backend, CpuBackend, CpuTensor, HostTensor, LinearWeight, LinearWeights, SlaParams, compare,
    sla_block_map,
};

fn fixture() -> TensorStore {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/sla/sla.safetensors");
    TensorStore::open(path).unwrap()
}

fn get(store: &TensorStore, name: &str) -> CpuTensor {
    CpuBackend.upload(&store.get(name).unwrap()).unwrap()
}

fn max_rel_err(got: &CpuTensor, want: &CpuTensor) -> f32 {
    assert_eq!(got.shape(), want.shape());
    compare::max_rel_err(got.data(), want.data())
}

fn proj_l(store: &TensorStore, zero: bool) -> <CpuBackend as Backend>::Linear {
    let (mut w, mut b) = (
        store.get("proj_l.weight").unwrap(),
        store.get("proj_l.bias").unwrap(),
    );
    if zero {
        w = HostTensor::from_f32(w.shape.clone(), vec![0.0; w.numel()]).unwrap();
        b = HostTensor::from_f32(b.shape.clone(), vec![0.0; b.numel()]).unwrap();
    }
    CpuBackend
        .upload_linear(&LinearWeights {
            out_features: 128,
            in_features: 128,
            weight: LinearWeight::Dense(w),
            bias: Some(b),
        })
        .unwrap()
}

#[derive(serde::Deserialize)]
struct Case {
    topk: f64,
    block_q: usize,
    block_k: usize,
}

#[test]
fn sla_matches_reference_and_selects_the_same_blocks() {
    let store = fixture();
    let (q, k, v) = (get(&store, "q"), get(&store, "k"), get(&store, "v"));
    let proj = proj_l(&store, false);
    let n: usize = store.metadata("cases").unwrap().parse().unwrap();
    for i in 0..n {
        let c: Case = serde_json::from_str(store.metadata(&format!("case{i}")).unwrap()).unwrap();
        let params = SlaParams {
            topk: c.topk,
            block_q: c.block_q,
            block_k: c.block_k,
        };
        let out = CpuBackend
            .sla_attention(&q, &k, &v, &params, &proj)
            .unwrap();
        let err = max_rel_err(&out, &get(&store, &format!("case{i}.out")));
        println!("case{i} {params:?}: max rel err {err:.2e}");
        assert!(err <= 1e-4, "case{i}: {err}");

        // The reference map is `[H, Qblk, Kblk]` of 0/1.
        let want = store.get(&format!("case{i}.block_map")).unwrap();
        let (qb, kb) = (want.shape[1], want.shape[2]);
        let want = want.to_f32_vec();
        let got = sla_block_map(&q, &k, &params).unwrap();
        for (h, rows) in got.iter().enumerate() {
            for (r, chosen) in rows.iter().enumerate() {
                let expected: Vec<usize> = (0..kb)
                    .filter(|&j| want[(h * qb + r) * kb + j] == 1.0)
                    .collect();
                assert_eq!(chosen, &expected, "case{i} head {h} query block {r}");
                assert_eq!(chosen.len(), params.blocks_kept(kb));
            }
        }
    }
}

#[test]
fn full_topk_with_zero_proj_l_is_dense_attention() {
    let store = fixture();
    let (q, k, v) = (get(&store, "q"), get(&store, "k"), get(&store, "v"));
    let dense = CpuBackend.attention(&q, &k, &v).unwrap();
    assert!(max_rel_err(&dense, &get(&store, "dense.out")) <= 1e-5);
    for (block_q, block_k) in [(64, 128), (128, 64)] {
        let params = SlaParams {
            topk: 1.0,
            block_q,
            block_k,
        };
        let sla = CpuBackend
            .sla_attention(&q, &k, &v, &params, &proj_l(&store, true))
            .unwrap();
        let err = max_rel_err(&sla, &dense);
        assert!(err <= 1e-6, "{block_q}x{block_k}: {err}");
    }
}

#[test]
fn topk_keeps_at_least_one_block() {
    let p = SlaParams {
        topk: 0.1,
        block_q: 64,
        block_k: 128,
    };
    assert_eq!(p.blocks_kept(3), 1);
    assert_eq!(p.blocks_kept(256), 25);
    assert!(SlaParams { topk: 0.0, ..p }.validate().is_err());
    assert!(SlaParams { block_k: 0, ..p }.validate().is_err());
}
