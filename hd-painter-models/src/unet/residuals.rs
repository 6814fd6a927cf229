//! The features BrushNet's branch adds inside the UNet, and where.

use burn::tensor::Tensor;

use crate::error::ModelsError;

/// The kinds of injection points of BrushNet's residuals, in the order the walk meets them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Site {
    /// The `conv_in` output, each down resnet (with its transformer), each downsampler.
    Down,
    /// The mid block's output.
    Mid,
    /// Each up resnet (with its transformer), each upsampler.
    Up,
}

/// Features added inside a UNet at BrushNet's injection points (see
/// [`Unet2DConditionModel::forward_with_residuals`](super::Unet2DConditionModel::forward_with_residuals)):
/// for SD's four levels with two resnets, 12 down, 1 mid and 15 up.
#[derive(Clone, Debug)]
pub struct UnetResiduals {
    /// At the `conv_in` output, then after each down resnet and downsampler.
    pub down: Vec<Tensor<4>>,
    /// After the mid block.
    pub mid: Tensor<4>,
    /// After each up resnet and upsampler.
    pub up: Vec<Tensor<4>>,
}

impl UnetResiduals {
    /// Every residual with its batch repeated `times` (for a classifier-free guidance batch).
    pub fn repeat_batch(&self, times: usize) -> Self {
        let rep = |t: &Tensor<4>| t.clone().repeat_dim(0, times);
        Self {
            down: self.down.iter().map(rep).collect(),
            mid: rep(&self.mid),
            up: self.up.iter().map(rep).collect(),
        }
    }

    /// Every residual times `scale`.
    pub fn scaled(self, scale: f64) -> Self {
        Self {
            down: self.down.into_iter().map(|t| t * scale).collect(),
            mid: self.mid * scale,
            up: self.up.into_iter().map(|t| t * scale).collect(),
        }
    }
}

/// A residual missing (`found` None) or of another shape than the activation it is added to.
pub(super) fn residual_error(
    what: String,
    expected: [usize; 4],
    found: Option<[usize; 4]>,
) -> ModelsError {
    ModelsError::Core(hd_painter_core::CoreError::TensorShape {
        what,
        expected: format!("{expected:?}"),
        found: found.map_or_else(Vec::new, |f| f.to_vec()),
    })
}
