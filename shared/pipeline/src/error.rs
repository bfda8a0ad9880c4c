pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field outside what the models accept; names the field.
    #[error("invalid {field}: {msg}")]
    InvalidRequest { field: &'static str, msg: String },
    /// Model files missing or unreadable; names the file.
    #[error("{0}")]
    Assets(String),
    #[error(transparent)]
    Model(#[from] turbine_models::Error),
    #[error(transparent)]
    Sampler(#[from] turbine_samplers::Error),
    #[error(transparent)]
    Checkpoint(#[from] turbine_checkpoint::Error),
    #[error(transparent)]
    Tensor(#[from] turbine_tensor::Error),
    /// The frame sink (e.g. the MP4 writer) failed.
    #[error("output: {0}")]
    Output(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    pub(crate) fn invalid(field: &'static str, msg: impl Into<String>) -> Self {
        Error::InvalidRequest {
            field,
            msg: msg.into(),
        }
    }
}
