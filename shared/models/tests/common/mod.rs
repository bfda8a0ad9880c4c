//! Fixture access and error measures shared by the model tests.

use std::collections::HashMap;
use std::path::PathBuf;

use safetensors::tensor::TensorView;
use turbine_checkpoint::TensorStore;
use turbine_tensor::{Backend, CpuBackend, CpuTensor, DType, compare};

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

/// [`compare::max_rel_err`] of two same-shape tensors, with finite output required.
pub fn max_rel_err(got: &CpuTensor, want: &CpuTensor) -> f32 {
    assert_eq!(got.shape(), want.shape(), "shapes differ");
    assert!(
        got.data().iter().all(|v| v.is_finite()),
        "non-finite output"
    );
    compare::max_rel_err(got.data(), want.data())
}

/// An in-memory copy of `store` with every tensor renamed by `rename` (`None` drops it): other
/// checkpoint layouts, prefixes and missing keys without extra fixture files.
#[allow(dead_code)] // each test binary compiles this module; not all of them rename
pub fn renamed(store: &TensorStore, rename: impl Fn(&str) -> Option<String>) -> TensorStore {
    let mut views = HashMap::new();
    for name in store.names() {
        let Some(new) = rename(name) else { continue };
        let info = store.info(name).unwrap();
        let dtype = match info.dtype {
            DType::F32 => safetensors::Dtype::F32,
            DType::F16 => safetensors::Dtype::F16,
            DType::BF16 => safetensors::Dtype::BF16,
            DType::I8 => safetensors::Dtype::I8,
        };
        let view = TensorView::new(dtype, info.shape.clone(), store.bytes(name).unwrap()).unwrap();
        views.insert(new, view);
    }
    let bytes = safetensors::serialize(views, None).unwrap();
    TensorStore::from_bytes("<renamed>", bytes).unwrap()
}
