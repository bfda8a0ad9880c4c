//! Time-to-ready of each model: seconds from opening its checkpoint until its weights are on the
//! backend, and the bytes read.

use std::time::Instant;

use serde::Serialize;
use turbine_checkpoint::TensorStore;
use turbine_tensor::Backend;

use crate::Result;

/// How one model loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ModelLoad {
    /// From opening the checkpoint until the backend finished its last upload (uploads are
    /// queued asynchronously, so the clock stops only after waiting for them).
    pub seconds: f64,
    /// Tensor bytes of the checkpoint (headers excluded).
    pub bytes: u64,
}

impl ModelLoad {
    /// The load that began at `start` and built a model on `backend` from `store`.
    pub(crate) fn finish<B: Backend>(
        start: Instant,
        backend: &B,
        store: &TensorStore,
    ) -> Result<Self> {
        backend.synchronize()?;
        Ok(Self {
            seconds: start.elapsed().as_secs_f64(),
            bytes: store.data_bytes(),
        })
    }

    /// Checkpoint bytes per second of load time, in GB/s (0 for an instant load).
    pub fn gb_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes as f64 / self.seconds / 1e9
        } else {
            0.0
        }
    }
}

/// How each model of a [`crate::Pipeline`] loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LoadReport {
    pub text_encoder: ModelLoad,
    pub dit: ModelLoad,
    pub vae: ModelLoad,
}
