//! Fixture access and the toy velocity model shared with `tools/golden/samplers.py`.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::PathBuf;

use safetensors::{Dtype, SafeTensors};
use turbine_samplers::{Conditioning, Result, VelocityModel};
use turbine_tensor::{CpuBackend, CpuTensor};

pub struct Fixture {
    bytes: Vec<u8>,
}

/// A fixture tensor widened to f64.
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

impl Array {
    /// Element `i` of the outermost dimension.
    pub fn row(&self, i: usize) -> &[f64] {
        let len = self.data.len() / self.shape[0];
        &self.data[i * len..(i + 1) * len]
    }

    pub fn rows(&self) -> usize {
        self.shape[0]
    }
}

impl Fixture {
    pub fn open(name: &str) -> Self {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/samplers")
            .join(name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (regenerate with tools/golden/samplers.py)",
                path.display()
            )
        });
        Self { bytes }
    }

    pub fn get(&self, name: &str) -> Array {
        let st = SafeTensors::deserialize(&self.bytes).expect("fixture parses");
        let view = st
            .tensor(name)
            .unwrap_or_else(|e| panic!("fixture tensor {name}: {e}"));
        let bytes = view.data();
        let data = if view.dtype() == Dtype::F64 {
            bytes
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
                .collect()
        } else {
            assert_eq!(view.dtype(), Dtype::F32, "fixture tensor {name}");
            bytes
                .chunks_exact(4)
                .map(|b| f64::from(f32::from_le_bytes(b.try_into().unwrap())))
                .collect()
        };
        Array {
            shape: view.shape().to_vec(),
            data,
        }
    }
}

/// `max |got − want| / max |want|`: relative to the tensor's scale, so entries that cross zero do
/// not dominate.
pub fn max_rel_err(got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0.0_f64, |m, w| m.max(w.abs()));
    let diff = got
        .iter()
        .zip(want)
        .fold(0.0_f64, |m, (g, w)| m.max((g - w).abs()));
    diff / scale
}

/// The golden script's toy model: reads the f32 input, computes in f64, answers in f32.
///
/// positive: `v = tanh(0.8·x + 0.5·t/1000) + 0.3·c + sin(4·t/1000)`; negative: `v = tanh(0.6·x − 0.2·t/1000) − 0.1·c`.
pub struct Toy {
    pub cond: Vec<f64>,
    /// Every forward: (timestep, conditioning).
    pub calls: Vec<(f64, Conditioning)>,
}

impl Toy {
    pub fn new(cond: Vec<f64>) -> Self {
        Self {
            cond,
            calls: Vec::new(),
        }
    }
}

impl VelocityModel<CpuBackend> for Toy {
    fn velocity(&mut self, x: &CpuTensor, t: f64, cond: Conditioning) -> Result<CpuTensor> {
        self.calls.push((t, cond));
        let v = x
            .data()
            .iter()
            .zip(&self.cond)
            .map(|(&x, &c)| {
                let x = f64::from(x);
                let v = match cond {
                    Conditioning::Positive => {
                        (0.8 * x + 0.5 * t / 1000.0).tanh() + 0.3 * c + (4.0 * t / 1000.0).sin()
                    }
                    Conditioning::Negative => (0.6 * x - 0.2 * t / 1000.0).tanh() - 0.1 * c,
                };
                v as f32
            })
            .collect();
        Ok(CpuTensor::new(x.shape().to_vec(), v)?)
    }
}
