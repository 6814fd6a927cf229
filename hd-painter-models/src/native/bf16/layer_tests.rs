//! The layers with bf16 products: a linear layer, a convolution and the attention give what the
//! f32 operations give on bf16-rounded operands, and f32 products stay exact.

use burn::module::Module;
use burn::nn::LinearConfig;
use burn::nn::conv::Conv2dConfig;
use burn::tensor::activation::softmax;
use burn::tensor::{Distribution, FloatDType, Tensor};

use super::{Products, with_products};
use crate::attention::chunked_attention;
use crate::native::{self, max_difference, params_in};

fn device() -> burn::tensor::Device {
    hd_painter_core::BackendKind::Flex.device().unwrap()
}

fn rounded<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    t.cast(FloatDType::BF16).cast(FloatDType::F32)
}

/// Checks `got` against `exact` (the f32 operation on rounded operands) and `unrounded` (on the
/// operands as given): near the first, measurably away from the second (so the rounding ran).
fn check<const D: usize>(what: &str, got: Tensor<D>, exact: Tensor<D>, unrounded: Tensor<D>) {
    let scale: f32 = exact.clone().abs().max().into_scalar();
    let err = max_difference(got.clone(), exact) / scale;
    let moved = max_difference(got, unrounded) / scale;
    assert!(
        err < 2e-6,
        "{what}: {err:e} from the product of the rounded operands"
    );
    assert!(
        moved > 1e-4,
        "{what}: only {moved:e} from the unrounded product"
    );
}

#[test]
fn linear_and_convolution_round_their_operands() {
    let device = device();
    let normal = Distribution::Normal(0.0, 1.0);
    let linear = LinearConfig::new(96, 70).init(&device);
    let stored = linear.clone().map(&mut Bf16Weights);
    let widened = params_in(&stored, burn::tensor::DType::F32).into_owned();
    // The token view of an NCHW activation, as the transformers read it.
    let x = Tensor::<3>::random([2, 96, 300], normal, &device).swap_dims(1, 2);
    let got = with_products(Products::Bf16, || native::linear(&stored, x.clone()));
    let exact = widened.forward(rounded(x.clone()));
    check("linear", got, exact, widened.forward(x.clone()));
    // Outside the scope the same layer widens its weights and multiplies in f32.
    let plain = native::linear(&stored, x.clone());
    assert!(max_difference(plain, widened.forward(x)) < 1e-4);

    let conv = Conv2dConfig::new([40, 33], [3, 3])
        .with_padding(burn::nn::PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(&device);
    let stored = conv.map(&mut Bf16Weights);
    let widened = params_in(&stored, burn::tensor::DType::F32).into_owned();
    let x = Tensor::<4>::random([2, 40, 23, 37], normal, &device);
    let got = with_products(Products::Bf16, || native::conv(&stored, x.clone()));
    let exact = widened.forward(rounded(x.clone()));
    check("convolution", got, exact, widened.forward(x));
}

#[test]
fn attention_rounds_queries_keys_probabilities_and_values() {
    let device = device();
    let t = |n| Tensor::<4>::random([2, 3, n, 40], Distribution::Normal(0.0, 1.5), &device);
    let (q, k, v) = (t(70), t(90), t(90));
    let got = with_products(Products::Bf16, || {
        chunked_attention(q.clone(), k.clone(), v.clone(), usize::MAX)
    });
    // The kernel rounds the softmax's numerators `exp(s - max)` before the product with the
    // values and divides by their f32 sum afterwards.
    let scores = rounded(q.clone()).matmul(rounded(k.clone()).swap_dims(2, 3)) / 40f32.sqrt();
    let numerators = (scores.clone() - scores.max_dim(3)).exp();
    let sums = numerators.clone().sum_dim(3);
    let exact = rounded(numerators).matmul(rounded(v.clone())) / sums;
    let unrounded = softmax(q.matmul(k.swap_dims(2, 3)) / 40f32.sqrt(), 3).matmul(v);
    // The kernel's `exp` is within 2 ulp of the reference's and its scores are summed in
    // another order, which moves an occasional numerator across a bf16 rounding boundary (a
    // change of 2^-8 in it): compared on average, the product of the rounded operands is 100
    // times nearer than the unrounded one (1.1e-5 against 4.3e-3 with the f32 GEMM on rounded
    // operands, on a CPU without AVX-512).
    let mean = |t: Tensor<4>| t.abs().mean().into_scalar::<f32>();
    let err = mean(got.clone() - exact.clone()) / mean(exact);
    let moved = mean(got - unrounded.clone()) / mean(unrounded);
    assert!(err < 2e-5 && moved > 100.0 * err, "{err:e}, {moved:e}");
}

/// Casts every float parameter to bf16, as `with_weight_dtype(BF16)` stores them.
struct Bf16Weights;

impl burn::module::ModuleMapper for Bf16Weights {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<Tensor<D>>,
    ) -> burn::module::Param<Tensor<D>> {
        param.map(|t| t.cast(FloatDType::BF16))
    }
}
