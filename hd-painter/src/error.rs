//! The error type of the entry point.

use hd_painter_sampling::SamplingError;
use hd_painter_sr::SrError;

/// What can stop a run: an error of the first stage (bad input, a model that does not fit the
/// method, cancellation, ...) or of the SR stage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error of loading, the first stage or the inputs.
    #[error(transparent)]
    Sampling(#[from] SamplingError),
    /// An error of the SR stage.
    #[error(transparent)]
    Sr(#[from] SrError),
}

impl Error {
    /// Whether the step callback cancelled the run.
    pub fn is_cancelled(&self) -> bool {
        matches!(
            self,
            Error::Sampling(SamplingError::Cancelled { .. })
                | Error::Sr(SrError::Sampling(SamplingError::Cancelled { .. }))
        )
    }
}

impl From<hd_painter_core::CoreError> for Error {
    fn from(e: hd_painter_core::CoreError) -> Self {
        Error::Sampling(e.into())
    }
}

impl From<hd_painter_models::ModelsError> for Error {
    fn from(e: hd_painter_models::ModelsError) -> Self {
        Error::Sampling(e.into())
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
