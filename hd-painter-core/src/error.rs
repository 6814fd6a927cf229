//! The error type of `hd-painter-core`.

use std::path::PathBuf;

/// Everything that can go wrong in `hd-painter-core`: each variant names the file or the
/// parameter involved and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// A file could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
    /// A file exists but is not a decodable image (truncated, corrupt, unknown format).
    #[error("cannot decode {path} as an image: {source}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// What the decoder reported.
        #[source]
        source: image::ImageError,
    },
    /// An image could not be encoded (unsupported extension or encoder failure).
    #[error("cannot encode {path}: {reason}")]
    Encode {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// An image or mask with zero width or height.
    #[error("{what} is empty ({width}x{height}); expected at least 1x1 pixels")]
    Empty {
        /// What was empty (a file path or a description).
        what: String,
        /// The width found.
        width: u32,
        /// The height found.
        height: u32,
    },
    /// An image file larger than the configured maximum.
    #[error("{what} is {width}x{height}; the largest side accepted is {max_side} px")]
    TooLarge {
        /// The file.
        what: String,
        /// Its width.
        width: u32,
        /// Its height.
        height: u32,
        /// The bound (see `Image::open_limited`, `MaskOptions::max_side`).
        max_side: u32,
    },
    /// A pixel buffer whose length does not match its declared size.
    #[error(
        "pixel buffer of {what} has {found} values; expected {expected} ({width}x{height}x{channels})"
    )]
    BufferLength {
        /// What the buffer is for.
        what: String,
        /// The declared width.
        width: u32,
        /// The declared height.
        height: u32,
        /// The declared number of channels.
        channels: usize,
        /// The number of values expected.
        expected: usize,
        /// The number of values found.
        found: usize,
    },
    /// Two inputs that must have the same size do not.
    #[error(
        "{what}: expected {expected_width}x{expected_height}, found {found_width}x{found_height}"
    )]
    SizeMismatch {
        /// Which inputs (e.g. "mask mask.png vs image photo.jpg").
        what: String,
        /// The width required.
        expected_width: u32,
        /// The height required.
        expected_height: u32,
        /// The width found.
        found_width: u32,
        /// The height found.
        found_height: u32,
    },
    /// A tensor with the wrong rank, batch, channel count or values.
    #[error("tensor for {what}: expected shape {expected}, found {found:?}")]
    TensorShape {
        /// What the tensor was for.
        what: String,
        /// The expected shape, in words (e.g. "[1, 3, H, W]").
        expected: String,
        /// The shape found.
        found: Vec<usize>,
    },
    /// A tensor whose data cannot be read back as `f32`.
    #[error("tensor for {what} cannot be read: {reason}")]
    TensorData {
        /// What the tensor was for.
        what: String,
        /// What burn reported.
        reason: String,
    },
    /// A tensor holding NaN or infinite values where pixels were expected.
    #[error("tensor for {what} holds {count} non-finite values (NaN or infinity)")]
    NonFinite {
        /// What the tensor was for.
        what: String,
        /// How many values are not finite.
        count: usize,
    },
    /// A parameter out of its valid range.
    #[error("invalid {name} = {value}: {expected}")]
    InvalidParameter {
        /// The parameter.
        name: &'static str,
        /// The value given, formatted.
        value: String,
        /// What is allowed.
        expected: &'static str,
    },
    /// A backend that this build does not include or that cannot start.
    #[error("backend {name} is not available: {reason}")]
    BackendUnavailable {
        /// The backend asked for.
        name: String,
        /// Why it cannot be used.
        reason: String,
    },
}

impl CoreError {
    /// [`CoreError::SizeMismatch`] from `(width, height)` pairs.
    pub fn size_mismatch(what: impl Into<String>, expected: (u32, u32), found: (u32, u32)) -> Self {
        CoreError::SizeMismatch {
            what: what.into(),
            expected_width: expected.0,
            expected_height: expected.1,
            found_width: found.0,
            found_height: found.1,
        }
    }
}

/// `Result` with [`CoreError`].
pub type Result<T, E = CoreError> = std::result::Result<T, E>;
