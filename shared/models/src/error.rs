pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid model config: {0}")]
    Config(String),
    #[error("invalid model input: {0}")]
    Input(String),
    #[error(transparent)]
    Checkpoint(#[from] turbine_checkpoint::Error),
    #[error(transparent)]
    Tensor(#[from] turbine_tensor::Error),
}
