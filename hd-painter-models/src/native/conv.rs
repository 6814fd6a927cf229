//! 2-d convolution as im2col + GEMM, laid out so that neither side needs a reshuffle. flex's own
//! convolution converts the input to NHWC and the weights to `[out, kh, kw, in]` on one thread at
//! every call, builds im2col rows per output position and writes the GEMM's result back
//! transposed, one strided float at a time; on the SD VAE at 512 px that bookkeeping was a fifth
//! of the decode. Here the weights are used as stored (`[out, in * kh * kw]` row-major is
//! already the GEMM's left operand), the im2col matrix of a band of output rows is built
//! `[in * kh * kw, positions]` from contiguous runs of input rows, and the GEMM writes the band
//! straight into the NCHW output, starting from the bias. A 1x1 convolution multiplies the input
//! itself.

use std::cell::Cell;
use std::ops::Range;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use super::{
    Operand, Output, Products, SharedMut, Weights, dims, elements, flex_f32, flex_f32_untracked,
    flex_weight, product_in, record, register_input_gradient, widened,
};

/// Output positions per band (whole rows, at least one): enough columns for the GEMM to reuse
/// each packed block of weights many times, few enough that the bands of a 64x64 latent keep
/// both cores busy and the im2col block stays a few MiB.
const BAND_POSITIONS: usize = 1024;

thread_local! {
    /// Each thread's im2col buffer, kept between calls: a band's block is up to tens of MiB,
    /// and fresh pages of that size cost the kernel's page clearing at every band.
    static COLUMNS: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// `conv2d(x, weight, bias, options)` with the native kernel when the tensors are f32 on flex
/// without autodiff, there is one group and the output is not empty; `None` otherwise.
pub(crate) fn conv2d(
    x: &Tensor<4>,
    weight: &Tensor<4>,
    bias: Option<&Tensor<1>>,
    options: &ConvOptions<2>,
    products: Products,
) -> Option<Tensor<4>> {
    let [x_t] = flex_f32([x])?;
    let weight_t = flex_weight(weight, products)?;
    let bias = match bias {
        Some(b) => Some(flex_f32([b])?[0].to_contiguous()),
        None => None,
    };
    let geometry = Geometry::new(x.dims(), weight.dims(), options)?;
    let out = conv2d_f32(
        &x_t.to_contiguous(),
        Weights::of(&weight_t)?,
        bias.as_ref().map(elements),
        &geometry,
        products,
    );
    Some(Tensor::from_primitive::<Flex>(out))
}

/// The same convolution on an autodiff device (flex, f32), recording a backward that gives the
/// input's gradient: RASG differentiates with respect to the latent only. `None` where the
/// weights or the bias are tracked themselves, or for a stride other than 1 (burn's operation
/// then records its own backward). The forward multiplies in `products`, the backward in f32.
pub(crate) fn conv2d_tracked(
    x: &Tensor<4>,
    weight: &Tensor<4>,
    bias: Option<&Tensor<1>>,
    options: &ConvOptions<2>,
    products: Products,
) -> Option<Tensor<4>> {
    let x_ad = x.clone().try_into_primitive::<Autodiff<Flex>>().ok()?;
    let weight_t = flex_weight(weight, products)?;
    let bias = match bias {
        Some(b) => Some(flex_f32_untracked(b)?.to_contiguous()),
        None => None,
    };
    let geometry = Geometry::new(x.dims(), weight.dims(), options)?;
    let gradient_options = InputGradient::options(options, geometry.kernel)?;
    if x_ad.primitive().dtype() != burn::tensor::DType::F32 {
        return None;
    }
    let out = conv2d_f32(
        &x_ad.primitive().to_contiguous(),
        Weights::of(&weight_t)?,
        bias.as_ref().map(elements),
        &geometry,
        products,
    );
    Some(record(InputGradient, [x_ad.node()], out, |_| {
        (weight_t, gradient_options)
    }))
}

/// The backward of a unit-stride convolution with respect to its input: the convolution of the
/// output's gradient with the weights flipped in space and with input and output channels
/// swapped, padded so that it gives back the input's size.
#[derive(Debug)]
struct InputGradient;

impl InputGradient {
    /// The options of the gradient's convolution for a forward one with `options` and
    /// `kernel`; `None` unless the stride is 1 and the padding at most the kernel's reach.
    fn options(options: &ConvOptions<2>, kernel: [usize; 2]) -> Option<ConvOptions<2>> {
        if options.stride != [1, 1] {
            return None;
        }
        let reach = |axis: usize| options.dilation[axis] * (kernel[axis] - 1);
        let flip = |axis: usize| {
            let (before, after) = options.padding[axis];
            Some((
                reach(axis).checked_sub(before)?,
                reach(axis).checked_sub(after)?,
            ))
        };
        Some(ConvOptions::new_with_padding(
            [1, 1],
            [flip(0)?, flip(1)?],
            options.dilation,
            1,
        ))
    }

    /// `weight` `[out, in, kh, kw]` as `[in, out, kh, kw]`, each kernel turned by 180 degrees.
    fn flipped(weight: &FlexTensor) -> FlexTensor {
        let [outputs, inputs, kh, kw] = dims(weight);
        let source = elements(weight);
        let taps = kh * kw;
        let mut flipped = vec![0f32; source.len()];
        for (i, row) in flipped.chunks_exact_mut(outputs * taps).enumerate() {
            for (o, kernel) in row.chunks_exact_mut(taps).enumerate() {
                let original = &source[(o * inputs + i) * taps..][..taps];
                kernel
                    .iter_mut()
                    .zip(original.iter().rev())
                    .for_each(|(d, s)| *d = *s);
            }
        }
        FlexTensor::from_data(TensorData::new(flipped, [inputs, outputs, kh, kw]))
    }
}

impl Backward<Flex, 1> for InputGradient {
    /// The weight as the forward read it (f32, or bf16 as stored), and the gradient's options.
    type State = (FlexTensor, ConvOptions<2>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        register_input_gradient(ops, grads, |(weight, options), grad| {
            let flipped = Self::flipped(&widened(weight));
            let geometry = Geometry::new(dims(&grad), dims(&flipped), &options)
                .expect("the gradient's convolution is valid where the forward one was");
            conv2d_f32(
                &grad.to_contiguous(),
                Weights::F32(elements(&flipped)),
                None,
                &geometry,
                Products::F32,
            )
        });
    }
}

/// Sizes and steps of one convolution.
struct Geometry {
    batch: usize,
    channels: usize,
    height: usize,
    width: usize,
    outputs: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    /// Padding before the first row and column.
    padding: [usize; 2],
    out_height: usize,
    out_width: usize,
}

impl Geometry {
    /// `None` for what the kernel leaves to burn: groups, a channel mismatch, an empty input or
    /// output.
    fn new(x: [usize; 4], weight: [usize; 4], options: &ConvOptions<2>) -> Option<Self> {
        let [batch, channels, height, width] = x;
        let [outputs, per_group, kh, kw] = weight;
        if options.groups != 1 || per_group != channels || x.contains(&0) || weight.contains(&0) {
            return None;
        }
        let out_size = |size: usize, (before, after): (usize, usize), k, stride: usize, dil| {
            let span = dil * (k - 1) + 1;
            (size + before + after)
                .checked_sub(span)
                .map(|s| s / stride + 1)
        };
        let [stride_h, stride_w] = options.stride;
        let [dil_h, dil_w] = options.dilation;
        if stride_h == 0 || stride_w == 0 || dil_h == 0 || dil_w == 0 {
            return None;
        }
        let out_height = out_size(height, options.padding[0], kh, stride_h, dil_h)?;
        let out_width = out_size(width, options.padding[1], kw, stride_w, dil_w)?;
        Some(Self {
            batch,
            channels,
            height,
            width,
            outputs,
            kernel: [kh, kw],
            stride: options.stride,
            dilation: options.dilation,
            padding: options.padding_begin(),
            out_height,
            out_width,
        })
    }

    /// A 1x1 kernel with unit stride and no padding: the input is its own im2col matrix.
    fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1]
            && self.stride == [1, 1]
            && self.padding == [0, 0]
            && self.out_height == self.height
            && self.out_width == self.width
    }

    /// Rows of the im2col matrix: one per input channel and kernel tap.
    fn depth(&self) -> usize {
        self.channels * self.kernel[0] * self.kernel[1]
    }

    /// Fills `columns` (`depth x rows.len() * out_width`, row-major) with the input values each
    /// output position of `rows` sees through each tap, 0 where a tap falls in the padding.
    fn im2col(&self, image: &[f32], rows: Range<usize>, columns: &mut [f32]) {
        let [kh, kw] = self.kernel;
        let [stride_h, stride_w] = self.stride;
        let [dil_h, dil_w] = self.dilation;
        let [pad_top, pad_left] = self.padding;
        let (width, out_width) = (self.width, self.out_width);
        let positions = rows.len() * out_width;
        for (row, column) in columns.chunks_exact_mut(positions).enumerate() {
            let (channel, tap_h, tap_w) = (row / (kh * kw), row / kw % kh, row % kw);
            let plane = &image[channel * self.height * width..][..self.height * width];
            // Input column of output column `ow`: `ow * stride_w + shift`, inside the image for
            // `ow` in `first..last`.
            let shift = (tap_w * dil_w) as isize - pad_left as isize;
            let first = if shift >= 0 {
                0
            } else {
                (-shift as usize).div_ceil(stride_w)
            };
            let last = (width as isize - shift).max(0) as usize;
            let last = last
                .div_ceil(stride_w)
                .clamp(first.min(out_width), out_width);
            let first = first.min(last);
            for (line, oh) in column.chunks_exact_mut(out_width).zip(rows.clone()) {
                let ih = (oh * stride_h + tap_h * dil_h) as isize - pad_top as isize;
                if ih < 0 || ih >= self.height as isize {
                    line.fill(0.0);
                    continue;
                }
                let source = &plane[ih as usize * width..][..width];
                line[..first].fill(0.0);
                line[last..].fill(0.0);
                let start = (first * stride_w) as isize + shift;
                if stride_w == 1 {
                    line[first..last].copy_from_slice(&source[start as usize..][..last - first]);
                } else {
                    let taken = source[start as usize..].iter().step_by(stride_w);
                    line[first..last]
                        .iter_mut()
                        .zip(taken)
                        .for_each(|(d, s)| *d = *s);
                }
            }
        }
    }
}

fn conv2d_f32(
    x: &FlexTensor,
    weights: Weights<'_>,
    bias: Option<&[f32]>,
    g: &Geometry,
    products: Products,
) -> FlexTensor {
    let input = elements(x);
    let positions = g.out_height * g.out_width;
    let image_len = g.channels * g.height * g.width;
    let depth = g.depth();
    let band_rows = (BAND_POSITIONS / g.out_width).clamp(1, g.out_height);
    let bands = g.out_height.div_ceil(band_rows);
    let total = g.batch * g.outputs * positions;
    let mut out = Vec::<f32>::with_capacity(total);
    let dst = SharedMut(out.as_mut_ptr());
    let band = |task: usize| {
        let (b, band) = (task / bands, task % bands);
        let rows = band * band_rows..((band + 1) * band_rows).min(g.out_height);
        let (first, n) = (rows.start * g.out_width, rows.len() * g.out_width);
        let image = &input[b * image_len..][..image_len];
        // SAFETY: the band's elements of the output (columns `first..first + n` of each output
        // channel's plane in image `b`) lie inside `out`'s capacity, and no other band writes
        // them.
        let band_out = unsafe { dst.add((b * g.outputs) * positions + first) };
        if let Some(bias) = bias {
            for (o, &value) in bias.iter().enumerate() {
                // SAFETY: as above, row `o` of the band.
                unsafe { std::slice::from_raw_parts_mut(band_out.add(o * positions), n) }
                    .fill(value);
            }
        }
        let output = Output(band_out, positions as isize, bias.is_some());
        let lhs = weights.operand([depth as isize, 1]);
        if g.is_pointwise() {
            let rhs = Operand(image[first..].as_ptr(), positions as isize, 1);
            // SAFETY: `lhs` is the `outputs x depth` weights, `rhs` columns `first..first + n`
            // of the image's `depth x positions` planes, the output the band.
            unsafe { product_in(products, [g.outputs, n, depth], output, lhs, rhs) };
            return;
        }
        let mut columns = COLUMNS.take();
        columns.resize(depth * n, 0.0);
        g.im2col(image, rows, &mut columns[..depth * n]);
        let rhs = Operand(columns.as_ptr(), n as isize, 1);
        // SAFETY: as above, with `rhs` the band's `depth x n` im2col block.
        unsafe { product_in(products, [g.outputs, n, depth], output, lhs, rhs) };
        COLUMNS.set(columns);
    };
    let tasks = g.batch * bands;
    if tasks >= 2 * rayon::current_num_threads() {
        (0..tasks).into_par_iter().for_each(band);
    } else {
        // Too few bands to share out: each GEMM spreads over the threads instead.
        (0..tasks).for_each(band);
    }
    // SAFETY: the bands cover every output element, and each wrote all of its elements (the
    // GEMM overwrites, or adds to the bias written first).
    unsafe { out.set_len(total) };
    FlexTensor::from_data(TensorData::new(
        out,
        [g.batch, g.outputs, g.out_height, g.out_width],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::native::{max_difference, output_and_gradient};
    use burn::tensor::Distribution;
    use burn::tensor::module::conv2d as burn_conv2d;

    /// Against burn's own convolution (which takes the generic path for these shapes) over the
    /// settings the SD models use and the ones they do not: 1x1, 3x3 "same", stride 2 with the
    /// VAE's one-sided padding, dilation, a rectangular kernel, more rows than one band, a
    /// batch of 3 and no bias.
    #[test]
    fn matches_burns_convolution() {
        let device = hd_painter_core::BackendKind::Flex.device().unwrap();
        let normal = Distribution::Normal(0.0, 1.0);
        let cases: [([usize; 4], [usize; 4], ConvOptions<2>, bool); 7] = [
            (
                [2, 5, 9, 11],
                [7, 5, 1, 1],
                ConvOptions::new([1, 1], [0, 0], [1, 1], 1),
                true,
            ),
            (
                [2, 5, 9, 11],
                [7, 5, 3, 3],
                ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
                true,
            ),
            (
                [1, 4, 10, 13],
                [6, 4, 3, 3],
                ConvOptions::new_with_padding([2, 2], [(0, 1), (0, 1)], [1, 1], 1),
                true,
            ),
            (
                [1, 3, 12, 12],
                [4, 3, 3, 3],
                ConvOptions::new([1, 1], [2, 2], [2, 2], 1),
                true,
            ),
            (
                [3, 2, 8, 9],
                [5, 2, 2, 5],
                ConvOptions::new([1, 2], [0, 2], [1, 1], 1),
                false,
            ),
            (
                [1, 3, 70, 40],
                [4, 3, 3, 3],
                ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
                true,
            ),
            (
                [1, 2, 4, 4],
                [3, 2, 3, 3],
                ConvOptions::new([3, 3], [0, 0], [1, 1], 1),
                true,
            ),
        ];
        for (x_dims, w_dims, options, with_bias) in cases {
            let x = Tensor::<4>::random(x_dims, normal, &device);
            let weight = Tensor::<4>::random(w_dims, normal, &device);
            let bias = with_bias.then(|| Tensor::<1>::random([w_dims[0]], normal, &device));
            let got =
                conv2d(&x, &weight, bias.as_ref(), &options, Products::F32).expect("f32 on flex");
            let want = burn_conv2d(x, weight, bias, options);
            assert_eq!(got.dims(), want.dims(), "{x_dims:?} {w_dims:?}");
            let diff = max_difference(got, want);
            assert!(diff < 1e-4, "{x_dims:?} {w_dims:?}: {diff}");
        }
    }

    /// The recorded backward against burn's on the autodiff device, with the weights on the plain
    /// device as `valid()` leaves them: "same" 3x3, 1x1, one-sided padding and dilation.
    #[test]
    fn input_gradient_matches_burns() {
        let device = hd_painter_core::BackendKind::Flex.device().unwrap();
        let ad = device.clone().autodiff();
        let normal = Distribution::Normal(0.0, 1.0);
        let cases = [
            (
                [2, 3, 7, 6],
                [4, 3, 3, 3],
                ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
            ),
            (
                [1, 5, 4, 9],
                [2, 5, 1, 1],
                ConvOptions::new([1, 1], [0, 0], [1, 1], 1),
            ),
            (
                [1, 2, 6, 5],
                [3, 2, 3, 3],
                ConvOptions::new_with_padding([1, 1], [(0, 1), (1, 0)], [1, 1], 1),
            ),
            (
                [1, 2, 9, 9],
                [2, 2, 3, 3],
                ConvOptions::new([1, 1], [2, 1], [2, 2], 1),
            ),
        ];
        for (x_dims, w_dims, options) in cases {
            let weight = Tensor::<4>::random(w_dims, normal, &device);
            let bias = Tensor::<1>::random([w_dims[0]], normal, &device);
            let x = Tensor::<4>::random(x_dims, normal, &ad);
            let out_dims = burn_conv2d(x.clone(), weight.clone(), None, options.clone()).dims();
            let upstream = Tensor::<4>::random(out_dims, normal, &ad);
            let (out, grad) = output_and_gradient(&x, &upstream, |x| {
                conv2d_tracked(x, &weight, Some(&bias), &options, Products::F32).expect("native")
            });
            let (want_out, want_grad) = output_and_gradient(&x, &upstream, |x| {
                burn_conv2d(
                    x.clone(),
                    weight.clone(),
                    Some(bias.clone()),
                    options.clone(),
                )
            });
            assert!(
                max_difference(out, want_out) < 1e-4,
                "{x_dims:?} {w_dims:?}"
            );
            let grad_diff = max_difference(grad, want_grad);
            assert!(grad_diff < 1e-4, "{x_dims:?} {w_dims:?}: {grad_diff}");
        }
    }

    #[test]
    fn strided_input_is_read_in_order() {
        let device = hd_painter_core::BackendKind::Flex.device().unwrap();
        let normal = Distribution::Normal(0.0, 1.0);
        let x = Tensor::<4>::random([1, 6, 5, 3], normal, &device).swap_dims(1, 3);
        let weight = Tensor::<4>::random([2, 3, 3, 3], normal, &device);
        let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        let got = conv2d(&x, &weight, None, &options, Products::F32).expect("f32 on flex");
        let want = burn_conv2d(x, weight, None, options);
        let diff = max_difference(got, want);
        assert!(diff < 1e-5, "{diff}");
    }

    #[test]
    fn groups_autodiff_and_other_dtypes_are_left_to_burn() {
        let device = hd_painter_core::BackendKind::Flex.device().unwrap();
        let x = Tensor::<4>::zeros([1, 4, 5, 5], &device);
        let w = Tensor::<4>::zeros([4, 2, 3, 3], &device);
        let grouped = ConvOptions::new([1, 1], [1, 1], [1, 1], 2);
        assert!(conv2d(&x, &w, None, &grouped, Products::F32).is_none());
        let single = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        let w = Tensor::<4>::zeros([4, 4, 3, 3], &device);
        let ad = device.clone().autodiff();
        let (x_ad, w_ad) = (Tensor::zeros(x.dims(), &ad), Tensor::zeros(w.dims(), &ad));
        assert!(conv2d(&x_ad, &w_ad, None, &single, Products::F32).is_none());
        let half = |t: &Tensor<4>| t.clone().cast(burn::tensor::FloatDType::F16);
        assert!(conv2d(&half(&x), &half(&w), None, &single, Products::F32).is_none());
        let too_small = ConvOptions::new([1, 1], [0, 0], [3, 3], 1);
        assert!(conv2d(&x, &w, None, &too_small, Products::F32).is_none());
    }
}
