//! GroupNorm, with the SiLU that follows it in every ResNet block fused in. burn composes
//! GroupNorm from a reshape, two reductions, a subtraction, a division, a square root and the
//! affine (each its own pass over the activations, several on one thread), and SiLU is two more
//! passes with libm's `expf` called per element; at the VAE's 512 px resolution those passes
//! were a tenth of the decode. Here each (image, group) gets one pass for its mean, one for its
//! variance and one that writes `silu(x * a_c + b_c)`, vectorised, with all groups in parallel.

use std::mem::MaybeUninit;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::nn::GroupNorm;
use burn::tensor::{DType, Tensor, TensorData};
use rayon::prelude::*;

use super::{
    elements, exp, flex_f32, flex_f32_untracked, record, register_input_gradient, vectorised,
};

/// `layer.forward(x)`, followed by SiLU when `silu`, with the native kernel when `x` and the
/// layer's parameters are f32 on flex without autodiff and the channels split into the layer's
/// groups; `None` otherwise.
pub(crate) fn group_norm(layer: &GroupNorm, x: &Tensor<4>, silu: bool) -> Option<Tensor<4>> {
    let [x_t] = flex_f32([x])?;
    let state = NormState::new(layer, x_t.to_contiguous(), x.dims(), silu)?;
    let out = state.forward();
    Some(Tensor::from_primitive::<Flex>(out))
}

/// The same on an autodiff device, recording a backward that gives the input's gradient (the
/// layer's parameters must not be tracked themselves: RASG differentiates with respect to the
/// latent only); `None` where that does not hold.
pub(crate) fn group_norm_tracked(
    layer: &GroupNorm,
    x: &Tensor<4>,
    silu: bool,
) -> Option<Tensor<4>> {
    let x_ad = x.clone().try_into_primitive::<Autodiff<Flex>>().ok()?;
    if x_ad.primitive().dtype() != DType::F32 {
        return None;
    }
    let state = NormState::new(layer, x_ad.primitive().to_contiguous(), x.dims(), silu)?;
    let out = state.forward();
    Some(record(InputGradient, [x_ad.node()], out, |_| state))
}

/// One GroupNorm call: its input and parameters, which the backward keeps.
#[derive(Clone, Debug)]
struct NormState {
    x: FlexTensor,
    /// gamma and beta, absent for a layer without the affine.
    affine: Option<[FlexTensor; 2]>,
    dims: [usize; 4],
    groups: usize,
    epsilon: f32,
    silu: bool,
}

impl NormState {
    /// `None` where the layer and `x` do not fit (burn's forward then reports it) or the
    /// parameters are not f32 flex tensors outside autodiff's tracking.
    fn new(layer: &GroupNorm, x: FlexTensor, dims: [usize; 4], silu: bool) -> Option<Self> {
        let groups = layer.num_groups;
        if dims[1] != layer.num_channels || groups == 0 || !dims[1].is_multiple_of(groups) {
            return None;
        }
        let affine = match (&layer.gamma, &layer.beta) {
            (Some(gamma), Some(beta)) if layer.affine => Some([
                flex_f32_untracked(&gamma.val())?.to_contiguous(),
                flex_f32_untracked(&beta.val())?.to_contiguous(),
            ]),
            _ if !layer.affine => None,
            _ => return None,
        };
        Some(Self {
            x,
            affine,
            dims,
            groups,
            epsilon: layer.epsilon as f32,
            silu,
        })
    }

    fn forward(&self) -> FlexTensor {
        self.per_group(
            None,
            #[inline(always)]
            |norm, src, _, dst| norm.normalise(src, dst),
        )
    }

    /// The input's gradient for the output's gradient `upstream`.
    fn backward(&self, upstream: &FlexTensor) -> FlexTensor {
        let upstream = upstream.to_contiguous();
        self.per_group(
            Some(elements(&upstream)),
            #[inline(always)]
            |norm, src, upstream, dst| norm.gradient(src, upstream, dst),
        )
    }

    /// A tensor of the input's shape, each group of it written by `kernel` from the group's
    /// input and (when given) the same group of `other`, all groups in parallel.
    fn per_group(
        &self,
        other: Option<&[f32]>,
        kernel: impl Fn(&Group, &[f32], &[f32], &mut [MaybeUninit<f32>]) + Sync,
    ) -> FlexTensor {
        let input = elements(&self.x);
        let [batch, channels, height, width] = self.dims;
        let per_group = channels / self.groups;
        let group_len = (per_group * height * width).max(1);
        let affine = self
            .affine
            .as_ref()
            .map(|[g, b]| [elements(g), elements(b)]);
        let mut out = Vec::with_capacity(input.len());
        out.spare_capacity_mut()[..input.len()]
            .par_chunks_mut(group_len)
            .enumerate()
            .for_each(|(index, dst)| {
                let range = index * group_len..(index + 1) * group_len;
                let first = index % self.groups * per_group;
                let group = Group {
                    plane: height * width,
                    epsilon: self.epsilon,
                    silu: self.silu,
                    affine: affine
                        .map(|[g, b]| [&g[first..][..per_group], &b[first..][..per_group]]),
                };
                let other = other.map_or(&[][..], |o| &o[range.clone()]);
                vectorised(
                    #[inline(always)]
                    || kernel(&group, &input[range], other, dst),
                );
            });
        // SAFETY: the groups cover the tensor, and each kernel writes every element of its group.
        unsafe { out.set_len(input.len()) };
        FlexTensor::from_data(TensorData::new(out, [batch, channels, height, width]))
    }
}

/// The backward of [`group_norm_tracked`].
#[derive(Debug)]
struct InputGradient;

impl Backward<Flex, 1> for InputGradient {
    type State = NormState;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        register_input_gradient(ops, grads, |state, upstream| state.backward(&upstream));
    }
}

/// One (image, group) slab of channels.
struct Group<'a> {
    /// Elements per channel.
    plane: usize,
    epsilon: f32,
    silu: bool,
    /// The group's gamma and beta.
    affine: Option<[&'a [f32]; 2]>,
}

impl Group<'_> {
    /// The group's mean and `1 / sqrt(variance + epsilon)`, the variance from a second pass
    /// around the mean (exact for activations far from 0).
    #[inline(always)]
    fn statistics(&self, src: &[f32]) -> (f32, f32) {
        let count = src.len() as f64;
        let mean = (sum(src, src, |v, _| v) / count) as f32;
        let variance = (sum(src, src, |v, _| (v - mean) * (v - mean)) / count) as f32;
        (mean, 1.0 / (variance + self.epsilon).sqrt())
    }

    /// `(x - mean) * inverse_std * gamma + beta` for channel `c` as `x * scale + shift`, and
    /// gamma.
    #[inline(always)]
    fn channel(&self, c: usize, mean: f32, inverse_std: f32) -> (f32, f32, f32) {
        let (gamma, beta) = self.affine.map_or((1.0, 0.0), |[g, b]| (g[c], b[c]));
        let scale = inverse_std * gamma;
        (scale, beta - mean * scale, gamma)
    }

    #[inline(always)]
    fn normalise(&self, src: &[f32], dst: &mut [MaybeUninit<f32>]) {
        let (mean, inverse_std) = self.statistics(src);
        let channels = src
            .chunks_exact(self.plane)
            .zip(dst.chunks_exact_mut(self.plane));
        for (c, (src, dst)) in channels.enumerate() {
            let (scale, shift, _) = self.channel(c, mean, inverse_std);
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

    /// The gradient with respect to the normalised value `x_hat` for the output gradient `dy`
    /// at pre-activation `z = x * scale + shift`: through SiLU (`s (1 + z (1 - s))` with `s` the
    /// sigmoid of `z`) when fused, then times gamma.
    #[inline(always)]
    fn normalised_gradient(&self, dy: f32, z: f32, gamma: f32) -> f32 {
        let dz = if self.silu {
            let s = 1.0 / (1.0 + exp(-z));
            dy * s * (1.0 + z * (1.0 - s))
        } else {
            dy
        };
        dz * gamma
    }

    /// `dx = inverse_std * (g - mean(g) - x_hat * mean(g * x_hat))` with `g` the gradient
    /// with respect to `x_hat`, the means over the group.
    #[inline(always)]
    fn gradient(&self, src: &[f32], upstream: &[f32], dst: &mut [MaybeUninit<f32>]) {
        let (mean, inverse_std) = self.statistics(src);
        let count = src.len() as f64;
        let (mut g_total, mut gx_total) = (0f64, 0f64);
        let planes = || {
            src.chunks_exact(self.plane)
                .zip(upstream.chunks_exact(self.plane))
        };
        for (c, (src, up)) in planes().enumerate() {
            let (scale, shift, gamma) = self.channel(c, mean, inverse_std);
            let g = |x: f32, dy: f32| self.normalised_gradient(dy, x * scale + shift, gamma);
            g_total += sum(src, up, g);
            gx_total += sum(src, up, |x, dy| g(x, dy) * (x - mean) * inverse_std);
        }
        let (g_mean, gx_mean) = ((g_total / count) as f32, (gx_total / count) as f32);
        for (c, ((src, up), dst)) in planes().zip(dst.chunks_exact_mut(self.plane)).enumerate() {
            let (scale, shift, gamma) = self.channel(c, mean, inverse_std);
            for ((d, &x), &dy) in dst.iter_mut().zip(src).zip(up) {
                let g = self.normalised_gradient(dy, x * scale + shift, gamma);
                let x_hat = (x - mean) * inverse_std;
                d.write(inverse_std * (g - g_mean - x_hat * gx_mean));
            }
        }
    }
}

/// The sum of `term(a_i, b_i)` over the pairs of `a` and `b` in f64, over f32 partial sums of
/// 16 lanes (which vectorise) flushed every 4096 values, so that neither the order nor the
/// length costs precision.
#[inline(always)]
fn sum(a: &[f32], b: &[f32], term: impl Fn(f32, f32) -> f32) -> f64 {
    const LANES: usize = 16;
    const FLUSH: usize = 4096;
    let mut total = 0f64;
    for (a, b) in a.chunks(FLUSH).zip(b.chunks(FLUSH)) {
        let mut lanes = [0f32; LANES];
        let (mut a_whole, mut b_whole) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
        for (a, b) in (&mut a_whole).zip(&mut b_whole) {
            for ((lane, &a), &b) in lanes.iter_mut().zip(a).zip(b) {
                *lane += term(a, b);
            }
        }
        let rest: f32 = a_whole
            .remainder()
            .iter()
            .zip(b_whole.remainder())
            .map(|(&a, &b)| term(a, b))
            .sum();
        total += lanes.iter().map(|&l| l as f64).sum::<f64>() + rest as f64;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::native::{max_difference, output_and_gradient};
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
                let diff = max_difference(got, want);
                assert!(diff < 1e-5, "{dims:?} silu {fused_silu}: {diff}");
            }
        }
    }

    /// The recorded backward against burn's composed GroupNorm (and SiLU) on the autodiff
    /// device, with the layer's parameters on the plain device as `valid()` leaves them.
    #[test]
    fn input_gradient_matches_burns() {
        let device = hd_painter_core::BackendKind::Flex.device().unwrap();
        let ad = device.clone().autodiff();
        for (dims, groups, affine) in [([2, 6, 5, 4], 3, true), ([1, 4, 3, 7], 2, false)] {
            let layer = layer(groups, dims[1], affine);
            let x = Tensor::<4>::random(dims, Distribution::Normal(1.0, 2.0), &ad);
            let upstream = Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &ad);
            for fused_silu in [false, true] {
                let (out, grad) = output_and_gradient(&x, &upstream, |x| {
                    group_norm_tracked(&layer, x, fused_silu).expect("native")
                });
                let (want_out, want_grad) = output_and_gradient(&x, &upstream, |x| {
                    let norm = layer.forward(x.clone());
                    if fused_silu { silu(norm) } else { norm }
                });
                assert!(
                    max_difference(out, want_out) < 1e-5,
                    "{dims:?} silu {fused_silu}"
                );
                let grad_diff = max_difference(grad, want_grad);
                assert!(grad_diff < 1e-4, "{dims:?} silu {fused_silu}: {grad_diff}");
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
        assert!((sum(&values, &values, |v, _| v) - want).abs() / want < 1e-6);
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
