use rayon::prelude::*;
use turbine_tensor::{HostData, HostTensor};

use crate::{Error, Result};

/// The sampler state: a dense row-major f64 tensor on the host.
///
/// TurboDiffusion keeps its rCM state in float64 and Wan's UniPC mixes up to three past estimates,
/// so the update arithmetic stays in f64 here whatever the backend computes in; only the model sees
/// an f32 copy (see the crate docs).
#[derive(Clone, PartialEq)]
pub struct Latent {
    shape: Vec<usize>,
    data: Vec<f64>,
}

impl Latent {
    pub fn new(shape: impl Into<Vec<usize>>, data: Vec<f64>) -> Result<Self> {
        let shape = shape.into();
        if shape.iter().product::<usize>() != data.len() {
            return Err(Error::ElementCount {
                len: data.len(),
                shape,
            });
        }
        Ok(Self { shape, data })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn data(&self) -> &[f64] {
        &self.data
    }

    pub fn into_data(self) -> Vec<f64> {
        self.data
    }

    /// The f32 copy handed to backends (round to nearest even).
    pub fn to_host_tensor(&self) -> HostTensor {
        HostTensor {
            shape: self.shape.clone(),
            data: HostData::F32(self.data.par_iter().map(|&x| x as f32).collect()),
        }
    }

    /// Same-shape latent from `f(i)` for every element index, on all cores: a sampler step makes
    /// a few of these from millions of elements between two forwards on the GPU, which waits.
    pub(crate) fn from_fn(shape: &[usize], f: impl Fn(usize) -> f64 + Sync + Send) -> Self {
        let len = shape.iter().product();
        Self {
            shape: shape.to_vec(),
            data: (0..len).into_par_iter().map(f).collect(),
        }
    }
}

/// Shape only: latents run to millions of elements.
impl std::fmt::Debug for Latent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Latent{:?}", self.shape)
    }
}
