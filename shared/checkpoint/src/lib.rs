//! Checkpoint I/O.
//!
//! Run-time loading reads safetensors through a memory map ([`store::TensorStore`]); PyTorch `.pth`
//! files (torch.save's zip + pickle) are read by [`pth`] and turned into safetensors once by
//! [`convert`]. Model crates ask a store for tensors by name and get errors that name the key and
//! the expected against the found shape or dtype.

pub mod convert;
pub mod error;
pub mod pth;
pub mod store;

pub use error::{Error, Result};
pub use store::{TensorInfo, TensorStore};
