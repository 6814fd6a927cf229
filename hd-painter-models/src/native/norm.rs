//! GroupNorm, with the SiLU that follows it in every ResNet block fused in. burn composes
//! GroupNorm from a reshape, two reductions, a subtraction, a division, a square root and the
//! affine (each its own pass over the activations, several on one thread), and SiLU is two more
//! passes with libm's `expf` called per element; at the VAE's 512 px resolution those passes
//! were a tenth of the decode. Here each (image, group) gets one pass for its mean, one for its
//! variance and one that writes `silu(x * a_c + b_c)`, vectorised, with all groups in parallel.

use std::mem::MaybeUninit;

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::nn::GroupNorm;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use super::{elements, exp, flex_f32, vectorised};

/// `layer.forward(x)`, followed by SiLU when `silu`, with the native kernel when `x` and the
/// layer's parameters are f32 on flex without autodiff and the channels split into the layer's
/// groups; `None` otherwise.
pub(crate) fn group_norm(layer: &GroupNorm, x: &Tensor<4>, silu: bool) -> Option<Tensor<4>> {
    let [batch, channels, height, width] = x.dims();
    let groups = layer.num_groups;
    if channels != layer.num_channels || groups == 0 || channels % groups != 0 {
        return None;
    }
    let [x_t] = flex_f32([x])?;
    let affine = match (&layer.gamma, &layer.beta) {
        (Some(gamma), Some(beta)) if layer.affine => {
            let [gamma, beta] = flex_f32([&gamma.val(), &beta.val()])?;
            Some([gamma.to_contiguous(), beta.to_contiguous()])
        }
        _ if !layer.affine => None,
        // An affine layer without its parameters: burn's forward reports it.
        _ => return None,
    };
    let x_t = x_t.to_contiguous();
    let shape = Shape {
        groups,
        channels_per_group: channels / groups,
        plane: height * width,
        epsilon: layer.epsilon as f32,
        silu,
    };
    let affine = affine.as_ref().map(|[g, b]| [elements(g), elements(b)]);
    let out = shape.normalise(elements(&x_t), affine);
    let out = FlexTensor::from_data(TensorData::new(out, [batch, channels, height, width]));
    Some(Tensor::from_primitive::<Flex>(out))
}

struct Shape {
    groups: usize,
    channels_per_group: usize,
    /// Elements per channel.
    plane: usize,
    epsilon: f32,
    silu: bool,
}

impl Shape {
    fn normalise(&self, input: &[f32], affine: Option<[&[f32]; 2]>) -> Vec<f32> {
        let group_len = self.channels_per_group * self.plane;
        let mut out = Vec::with_capacity(input.len());
        out.spare_capacity_mut()[..input.len()]
            .par_chunks_mut(group_len.max(1))
            .zip(input.par_chunks(group_len.max(1)))
            .enumerate()
            .for_each(|(index, (dst, src))| {
                let first_channel = index % self.groups * self.channels_per_group;
                vectorised(|| self.normalise_group(src, dst, first_channel, affine));
            });
        // SAFETY: the groups cover the input, and `normalise_group` writes every element of its
        // group.
        unsafe { out.set_len(input.len()) };
        out
    }

    #[inline(always)]
    fn normalise_group(
        &self,
        src: &[f32],
        dst: &mut [MaybeUninit<f32>],
        first_channel: usize,
        affine: Option<[&[f32]; 2]>,
    ) {
        let count = src.len() as f64;
        let mean = (sum(src, |v| v) / count) as f32;
        let variance = (sum(src, |v| (v - mean) * (v - mean)) / count) as f32;
        let inverse_std = 1.0 / (variance + self.epsilon).sqrt();
        let channels = src
            .chunks_exact(self.plane)
            .zip(dst.chunks_exact_mut(self.plane));
        for (c, (src, dst)) in channels.enumerate() {
            let (gamma, beta) = affine.map_or((1.0, 0.0), |[g, b]| {
                (g[first_channel + c], b[first_channel + c])
            });
            // y = (x - mean) / std * gamma + beta = x * scale + shift
            let scale = inverse_std * gamma;
            let shift = beta - mean * scale;
            if self.silu {
                for (d, &s) in dst.iter_mut().zip(src) {
                    let y = s * scale + shift;
                    d.write(y / (1.0 + exp(-y)));
                }
            } else {
                for (d, &s) in dst.iter_mut().zip(src) {
                    d.write(s * scale + shift);
                }
            }
        }
    }
}

/// The sum of `term(v)` over `values` in f64, over f32 partial sums of 16 lanes (which
/// vectorise) flushed every 4096 values, so that neither the order nor the length costs
/// precision.
#[inline(always)]
fn sum(values: &[f32], term: impl Fn(f32) -> f32) -> f64 {
    const LANES: usize = 16;
    const FLUSH: usize = 4096;
    let mut total = 0f64;
    for block in values.chunks(FLUSH) {
        let mut lanes = [0f32; LANES];
        let mut whole = block.chunks_exact(LANES);
        for chunk in &mut whole {
            for (lane, &v) in lanes.iter_mut().zip(chunk) {
                *lane += term(v);
            }
        }
        let rest: f32 = whole.remainder().iter().map(|&v| term(v)).sum();
        total += lanes.iter().map(|&l| l as f64).sum::<f64>() + rest as f64;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::GroupNormConfig;
    use burn::tensor::Distribution;
    use burn::tensor::activation::silu;

    fn layer(groups: usize, channels: usize, affine: bool) -> GroupNorm {
        let device = hd_painter_core::BackendKind::Flex.device().unwrap();
        let mut layer = GroupNormConfig::new(groups, channels)
            .with_epsilon(1e-6)
            .with_affine(affine)
            .init(&device);
        let normal = Distribution::Normal(0.5, 1.0);
        if affine {
            let random = |_| Tensor::<1>::random([channels], normal, &device);
            layer.gamma = layer.gamma.map(|g| g.map(random));
            layer.beta = layer.beta.map(|b| b.map(random));
        }
        layer
    }

    /// Against burn's GroupNorm (and SiLU), with and without the affine, on activations with an
    /// offset (the two-pass variance keeps it exact) and a spread over many scales.
    #[test]
    fn matches_burns_group_norm_and_silu() {
        let device = hd_painter_core::BackendKind::Flex.device().unwrap();
        for (dims, groups, affine) in [
            ([2, 8, 5, 7], 4, true),
            ([1, 6, 33, 17], 3, false),
            ([1, 4, 3, 3], 1, true),
        ] {
            let layer = layer(groups, dims[1], affine);
            let x = Tensor::<4>::random(dims, Distribution::Normal(3.0, 4.0), &device)
                * Tensor::<4>::random(dims, Distribution::Uniform(0.0, 8.0), &device);
            for fused_silu in [false, true] {
                let got = group_norm(&layer, &x, fused_silu).expect("f32 on flex");
                let norm = layer.forward(x.clone());
                let want = if fused_silu { silu(norm) } else { norm };
                let diff: f32 = (got - want).abs().max().into_scalar();
                assert!(diff < 1e-5, "{dims:?} silu {fused_silu}: {diff}");
            }
        }
    }

    #[test]
    fn long_sums_keep_their_precision() {
        let values: Vec<f32> = (0..1_000_003)
            .map(|i| 1.0 + (i % 7) as f32 * 1e-3)
            .collect();
        let want: f64 = values.iter().map(|&v| v as f64).sum();
        // A running f32 sum would be off by about 1e-4 here.
        assert!((sum(&values, |v| v) - want).abs() / want < 1e-6);
    }

    #[test]
    fn non_finite_input_stays_non_finite() {
        let device = hd_painter_core::BackendKind::Flex.device().unwrap();
        let layer = layer(2, 4, true);
        let mut values = vec![0.5f32; 4 * 9];
        values[3] = f32::NAN;
        let x = Tensor::<4>::from_data(TensorData::new(values, [1, 4, 3, 3]), &device);
        let out = group_norm(&layer, &x, true).expect("f32 on flex");
        let data = out.into_data().try_to_vec::<f32>().unwrap();
        // The NaN poisons its own group's statistics and nothing in the other group.
        assert!(data[..18].iter().all(|v| v.is_nan()));
        assert!(data[18..].iter().all(|v| v.is_finite()));
    }

    #[test]
    fn autodiff_and_other_dtypes_are_left_to_burn() {
        let device = hd_painter_core::BackendKind::Flex.device().unwrap();
        let layer = layer(2, 4, true);
        let x = Tensor::<4>::zeros([1, 4, 3, 3], &device);
        let ad = Tensor::<4>::zeros([1, 4, 3, 3], &device.clone().autodiff());
        assert!(group_norm(&layer, &ad, true).is_none());
        let half = x.cast(burn::tensor::FloatDType::F16);
        assert!(group_norm(&layer, &half, false).is_none());
        assert!(
            group_norm(
                &self::layer(3, 6, true),
                &Tensor::zeros([1, 4, 2, 2], &device),
                false
            )
            .is_none()
        );
    }
}
