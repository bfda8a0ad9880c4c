//! Fixture access and error measures shared by the model tests.

use std::path::PathBuf;

use turbine_checkpoint::TensorStore;
use turbine_tensor::{Backend, CpuBackend, CpuTensor};

pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(rel)
}

pub fn open(rel: &str) -> TensorStore {
    TensorStore::open(fixture(rel)).unwrap_or_else(|e| panic!("fixture {rel}: {e}"))
}

pub fn load(store: &TensorStore, name: &str) -> CpuTensor {
    CpuBackend.upload(&store.get(name).unwrap()).unwrap()
}

/// `max|a − b| / max|b|`: the error relative to the reference's scale, so near-zero reference
/// entries do not dominate.
pub fn max_rel_err(got: &CpuTensor, want: &CpuTensor) -> f32 {
    assert_eq!(got.shape(), want.shape(), "shapes differ");
    let scale = want.data().iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = got
        .data()
        .iter()
        .zip(want.data())
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        got.data().iter().all(|v| v.is_finite()),
        "non-finite output"
    );
    diff / scale
}
