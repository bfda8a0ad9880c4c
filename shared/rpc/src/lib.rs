//! Shared plumbing of Turbine's gRPC services.
//!
//! - [`tensor`]: tensors as streams of ≤ 1 MiB [`TensorChunk`](turbine_proto::v1::TensorChunk)s,
//!   and their validated reassembly (a malformed stream is `INVALID_ARGUMENT`, never a panic).

pub mod tensor;
