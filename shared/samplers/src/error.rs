pub type Result<T> = std::result::Result<T, Error>;

/// Everything a sampler can fail with. Parameter errors are raised when a config is built, so a
/// validated config never fails for its own values mid-run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid {name} = {value}: {expected}")]
    InvalidParameter {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("{len} elements do not fill shape {shape:?}")]
    ElementCount { len: usize, shape: Vec<usize> },
    #[error("model output has shape {got:?}, the latent has {expected:?}")]
    ModelOutputShape {
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    #[error("noise source: {0}")]
    Noise(String),
    #[error("sampling cancelled after {completed} of {total} steps")]
    Cancelled { completed: usize, total: usize },
    #[error(transparent)]
    Tensor(#[from] turbine_tensor::Error),
    /// A failure inside the velocity model that is not a tensor-runtime error.
    #[error("velocity model: {0}")]
    Model(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    pub(crate) fn invalid(
        name: &'static str,
        value: impl std::fmt::Display,
        expected: &'static str,
    ) -> Self {
        Error::InvalidParameter {
            name,
            value: value.to_string(),
            expected,
        }
    }
}
