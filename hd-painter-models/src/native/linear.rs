//! Linear layers, `x W + b`, as one GEMM that starts from the bias. burn's `Linear` is a matmul
//! followed by a broadcast bias add, a second pass over the output on one thread; on the GEGLU
//! projection of a 64x64 latent that output is 84 MB. The input is read through its strides,
//! so the token view of an NCHW activation (`[b, c, h*w]` with its last two axes swapped) is
//! multiplied in place.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::nn::Linear;
use burn::tensor::{DType, Tensor, TensorData};
use rayon::prelude::*;

use super::{
    Operand, Output, Products, SharedRhs, Weights, elements, flex_f32, flex_f32_untracked,
    flex_weight, record, register_input_gradient, widened,
};

/// `layer.forward(x)` for `x` `[batch, tokens, in]` with the native kernel, when `x` and the
/// layer's parameters are f32 on flex without autodiff; `None` otherwise.
/// `products` says how the forward multiplies.
pub(crate) fn linear(layer: &Linear, x: &Tensor<3>, products: Products) -> Option<Tensor<3>> {
    let [x_t] = flex_f32([x])?;
    let params = Params::new(layer, x, products)?;
    Some(Tensor::from_primitive::<Flex>(params.apply(&x_t, products)))
}

/// The same on an autodiff device, recording a backward that gives the input's gradient (the
/// parameters must not be tracked themselves); `None` where that does not hold. The backward
/// multiplies in f32 whatever `products` the forward used.
pub(crate) fn linear_tracked(
    layer: &Linear,
    x: &Tensor<3>,
    products: Products,
) -> Option<Tensor<3>> {
    let x_ad = x.clone().try_into_primitive::<Autodiff<Flex>>().ok()?;
    if x_ad.primitive().dtype() != DType::F32 {
        return None;
    }
    let params = Params::new(layer, x, products)?;
    let out = params.apply(x_ad.primitive(), products);
    Some(record(InputGradient, [x_ad.node()], out, |_| params.weight))
}

/// A layer's weight `[in, out]` (contiguous) and bias `[out]`.
struct Params {
    weight: FlexTensor,
    bias: Option<FlexTensor>,
}

impl Params {
    /// `None` unless the parameters are untracked f32 flex tensors, `x`'s last axis is the
    /// layer's input size and the bias its output size (burn's forward reports a mismatch).
    /// `products` bf16 admits a bf16 weight as stored (see `weights_in`).
    fn new(layer: &Linear, x: &Tensor<3>, products: Products) -> Option<Self> {
        let [inputs, outputs] = layer.weight.dims();
        let bias_fits = layer.bias.as_ref().is_none_or(|b| b.dims() == [outputs]);
        if inputs != x.dims()[2] || !bias_fits {
            return None;
        }
        let weight = flex_weight(&layer.weight.val(), products)?;
        Weights::of(&weight)?;
        let bias = match &layer.bias {
            Some(b) => Some(flex_f32_untracked(&b.val())?.to_contiguous()),
            None => None,
        };
        Some(Self { weight, bias })
    }

    fn apply(&self, x: &FlexTensor, products: Products) -> FlexTensor {
        let shape = self.weight.layout().shape();
        let [inputs, outputs] = [shape[0], shape[1]];
        let weight = Matrix {
            data: Weights::of(&self.weight).expect("`new` checked the weight's dtype"),
            size: [inputs, outputs],
            strides: [outputs as isize, 1],
        };
        multiply(x, &weight, self.bias.as_ref().map(elements), products)
    }
}

/// A matrix in a contiguous buffer, read through its strides.
struct Matrix<'a> {
    data: Weights<'a>,
    /// Rows, columns.
    size: [usize; 2],
    /// Row stride, column stride.
    strides: [isize; 2],
}

/// `x m + bias` for `x` `[batch, tokens, k]` (read through its strides) and `m` `k x n`: a
/// contiguous `[batch, tokens, n]`, filled with the bias rows in parallel and then multiplied
/// into, so the GEMM adds to them and no further pass is needed.
fn multiply(
    x: &FlexTensor,
    m: &Matrix<'_>,
    bias: Option<&[f32]>,
    products: Products,
) -> FlexTensor {
    let [k, n] = m.size;
    let shape = x.layout().shape();
    let [batch, tokens] = [shape[0], shape[1]];
    debug_assert_eq!(shape[2], k);
    // Every element is written before `set_len` below: the bias rows first where there is a
    // bias (the products add to them), else by the products, which overwrite (an empty depth
    // is zeros).
    let total = batch * tokens * n;
    let mut out = Vec::<f32>::with_capacity(total);
    if bias.is_none() && k == 0 {
        out.resize(total, 0.0);
        return FlexTensor::from_data(TensorData::new(out, [batch, tokens, n]));
    }
    if let Some(bias) = bias {
        out.spare_capacity_mut()[..total]
            .par_chunks_mut(n.max(1))
            .for_each(|row| {
                for (slot, &b) in row.iter_mut().zip(bias) {
                    slot.write(b);
                }
            });
    }
    let layout = x.layout();
    let strides = layout.strides();
    let data = x.storage::<f32>();
    // The weights are packed once for the whole batch (bf16 products).
    let parallel = rayon::current_thread_index().is_none();
    let weights = SharedRhs::new(products, m.data.operand(m.strides), [k, n], parallel);
    for b in 0..batch {
        let first = layout.start_offset() as isize + b as isize * strides[0];
        // SAFETY: the operands address image `b`'s `tokens x k` elements of `x` through its
        // strides and the `k x n` matrix through its own; the destination is this image's rows
        // of `out`, which nothing else touches.
        unsafe {
            let x_op = Operand(data.as_ptr().offset(first), strides[1], strides[2]);
            let dst = Output(
                out.as_mut_ptr().add(b * tokens * n),
                n as isize,
                bias.is_some(),
            );
            weights.multiply(tokens, dst, x_op);
        }
    }
    // SAFETY: the images' products wrote (or added to the bias in) all `total` elements.
    unsafe { out.set_len(total) };
    FlexTensor::from_data(TensorData::new(out, [batch, tokens, n]))
}

/// The backward of [`linear_tracked`]: `dx = d_out W^T`.
#[derive(Debug)]
struct InputGradient;

impl Backward<Flex, 1> for InputGradient {
    /// The weight `[in, out]`, contiguous, as the forward read it (f32, or bf16 as stored).
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        register_input_gradient(ops, grads, |weight, grad| {
            let weight = widened(weight);
            let shape = weight.layout().shape();
            let [inputs, outputs] = [shape[0], shape[1]];
            let transposed = Matrix {
                data: Weights::F32(elements(&weight)),
                size: [outputs, inputs],
                strides: [1, outputs as isize],
            };
            multiply(&grad, &transposed, None, Products::F32)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::native::{max_difference, output_and_gradient};
    use burn::nn::LinearConfig;
    use burn::tensor::Distribution;

    fn layer(inputs: usize, outputs: usize, bias: bool) -> Linear {
        let device = hd_painter_core::BackendKind::Flex.device().unwrap();
        let mut layer = LinearConfig::new(inputs, outputs)
            .with_bias(bias)
            .init(&device);
        let normal = Distribution::Normal(0.5, 1.0);
        layer.bias = layer
            .bias
            .map(|b| b.map(|_| Tensor::<1>::random([outputs], normal, &device)));
        layer
    }

    /// Against burn's `Linear`, with and without a bias, on a contiguous input and on the token
    /// view of an NCHW activation (its last two axes swapped), as the transformers read it.
    #[test]
    fn matches_burns_linear() {
        let device = hd_painter_core::BackendKind::Flex.device().unwrap();
        let tokens_view = |[b, c, n]: [usize; 3]| {
            Tensor::<3>::random([b, c, n], Distribution::Normal(0.0, 2.0), &device).swap_dims(1, 2)
        };
        let contiguous = Tensor::<3>::random([2, 5, 7], Distribution::Normal(0.0, 2.0), &device);
        for (x, outputs, bias) in [
            (contiguous.clone(), 3, true),
            (contiguous, 9, false),
            (tokens_view([2, 6, 35]), 4, true),
        ] {
            let layer = layer(x.dims()[2], outputs, bias);
            let got = linear(&layer, &x, Products::F32).expect("f32 on flex");
            let diff = max_difference(got, layer.forward(x.clone()));
            assert!(
                diff < 1e-5,
                "{:?} -> {outputs}, bias {bias}: {diff}",
                x.dims()
            );
        }
    }

    /// The recorded backward against burn's on the autodiff device, for a strided input, with
    /// the layer on the plain device as `valid()` leaves it.
    #[test]
    fn input_gradient_matches_burns() {
        let device = hd_painter_core::BackendKind::Flex.device().unwrap();
        let ad = device.autodiff();
        let layer = layer(6, 4, true);
        let x =
            Tensor::<3>::random([2, 6, 11], Distribution::Normal(0.0, 1.0), &ad).swap_dims(1, 2);
        let upstream = Tensor::<3>::random([2, 11, 4], Distribution::Normal(0.0, 1.0), &ad);
        let (out, grad) = output_and_gradient(&x, &upstream, |x| {
            linear_tracked(&layer, x, Products::F32).expect("native")
        });
        let (want_out, want_grad) =
            output_and_gradient(&x, &upstream, |x| layer.forward(x.clone()));
        assert!(max_difference(out, want_out) < 1e-5);
        let diff = max_difference(grad, want_grad);
        assert!(diff < 1e-5, "{diff}");
    }

    #[test]
    fn autodiff_other_dtypes_and_wrong_sizes_are_left_to_burn() {
        let device = hd_painter_core::BackendKind::Flex.device().unwrap();
        let layer = layer(4, 3, true);
        let x = Tensor::<3>::zeros([1, 2, 4], &device);
        assert!(
            linear(
                &layer,
                &Tensor::zeros([1, 2, 4], &device.clone().autodiff()),
                Products::F32
            )
            .is_none()
        );
        assert!(
            linear(
                &layer,
                &x.clone().cast(burn::tensor::FloatDType::F16),
                Products::F32
            )
            .is_none()
        );
        assert!(linear(&layer, &Tensor::zeros([1, 2, 5], &device), Products::F32).is_none());
        assert!(linear(&layer, &x, Products::F32).is_some());
        let mut wrong_bias = layer.clone();
        wrong_bias.bias = Some(burn::module::Param::from_tensor(Tensor::zeros(
            [5],
            &device,
        )));
        assert!(linear(&wrong_bias, &x, Products::F32).is_none());
    }
}
