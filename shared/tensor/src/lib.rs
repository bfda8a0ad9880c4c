//! Turbine's tensor runtime.
//!
//! Models are written once against the [`Backend`] trait: a small, op-level interface (GEMM with bias,
//! norms with modulation, RoPE, attention, elementwise ops) sized for the fixed model set Turbine runs
//! (Wan DiT, umT5, Wan VAE). The CPU backend in [`cpu`] computes everything in f32 and is the numerical
//! oracle every other backend is compared against; the CUDA backend in [`cuda`] runs the same ops
//! on an NVIDIA GPU.

pub mod backend;
pub mod compare;
pub mod cpu;
pub mod cuda;
mod download;
pub mod dtype;
pub mod error;
pub mod fp8;
pub mod host;
pub mod int8;
pub mod rope;
pub mod seeded;
mod shapes;

pub use backend::{Backend, ConvInput, LinearWeight, LinearWeights, QUANT_BLOCK, SlaParams};
pub use cpu::{CpuBackend, CpuTensor, sla_block_map, top_blocks};
pub use cuda::{CudaBackend, CudaLinear, CudaOptions, CudaTensor};
pub use download::PendingDownload;
pub use dtype::DType;
pub use error::{Error, Result};
pub use host::{HostBytes, HostData, HostTensor, TensorBytes};
pub use seeded::{SeededInit, SeededValues};
