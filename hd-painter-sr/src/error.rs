//! The error type of `hd-painter-sr`.

/// What can stop the super-resolution stage or a Poisson blend.
#[derive(Debug, thiserror::Error)]
pub enum SrError {
    /// The run would need more memory than the configured budget; nothing heavy was started.
    #[error(
        "{what} needs about {:.2} GiB, over the {:.2} GiB budget",
        *needed as f64 / GIB, *budget as f64 / GIB
    )]
    MemoryBudget {
        /// The run that was refused.
        what: String,
        /// Estimated peak bytes.
        needed: u64,
        /// The budget in bytes.
        budget: u64,
    },
    /// Inputs that do not fit together.
    #[error("invalid super-resolution input: {0}")]
    InvalidInput(String),
    /// An error of the sampling stage (cancellation, non-finite latents, ...).
    #[error(transparent)]
    Sampling(#[from] hd_painter_sampling::SamplingError),
}

const GIB: f64 = (1u64 << 30) as f64;

impl From<hd_painter_core::CoreError> for SrError {
    fn from(e: hd_painter_core::CoreError) -> Self {
        SrError::Sampling(e.into())
    }
}

impl From<hd_painter_models::ModelsError> for SrError {
    fn from(e: hd_painter_models::ModelsError) -> Self {
        SrError::Sampling(e.into())
    }
}

/// `Result` with [`SrError`].
pub type Result<T, E = SrError> = std::result::Result<T, E>;
