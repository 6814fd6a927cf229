//! GEGLU, the gated feed-forward of the SD transformer blocks: `a * gelu(g)` for the two halves
//! `[a, g]` of its projection's output. burn computes it as a slice, a GELU with libm's `erff`
//! called per element and a product, each its own pass on one thread; on a 64x64 latent the
//! projection's output is 84 MB and those passes left the second core idle for a twentieth of a
//! UNet step. Here one vectorised pass per block of rows writes the result, all blocks in
//! parallel, with the normal CDF computed through an `erfc` approximation that keeps its
//! relative precision in the tails.

use std::f32::consts::FRAC_1_SQRT_2;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::{DType, Tensor, TensorData};
use rayon::prelude::*;

use super::{elements, exp, flex_f32, record, register_input_gradient, vectorised};

/// Elements per parallel task: enough to cover rayon's cost of a task many times over.
const TASK_ELEMENTS: usize = 1 << 14;

/// `a * gelu(g)` for `h = [a, g]` split along its last axis (`[batch, tokens, 2 * inner]` to
/// `[batch, tokens, inner]`), natively when `h` is f32 on flex without autodiff; `None`
/// otherwise.
pub(crate) fn geglu(h: &Tensor<3>) -> Option<Tensor<3>> {
    let [h_t] = flex_f32([h])?;
    Some(Tensor::from_primitive::<Flex>(forward(
        &h_t.to_contiguous(),
    )))
}

/// The same on an autodiff device, recording a backward that gives `h`'s gradient; `None`
/// unless `h` is f32 on `Autodiff<Flex>`.
pub(crate) fn geglu_tracked(h: &Tensor<3>) -> Option<Tensor<3>> {
    let h_ad = h.clone().try_into_primitive::<Autodiff<Flex>>().ok()?;
    if h_ad.primitive().dtype() != DType::F32 {
        return None;
    }
    let h_t = h_ad.primitive().to_contiguous();
    let out = forward(&h_t);
    Some(record(Gradient, [h_ad.node()], out, |_| h_t))
}

fn forward(h: &FlexTensor) -> FlexTensor {
    let ([batch, tokens, width], inner) = halves(h);
    let mut out = vec![0f32; batch * tokens * inner];
    if let Some(rows) = rows_per_task(inner) {
        out.par_chunks_mut(rows * inner)
            .zip(elements(h).par_chunks(rows * width))
            .for_each(|(out, h)| {
                vectorised(
                    #[inline(always)]
                    || {
                        for (out, h) in out.chunks_exact_mut(inner).zip(h.chunks_exact(width)) {
                            let (a, g) = h.split_at(inner);
                            for ((o, &a), &g) in out.iter_mut().zip(a).zip(g) {
                                *o = a * g * normal_cdf(g);
                            }
                        }
                    },
                )
            });
    }
    FlexTensor::from_data(TensorData::new(out, [batch, tokens, inner]))
}

/// Rows of `inner` outputs per parallel task; `None` when a row is empty.
fn rows_per_task(inner: usize) -> Option<usize> {
    TASK_ELEMENTS.checked_div(inner).map(|rows| rows.max(1))
}

/// `h`'s shape and the width of each half.
fn halves(h: &FlexTensor) -> ([usize; 3], usize) {
    let s = h.layout().shape();
    ([s[0], s[1], s[2]], s[2] / 2)
}

/// The backward of [`geglu_tracked`]: for the output's gradient `u`, `da = u gelu(g)` and
/// `dg = u a gelu'(g)` with `gelu'(g) = Phi(g) + g phi(g)`.
#[derive(Debug)]
struct Gradient;

impl Backward<Flex, 1> for Gradient {
    /// `h`, contiguous.
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        register_input_gradient(ops, grads, |h, upstream| {
            gradient(&h, &upstream.to_contiguous())
        });
    }
}

/// `h`'s gradient for the output's gradient `upstream` (both contiguous).
fn gradient(h: &FlexTensor, upstream: &FlexTensor) -> FlexTensor {
    let ([batch, tokens, width], inner) = halves(h);
    let mut dh = vec![0f32; batch * tokens * width];
    if let Some(rows) = rows_per_task(inner) {
        dh.par_chunks_mut(rows * width)
            .zip(elements(h).par_chunks(rows * width))
            .zip(elements(upstream).par_chunks(rows * inner))
            .for_each(|((dh, h), u)| {
                vectorised(
                    #[inline(always)]
                    || {
                        let rows = dh.chunks_exact_mut(width).zip(h.chunks_exact(width));
                        for ((dh, h), u) in rows.zip(u.chunks_exact(inner)) {
                            let (a, g) = h.split_at(inner);
                            let (da, dg) = dh.split_at_mut(inner);
                            let pairs = da.iter_mut().zip(dg).zip(a.iter().zip(g));
                            for (((da, dg), (&a, &g)), &u) in pairs.zip(u) {
                                let cdf = normal_cdf(g);
                                *da = u * g * cdf;
                                *dg = u * a * (cdf + g * normal_pdf(g));
                            }
                        }
                    },
                )
            });
    }
    FlexTensor::from_data(TensorData::new(dh, [batch, tokens, width]))
}

/// `Phi(x) = (1 + erf(x / sqrt 2)) / 2`, as `erfc(|x| / sqrt 2) / 2` (or one minus that for
/// `x >= 0`), with `erfc(z) = t e^(-z^2 + P(t))` for `t = 1 / (1 + z / 2)` (the scheme of
/// Numerical Recipes' `erfcc`; `P`'s coefficients were fitted by `tools/reference/fit_erfc.py`).
/// Against libm's f64 `erfc` (see the tests), `Phi`'s relative error is within 1e-6 for
/// `|x| <= 2 sqrt 2`, 4e-6 for `|x| <= 4 sqrt 2` (where the rounding of `z^2` takes over) and
/// 1e-5 out to `|x| = 8`: its lower tail stays relatively precise where `1 + erf` would cancel.
/// NaN stays NaN.
#[inline(always)]
fn normal_cdf(x: f32) -> f32 {
    const P: [f32; 10] = [
        -1.265_441_4,
        0.998_492_54,
        0.387_899_43,
        0.028_358_562,
        0.020_191_535,
        -0.116_778_88,
        -0.651_259_2,
        1.122_409_2,
        -0.666_066_65,
        0.142_194_91,
    ];
    let z = x.abs() * FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * z);
    let p = P.iter().rev().fold(0.0, |p, &c| p * t + c);
    let half_erfc = 0.5 * t * exp(p - z * z);
    if x >= 0.0 { 1.0 - half_erfc } else { half_erfc }
}

/// The standard normal density, `e^(-x^2 / 2) / sqrt(2 pi)`.
#[inline(always)]
fn normal_pdf(x: f32) -> f32 {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    INV_SQRT_2PI * exp(-0.5 * x * x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::native::{burn_geglu, max_difference, output_and_gradient};
    use burn::tensor::Distribution;

    /// The normal CDF against libm's `erfc` in f64, in relative terms over both tails.
    #[test]
    fn normal_cdf_is_relatively_precise() {
        let mut worst = [0f64; 3];
        for i in 0..=200_000 {
            let x = -8.0 + 16.0 * i as f32 / 200_000.0;
            let want = 0.5 * libm::erfc(-(x as f64) / std::f64::consts::SQRT_2);
            let error = ((normal_cdf(x) as f64 - want) / want).abs();
            let range = [2.0, 4.0, f32::INFINITY]
                .iter()
                .position(|&z| x.abs() <= z * std::f32::consts::SQRT_2)
                .unwrap();
            worst[range] = worst[range].max(error);
        }
        assert!(worst[0] < 1e-6, "{worst:?}");
        assert!(worst[1] < 4e-6, "{worst:?}");
        assert!(worst[2] < 1e-5, "{worst:?}");
        assert!(normal_cdf(f32::NAN).is_nan());
        assert_eq!(normal_cdf(f32::INFINITY), 1.0);
        assert_eq!(normal_cdf(f32::NEG_INFINITY), 0.0);
    }

    /// Against burn's slice, GELU and product, with the block of rows split over tasks (a
    /// width that does not divide the task size) and a single row.
    #[test]
    fn matches_the_composed_geglu() {
        let device = hd_painter_core::BackendKind::Flex.device().unwrap();
        for dims in [[2, 300, 2 * 96], [1, 1, 10]] {
            let h = Tensor::<3>::random(dims, Distribution::Normal(0.0, 3.0), &device);
            let diff = max_difference(geglu(&h).expect("f32 on flex"), burn_geglu(h));
            assert!(diff < 1e-5, "{dims:?}: {diff}");
        }
    }

    #[test]
    fn gradient_matches_the_composed_geglu() {
        let device = hd_painter_core::BackendKind::Flex.device().unwrap();
        let ad = device.autodiff();
        let h = Tensor::<3>::random([2, 70, 2 * 40], Distribution::Normal(0.0, 3.0), &ad);
        let upstream = Tensor::<3>::random([2, 70, 40], Distribution::Normal(0.0, 1.0), &ad);
        let (out, grad) = output_and_gradient(&h, &upstream, |h| geglu_tracked(h).expect("native"));
        let (want_out, want_grad) = output_and_gradient(&h, &upstream, |h| burn_geglu(h.clone()));
        assert!(max_difference(out, want_out) < 1e-5);
        let diff = max_difference(grad, want_grad);
        assert!(diff < 1e-5, "{diff}");
    }

    #[test]
    fn autodiff_and_other_dtypes_are_left_to_burn() {
        let device = hd_painter_core::BackendKind::Flex.device().unwrap();
        assert!(geglu(&Tensor::<3>::zeros([1, 2, 4], &device.clone().autodiff())).is_none());
        let half = Tensor::<3>::zeros([1, 2, 4], &device).cast(burn::tensor::FloatDType::F16);
        assert!(geglu(&half).is_none());
    }
}
