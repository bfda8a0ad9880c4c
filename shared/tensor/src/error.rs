use crate::DType;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // Shape and dtype agreement, checked before any compute.
    #[error("{op}: shape mismatch: {msg} (got {got:?})")]
    Shape {
        op: &'static str,
        msg: String,
        got: Vec<usize>,
    },
    #[error("{op}: unsupported dtype {dtype}")]
    DType { op: &'static str, dtype: DType },
    #[error("element count {len} does not match shape {shape:?}")]
    ElementCount { len: usize, shape: Vec<usize> },
    #[error("{op}: {msg}")]
    Invalid { op: &'static str, msg: String },

    // Backend failures.
    #[error("backend {backend}: {msg}")]
    Backend { backend: &'static str, msg: String },
    /// The device has no room for an allocation even after the backend released its cache: the
    /// request is too large for what is resident, not a fault of the backend (services answer
    /// RESOURCE_EXHAUSTED and keep serving).
    #[error("backend {backend}: out of device memory allocating {bytes} bytes ({detail})")]
    OutOfMemory {
        backend: &'static str,
        bytes: usize,
        detail: String,
    },
    /// An input beyond what a kernel takes (its 32-bit counters, SageSLA's block selection): as
    /// with [`Error::OutOfMemory`], the request is too large for this replica, not a fault.
    #[error("{op}: too large: {msg}")]
    TooLarge { op: &'static str, msg: String },
}

impl Error {
    pub fn shape(op: &'static str, msg: impl Into<String>, got: &[usize]) -> Self {
        Error::Shape {
            op,
            msg: msg.into(),
            got: got.to_vec(),
        }
    }

    /// The work does not fit this backend (its memory, or a kernel's limits): the caller's to
    /// shrink or send elsewhere.
    pub fn exceeds_capacity(&self) -> bool {
        matches!(self, Error::OutOfMemory { .. } | Error::TooLarge { .. })
    }

    pub fn too_large(op: &'static str, msg: impl Into<String>) -> Self {
        Error::TooLarge {
            op,
            msg: msg.into(),
        }
    }

    pub fn invalid(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Invalid {
            op,
            msg: msg.into(),
        }
    }

    /// [`Error::ElementCount`] unless `data` holds a `[rows, cols]` matrix.
    pub fn check_matrix<T>(data: &[T], rows: usize, cols: usize) -> Result<()> {
        if data.len() == rows * cols {
            Ok(())
        } else {
            Err(Error::ElementCount {
                len: data.len(),
                shape: vec![rows, cols],
            })
        }
    }
}
