//! The error type of `hd-painter-sampling`.

/// What can stop a sampling run.
#[derive(Debug, thiserror::Error)]
pub enum SamplingError {
    /// The step callback asked to stop; nothing was decoded.
    #[error("cancelled by the caller after step {step} of {total}")]
    Cancelled {
        /// Steps completed.
        step: usize,
        /// Steps planned.
        total: usize,
    },
    /// The latents stopped being finite (NaN or infinity), usually from a broken model file or
    /// an extreme guidance scale.
    #[error("the latents became non-finite at step {step} (timestep {timestep})")]
    NonFinite {
        /// The step at which it was detected.
        step: usize,
        /// Its timestep.
        timestep: f64,
    },
    /// Inputs that do not fit together.
    #[error("invalid sampling input: {0}")]
    InvalidInput(String),
    /// An error of the model stack.
    #[error(transparent)]
    Models(#[from] hd_painter_models::ModelsError),
}

/// `Result` with [`SamplingError`].
pub type Result<T, E = SamplingError> = std::result::Result<T, E>;

impl From<hd_painter_core::CoreError> for SamplingError {
    fn from(e: hd_painter_core::CoreError) -> Self {
        SamplingError::Models(hd_painter_models::ModelsError::Core(e))
    }
}
