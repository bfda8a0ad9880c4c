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
}

impl Error {
    pub fn shape(op: &'static str, msg: impl Into<String>, got: &[usize]) -> Self {
        Error::Shape {
            op,
            msg: msg.into(),
            got: got.to_vec(),
        }
    }

    pub fn invalid(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Invalid {
            op,
            msg: msg.into(),
        }
    }
}
