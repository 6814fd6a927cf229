//! The layers with bf16 products: a linear layer, a convolution and the attention give what the
//! f32 operations give on bf16-rounded operands, and f32 products stay exact.

use burn::module::Module;
use burn::nn::LinearConfig;
use burn::nn::conv::Conv2dConfig;
use burn::tensor::activation::softmax;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Distribution, FloatDType, Tensor};

use super::{Products, with_products};
use crate::attention::chunked_attention;
use crate::native::{self, max_difference, output_and_gradient, params_in};

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
    let (stored, widened) = bf16_and_widened(LinearConfig::new(96, 70).init(&device));
    // The token view of an NCHW activation, as the transformers read it.
    let x = Tensor::<3>::random([2, 96, 300], normal, &device).swap_dims(1, 2);
    let got = with_products(Products::Bf16, || native::linear(&stored, x.clone()));
    let exact = widened.forward(rounded(x.clone()));
    check("linear", got, exact, widened.forward(x.clone()));
    // Outside the scope the same layer widens its weights and multiplies in f32.
    let plain = native::linear(&stored, x.clone());
    assert!(max_difference(plain, widened.forward(x)) < 1e-4);

    let (stored, widened) = bf16_and_widened(conv_layer(&device));
    let x = Tensor::<4>::random([2, 40, 23, 37], normal, &device);
    let got = with_products(Products::Bf16, || native::conv(&stored, x.clone()));
    let exact = widened.forward(rounded(x.clone()));
    check("convolution", got, exact, widened.forward(x));
}

/// On the autodiff device (RASG's tracked forward) the layers read bf16 weights as stored: the
/// output is the plain device's, with bf16 products, and the input's gradient the f32 backward
/// through the weights' values, as burn's autodiff of the widened layer gives it.
#[test]
fn tracked_layers_read_bf16_weights_as_stored_and_take_the_f32_gradient() {
    let device = device();
    let ad = device.clone().autodiff();
    let normal = Distribution::Normal(0.0, 1.0);
    let check_tracked = |what: &str,
                         got: (Tensor<4>, Tensor<4>),
                         want: (Tensor<4>, Tensor<4>),
                         exact: Tensor<4>| {
        check(what, got.0, exact, want.0);
        let scale: f32 = want.1.clone().abs().max().into_scalar();
        let err = max_difference(got.1, want.1) / scale;
        assert!(err < 1e-5, "{what}: gradient {err:e} from burn's");
    };

    let (stored, widened) = bf16_and_widened(LinearConfig::new(96, 70).init(&device));
    let x = Tensor::<3>::random([2, 96, 300], normal, &ad).swap_dims(1, 2);
    let upstream = Tensor::<3>::random([2, 300, 70], normal, &ad);
    // The tracked kernel takes the bf16 weight itself and keeps it for the backward: a widened
    // copy kept for every layer's backward held 4 bytes per parameter.
    let kept = native::weights_in(&stored, true, DType::F32, |l| &mut l.bias);
    assert!(native::linear::linear_tracked(&kept, &x, Products::Bf16).is_some());
    let native =
        |x: &Tensor<3>| with_products(Products::Bf16, || native::linear(&stored, x.clone()));
    let got = output_and_gradient(&x, &upstream, native);
    let want = output_and_gradient(&x, &upstream, |x| widened.forward(x.clone()));
    let exact = widened.forward(rounded(x.clone().inner()));
    let as_4d = |(out, grad): (Tensor<3>, Tensor<3>)| (out.unsqueeze(), grad.unsqueeze());
    check_tracked("tracked linear", as_4d(got), as_4d(want), exact.unsqueeze());

    let (stored, widened) = bf16_and_widened(conv_layer(&device));
    let x = Tensor::<4>::random([2, 40, 23, 37], normal, &ad);
    let upstream = Tensor::<4>::random([2, 33, 23, 37], normal, &ad);
    let options = ConvOptions::new_with_padding([1, 1], [(1, 1), (1, 1)], [1, 1], 1);
    let weight = stored.weight.val();
    let tracked = native::conv::conv2d_tracked(&x, &weight, None, &options, Products::Bf16);
    assert!(tracked.is_some());
    let native = |x: &Tensor<4>| with_products(Products::Bf16, || native::conv(&stored, x.clone()));
    let got = output_and_gradient(&x, &upstream, native);
    let want = output_and_gradient(&x, &upstream, |x| widened.forward(x.clone()));
    let exact = widened.forward(rounded(x.clone().inner()));
    check_tracked("tracked convolution", got, want, exact);
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

/// `layer` with its parameters stored in bf16, and that layer widened back to f32.
fn bf16_and_widened<M: Module + Clone>(layer: M) -> (M, M) {
    let stored = layer.map(&mut Bf16Weights);
    let widened = params_in(&stored, DType::F32).into_owned();
    (stored, widened)
}

/// A 3 x 3 convolution, 40 to 33 channels, padded to keep the size.
fn conv_layer(device: &burn::tensor::Device) -> burn::nn::conv::Conv2d {
    Conv2dConfig::new([40, 33], [3, 3])
        .with_padding(burn::nn::PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(device)
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
