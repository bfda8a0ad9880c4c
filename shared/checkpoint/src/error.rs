use std::path::PathBuf;

use turbine_tensor::DType;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // Files.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid safetensors file: {msg}")]
    Safetensors { path: PathBuf, msg: String },
    #[error("{path}: not a valid PyTorch checkpoint: {msg}")]
    Pth { path: PathBuf, msg: String },
    #[error("{path}: {msg}")]
    Convert { path: PathBuf, msg: String },
    #[error("{path}: tensor `{key}`: {msg}")]
    PthTensor {
        path: PathBuf,
        key: String,
        msg: String,
    },

    // Tensors.
    #[error("missing tensor `{key}`{hint}")]
    Missing { key: String, hint: String },
    #[error("tensor `{key}`: expected shape {expected:?}, found {found:?}")]
    ShapeMismatch {
        key: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("tensor `{key}`: expected dtype {expected}, found {found}")]
    DTypeMismatch {
        key: String,
        expected: String,
        found: String,
    },
    #[error("tensor `{key}`: unsupported dtype {dtype}")]
    UnsupportedDType { key: String, dtype: String },
    #[error("tensor `{key}`: {msg}")]
    Invalid { key: String, msg: String },
    #[error(transparent)]
    Tensor(#[from] turbine_tensor::Error),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn missing(key: impl Into<String>) -> Self {
        Error::Missing {
            key: key.into(),
            hint: String::new(),
        }
    }

    pub fn dtype_mismatch(key: &str, expected: &[DType], found: impl ToString) -> Self {
        let expected = expected
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(" or ");
        Error::DTypeMismatch {
            key: key.to_string(),
            expected,
            found: found.to_string(),
        }
    }
}
