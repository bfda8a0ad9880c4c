use std::collections::VecDeque;
use std::thread::{self, JoinHandle};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use turbine_tensor::HostTensor;

use crate::normals::normals;
use crate::{Error, Result};

/// Where a sampler's Gaussian noise comes from.
///
/// Samplers draw in a fixed order: one tensor of the latent's shape for the initial state, then
/// (rCM SDE only) one per step, the last step included. A sampler may draw on another thread
/// while the model runs, hence `Send`.
pub trait NoiseSource: Send {
    /// One tensor of standard-normal f32 values, row-major over `shape`.
    fn draw(&mut self, shape: &[usize]) -> Result<Vec<f32>>;
}

/// Reproducible noise from a `u64` seed: ChaCha8 and rand_distr's Ziggurat normal.
///
/// The same seed gives the same latents on every machine and backend, since noise is drawn on the
/// host (a large tensor on several threads, with one thread's values). It does not reproduce
/// PyTorch's CUDA (Philox) streams.
#[derive(Debug, Clone)]
pub struct SeededNoise {
    rng: ChaCha8Rng,
}

impl SeededNoise {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }
}

impl NoiseSource for SeededNoise {
    fn draw(&mut self, shape: &[usize]) -> Result<Vec<f32>> {
        Ok(normals(&mut self.rng, shape.iter().product()))
    }
}

/// [`SeededNoise`] whose first tensor, the initial latent, is drawn from creation on, on threads
/// of its own, so that the caller's work before sampling (encoding the prompt) overlaps it.
/// Draws the same values as [`SeededNoise`] of the same seed.
#[derive(Debug)]
pub struct DrawnAhead {
    /// The first tensor's shape and the thread drawing it.
    first: Option<(Vec<usize>, JoinHandle<FirstDraw>)>,
    /// The stream for the next draws (from the start while `first` is in flight or none was).
    rest: SeededNoise,
}

/// The first tensor and the stream after it.
type FirstDraw = (SeededNoise, Result<Vec<f32>>);

impl DrawnAhead {
    /// Starts drawing the first tensor, of `shape`. Where no thread can be started, the first
    /// [`NoiseSource::draw`] draws it instead.
    pub fn new(seed: u64, shape: &[usize]) -> Self {
        let rest = SeededNoise::new(seed);
        let (mut noise, ahead) = (rest.clone(), shape.to_vec());
        let first = thread::Builder::new()
            .name("noise".into())
            .spawn(move || {
                let first = noise.draw(&ahead);
                (noise, first)
            })
            .ok()
            .map(|thread| (shape.to_vec(), thread));
        Self { first, rest }
    }
}

impl NoiseSource for DrawnAhead {
    fn draw(&mut self, shape: &[usize]) -> Result<Vec<f32>> {
        let Some((ahead, thread)) = self.first.take() else {
            return self.rest.draw(shape);
        };
        let (rest, first) = thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        self.rest = rest;
        if ahead != shape {
            return Err(Error::Noise(format!(
                "the first tensor was drawn ahead for shape {ahead:?}, the sampler asked for \
                 {shape:?}"
            )));
        }
        first
    }
}

/// Replays given tensors in order: injects upstream's noise for bit-level parity tests.
#[derive(Debug, Clone, Default)]
pub struct RecordedNoise {
    tensors: VecDeque<HostTensor>,
}

impl RecordedNoise {
    pub fn new(tensors: impl IntoIterator<Item = HostTensor>) -> Self {
        Self {
            tensors: tensors.into_iter().collect(),
        }
    }

    /// Tensors not drawn yet.
    pub fn remaining(&self) -> usize {
        self.tensors.len()
    }
}

impl NoiseSource for RecordedNoise {
    fn draw(&mut self, shape: &[usize]) -> Result<Vec<f32>> {
        let t = self
            .tensors
            .pop_front()
            .ok_or_else(|| Error::Noise(format!("no recorded tensor left for shape {shape:?}")))?;
        if t.shape != shape {
            return Err(Error::Noise(format!(
                "recorded tensor has shape {:?}, the sampler asked for {shape:?}",
                t.shape
            )));
        }
        Ok(t.to_f32_vec())
    }
}
