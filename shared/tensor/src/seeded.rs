//! Seeded random weights from a counter-based generator, computed identically on the host and on
//! the GPU (`kernels/seeded.cu`), so a benchmark can build its weights on the device and an export
//! of the host's still holds exactly those values.
//!
//! Element `i` of a tensor is a pure function of the tensor's 64-bit key and `i`: the `i`-th
//! output of SplitMix64 started at the key (`mix64(key + (i + 1)·γ)`), with no sequential state,
//! so elements are computed in any order, on any number of threads. From that word:
//!
//! - **uniform** `U[−b, b)`: its top 24 bits as a signed integer `s ∈ [−2²³, 2²³)`, times
//!   `b·2⁻²³`;
//! - **normal** `N(m, σ²)`: Irwin–Hall of its four 16-bit quarters `uₖ`, centred as the integer
//!   `c = 2·Σuₖ − 4·(2¹⁶ − 1)` (mean 0, variance `4·(2³²−1)/3`), times `σ·√3·2⁻¹⁷`, plus `m`.
//!   Bounded at ±3.46σ, which is fine for an initialisation; Box–Muller would need `log`/`cos`,
//!   whose results differ between libm and CUDA.
//!
//! Both integers convert to f32 exactly, and the value is `mean + c·scale`: one correctly
//! rounded multiplication and one addition, which Rust never contracts and the kernel spells out
//! with `__fmul_rn`/`__fadd_rn` (NVRTC would otherwise fuse them into an FMA). The result is
//! rounded to bf16 to nearest even on both sides (`half` here, `cvt.rn.bf16.f32` there).

use half::bf16;
use rayon::prelude::*;

use crate::{HostData, HostTensor, Result};

/// SplitMix64's increment (2⁶⁴/φ).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// Elements one rayon task fills: enough to amortize the task, small enough to spread a tensor
/// over every core.
const TASK_ELEMENTS: usize = 1 << 16;

/// SplitMix64's output function (Stafford's mix 13).
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The distribution of one tensor's values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SeededInit {
    /// `U[−bound, bound)`.
    Uniform { bound: f32 },
    /// `N(mean, std²)`, approximated by Irwin–Hall (see the module doc).
    Normal { mean: f32, std: f32 },
}

/// The values of one seeded tensor: element `i` is [`SeededValues::value`]`(i)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeededValues {
    key: u64,
    normal: bool,
    mean: f32,
    scale: f32,
}

impl SeededValues {
    /// Tensor number `index` of the weights drawn from `seed`, distributed as `init`.
    pub fn new(init: SeededInit, seed: u64, index: u64) -> Self {
        let key = mix64(seed ^ mix64(index.wrapping_add(1).wrapping_mul(GAMMA)));
        match init {
            SeededInit::Uniform { bound } => Self {
                key,
                normal: false,
                mean: 0.0,
                // A power-of-two scaling: exact.
                scale: bound * (-23f32).exp2(),
            },
            SeededInit::Normal { mean, std } => Self {
                key,
                normal: true,
                mean,
                scale: (f64::from(std) * 3f64.sqrt() * (-17f64).exp2()) as f32,
            },
        }
    }

    /// The per-tensor key the kernel takes.
    pub fn key(&self) -> u64 {
        self.key
    }

    /// Whether the values are normal (else uniform).
    pub fn is_normal(&self) -> bool {
        self.normal
    }

    /// The value all elements are offset by (0 for uniform tensors).
    pub fn mean(&self) -> f32 {
        self.mean
    }

    /// The factor of the centred integer (see the module doc).
    pub fn scale(&self) -> f32 {
        self.scale
    }

    /// Element `i`.
    pub fn value(&self, i: u64) -> bf16 {
        let r = mix64(self.key.wrapping_add(i.wrapping_add(1).wrapping_mul(GAMMA)));
        let c = if self.normal {
            let sum = (r & 0xFFFF) + (r >> 16 & 0xFFFF) + (r >> 32 & 0xFFFF) + (r >> 48);
            2 * sum as i64 - 4 * 0xFFFF
        } else {
            (r >> 40) as i64 - (1 << 23)
        };
        // |c| ≤ 2²³: exact in f32.
        bf16::from_f32(self.mean + c as f32 * self.scale)
    }

    /// Elements `0..out.len() / 2` as little-endian bf16 bytes, on all cores.
    pub fn fill(&self, out: &mut [u8]) {
        out.par_chunks_mut(2 * TASK_ELEMENTS)
            .enumerate()
            .for_each(|(task, bytes)| {
                let first = (task * TASK_ELEMENTS) as u64;
                for (i, b) in bytes.chunks_exact_mut(2).enumerate() {
                    b.copy_from_slice(&self.value(first + i as u64).to_le_bytes());
                }
            });
    }

    /// Elements `0..n`, on all cores.
    pub fn values(&self, n: usize) -> Vec<bf16> {
        (0..n)
            .into_par_iter()
            .with_min_len(TASK_ELEMENTS)
            .map(|i| self.value(i as u64))
            .collect()
    }

    /// The bf16 tensor of `shape` holding these values.
    pub fn host(&self, shape: &[usize]) -> Result<HostTensor> {
        let n = shape.iter().product();
        HostTensor::new(shape.to_vec(), HostData::BF16(self.values(n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(v: &[f32]) -> (f64, f64, f32, f32) {
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = v
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n;
        let lo = v.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        (mean, var.sqrt(), lo, hi)
    }

    #[test]
    fn distributions_have_their_moments_and_bounds() {
        let n = 1 << 18;
        let bound = 1.0 / 1536f32.sqrt();
        let u = SeededValues::new(SeededInit::Uniform { bound }, 5, 0)
            .host(&[n])
            .unwrap()
            .to_f32_vec();
        let (mean, std, lo, hi) = stats(&u);
        let want_std = f64::from(bound) / 3f64.sqrt();
        assert!(mean.abs() < 0.01 * want_std, "uniform mean {mean}");
        assert!((std / want_std - 1.0).abs() < 0.01, "uniform std {std}");
        // Rounding to bf16 is monotonic: no value passes the bound rounded the same way.
        let edge = bf16::from_f32(bound).to_f32();
        assert!(lo >= -edge && hi <= edge && lo < -0.99 * bound && hi > 0.99 * bound);

        for (mean_want, std_want) in [(0.0f32, 1.0f32), (1.0, 0.05), (0.0, 1.0 / 1536f32.sqrt())] {
            let init = SeededInit::Normal {
                mean: mean_want,
                std: std_want,
            };
            let z = SeededValues::new(init, 5, 1)
                .host(&[n])
                .unwrap()
                .to_f32_vec();
            let (mean, std, lo, hi) = stats(&z);
            let tol = 0.01 * f64::from(std_want) + f64::from(mean_want.abs()) * 2f64.powi(-8);
            assert!(
                (mean - f64::from(mean_want)).abs() < tol,
                "{init:?}: mean {mean}"
            );
            assert!(
                (std / f64::from(std_want) - 1.0).abs() < 0.02,
                "{init:?}: std {std}"
            );
            // Irwin–Hall of four is bounded at √12 ≈ 3.46 standard deviations.
            // (Rounded to bf16 the way the values are.)
            let hi_edge = bf16::from_f32(mean_want + 3.47 * std_want).to_f32();
            let lo_edge = bf16::from_f32(mean_want - 3.47 * std_want).to_f32();
            assert!(hi <= hi_edge && lo >= lo_edge, "{init:?}: [{lo}, {hi}]");
            assert!(
                hi > mean_want + 2.5 * std_want,
                "{init:?}: tails missing, max {hi}"
            );
        }
    }

    #[test]
    fn values_depend_on_seed_index_and_element_only() {
        let init = SeededInit::Normal {
            mean: 0.0,
            std: 1.0,
        };
        let a = SeededValues::new(init, 1, 0);
        let n = 3 * TASK_ELEMENTS + 5;
        let whole = a.host(&[n]).unwrap();
        // The same elements filled as bytes, and one by one from the middle.
        let mut bytes = vec![0u8; 2 * n];
        a.fill(&mut bytes);
        assert_eq!(bytes, whole.tensor_bytes().bytes());
        let HostData::BF16(values) = &whole.data else {
            panic!("seeded tensors are bf16");
        };
        assert_eq!(a.value(n as u64 - 1), values[n - 1]);
        assert_eq!(a.value(TASK_ELEMENTS as u64), values[TASK_ELEMENTS]);
        // Another seed or tensor index gives other values.
        for other in [SeededValues::new(init, 2, 0), SeededValues::new(init, 1, 1)] {
            let o = other.host(&[64]).unwrap().to_f32_vec();
            assert_ne!(o, whole.to_f32_vec()[..64]);
        }
    }

    #[test]
    fn values_do_not_depend_on_the_thread_count() {
        let v = SeededValues::new(SeededInit::Uniform { bound: 0.02 }, 9, 3);
        let n = 5 * TASK_ELEMENTS + 1;
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| v.host(&[n]).unwrap());
        let many = rayon::ThreadPoolBuilder::new()
            .num_threads(7)
            .build()
            .unwrap()
            .install(|| v.host(&[n]).unwrap());
        assert_eq!(one, many);
    }

    /// Pins the generator: the kernel (`kernels/seeded.cu`) and checkpoints exported before a
    /// change must keep meaning the same values.
    #[test]
    fn known_values() {
        let u = SeededValues::new(SeededInit::Uniform { bound: 0.5 }, 0, 0);
        let z = SeededValues::new(
            SeededInit::Normal {
                mean: 1.0,
                std: 0.05,
            },
            42,
            7,
        );
        let got: Vec<u16> = (0..4)
            .flat_map(|i| [u.value(i).to_bits(), z.value(i).to_bits()])
            .collect();
        // Also computed by an independent Python transcription of the module doc.
        assert_eq!(
            got,
            [48678, 16259, 48748, 16256, 48746, 16245, 48290, 16250]
        );
    }
}
