//! hd-painter's own kernels for burn's flex CPU backend, reached through burn's
//! backend-extension API (`Tensor::try_into_primitive::<Flex>`): attention, 2-d convolution,
//! GroupNorm (with the SiLU that follows it fused in), linear layers and GEGLU. Each runs for
//! f32 tensors on flex, both outside autodiff and on `Autodiff<Flex>`, where it records its own
//! backward through burn-autodiff's `Backward` trait. Those backwards give the gradient with
//! respect to the activations only (RASG differentiates with respect to the latent, the weights
//! stay untracked); with tracked weights, and everywhere else (f16 / bf16, the GPU backends, layer
//! settings a kernel does not cover), the layer functions here call burn's own operation, so
//! the results never depend on which path ran beyond rounding. Each layer function first casts
//! the layer's weights to its input's dtype ([`params_in`], with the parallel f32 <-> f16 / bf16
//! conversion of `cast.rs`): how weights stored in f16 run in the f32 kernels. A model whose
//! weights are stored in bf16 runs its forward under [`with_products`]`(Products::Bf16)`
//! ([`products_of`]): the linear, convolution and attention kernels then multiply bf16-rounded
//! operands with f32 sums (`bf16/`: AMX, AVX512-BF16, or the f32 GEMM on rounded operands),
//! reading bf16 weights as stored on a plain device.

mod attention;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod bf16;
mod cast;
mod conv;
mod geglu;
mod linear;
mod norm;
mod panels;
mod products;

pub(crate) use attention::{flex_attention, flex_attention_tracked};
pub(crate) use bf16::{Products, with_products};
use products::{SharedRhs, Weights, flex_weight, product_in, widened};

use std::borrow::Cow;

use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, NodeGuard, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, DispatchDevice, Flex};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, Linear, PaddingConfig2d};
use burn::tensor::activation::{gelu, silu};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, FloatDType, Tensor};

/// `layer.forward(x)`, through the native convolution where it applies, multiplying in this
/// thread's [`Products`].
pub(crate) fn conv(layer: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let products = bf16::products();
    let burns = |x: Tensor<4>| params_in(layer, x.dtype()).forward(x);
    let keep = keeps_bf16_weight(&layer.weight, &x, products);
    let layer = &*weights_in(layer, keep, x.dtype(), |l| &mut l.bias);
    let padding = match layer.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) => [(top, bottom), (left, right)],
        PaddingConfig2d::Valid => [(0, 0), (0, 0)],
        PaddingConfig2d::Same => return burns(x),
    };
    let options =
        ConvOptions::new_with_padding(layer.stride, padding, layer.dilation, layer.groups);
    let bias = layer.bias.as_ref().map(|b| b.val());
    let weight = layer.weight.val();
    native(
        &x,
        || conv::conv2d(&x, &weight, bias.as_ref(), &options, products),
        || conv::conv2d_tracked(&x, &weight, bias.as_ref(), &options, products),
    )
    .unwrap_or_else(|| burns(x))
}

/// Whether a layer keeps its `weight` as stored for input `x`: bf16 weights with bf16 products
/// (f32 activations), where the kernels read bf16 directly instead of a widened copy made at
/// every call. On an autodiff device the recorded backward keeps the bf16 weight too and widens
/// it only while it runs: a widened copy kept for the backward of every layer held 4 bytes per
/// parameter until RASG's gradient was taken (10.3 GB for SDXL's UNet).
fn keeps_bf16_weight<const D: usize, const E: usize>(
    weight: &Param<Tensor<D>>,
    x: &Tensor<E>,
    products: Products,
) -> bool {
    products == Products::Bf16 && x.dtype() == DType::F32 && weight.val().dtype() == DType::BF16
}

/// `layer` with its parameters in `dtype` ([`params_in`]); where `keep_weight`, its weight as
/// stored and only its `bias` cast.
fn weights_in<M: Module>(
    layer: &M,
    keep_weight: bool,
    dtype: DType,
    bias: impl FnOnce(&mut M) -> &mut Option<Param<Tensor<1>>>,
) -> Cow<'_, M> {
    if !keep_weight {
        return params_in(layer, dtype);
    }
    let mut kept = layer.clone();
    let bias = bias(&mut kept);
    *bias = bias.take().map(|b| b.map(|t| cast(t, dtype.into())));
    Cow::Owned(kept)
}

/// `layer.forward(x)` for a GroupNorm, natively where it applies.
pub(crate) fn group_norm(layer: &GroupNorm, x: Tensor<4>) -> Tensor<4> {
    let layer = &*params_in(layer, x.dtype());
    native_norm(layer, &x, false).unwrap_or_else(|| layer.forward(x))
}

/// `silu(layer.forward(x))` in one pass over the activations, natively where it applies.
pub(crate) fn group_norm_silu(layer: &GroupNorm, x: Tensor<4>) -> Tensor<4> {
    let layer = &*params_in(layer, x.dtype());
    native_norm(layer, &x, true).unwrap_or_else(|| silu(layer.forward(x)))
}

fn native_norm(layer: &GroupNorm, x: &Tensor<4>, silu: bool) -> Option<Tensor<4>> {
    native(
        x,
        || norm::group_norm(layer, x, silu),
        || norm::group_norm_tracked(layer, x, silu),
    )
}

/// `layer.forward(x)` for a linear layer, natively where it applies, multiplying in this
/// thread's [`Products`].
pub(crate) fn linear(layer: &Linear, x: Tensor<3>) -> Tensor<3> {
    let products = bf16::products();
    let burns = |x: Tensor<3>| params_in(layer, x.dtype()).forward(x);
    let keep = keeps_bf16_weight(&layer.weight, &x, products);
    let layer = &*weights_in(layer, keep, x.dtype(), |l| &mut l.bias);
    native(
        &x,
        || linear::linear(layer, &x, products),
        || linear::linear_tracked(layer, &x, products),
    )
    .unwrap_or_else(|| burns(x))
}

/// GEGLU's gate, `a * gelu(g)` for `h = [a, g]` split in two along its last axis, natively
/// where it applies.
pub(crate) fn geglu(h: Tensor<3>) -> Tensor<3> {
    native(&h, || geglu::geglu(&h), || geglu::geglu_tracked(&h)).unwrap_or_else(|| burn_geglu(h))
}

/// GEGLU's gate composed from burn's operations: the fallback, and the kernel tests' reference.
fn burn_geglu(h: Tensor<3>) -> Tensor<3> {
    let [b, n, width] = h.dims();
    let half = width / 2;
    let a = h.clone().slice([0..b, 0..n, 0..half]);
    a * gelu(h.slice([0..b, 0..n, half..2 * half]))
}

/// How a model whose weights are stored in `weights` and whose activations are computed in
/// `compute` multiplies: [`Products::Bf16`] for bf16 weights computing in f32
/// (`with_weight_dtype(BF16)`), as PyTorch multiplies a bf16 model; f32 otherwise. (Weights
/// stored in f16 widen exactly and multiply in f32: these CPUs have no f16 product that sums in
/// f32.) Each model's forward runs under [`with_products`] with it, so every layer inside,
/// including an attention processor's, multiplies alike.
pub(crate) fn products_of(weights: FloatDType, compute: FloatDType) -> Products {
    if weights == FloatDType::BF16 && compute == FloatDType::F32 {
        Products::Bf16
    } else {
        Products::F32
    }
}

/// `t` cast to `dtype`, converted by the native kernel between f32 and f16 / bf16 on flex
/// (also on an autodiff device, for a tensor without a gradient to record, such as a weight).
pub(crate) fn cast<const D: usize>(t: Tensor<D>, dtype: FloatDType) -> Tensor<D> {
    let target = DType::from(dtype);
    if t.dtype() == target {
        return t;
    }
    let on_flex = |t: Tensor<D>| {
        let flex = t.try_into_primitive::<Flex>().ok()?;
        Some(Tensor::<D>::from_primitive::<Flex>(cast::cast(
            &flex, target,
        )?))
    };
    let native = if !t.is_autodiff() {
        on_flex(t.clone())
    } else if !t.is_tracked() {
        on_flex(t.clone().inner()).map(Tensor::autodiff)
    } else {
        None
    };
    native.unwrap_or_else(|| t.cast(dtype))
}

/// `layer` with its float parameters in `dtype`: the layer itself where they already are, else
/// a copy cast with [`cast`]. Layers compute in their input's dtype, so this is where weights
/// stored in f16 / bf16 meet f32 activations, one layer at a time (`with_weight_dtype`).
pub(crate) fn params_in<M: Module>(layer: &M, dtype: DType) -> Cow<'_, M> {
    struct Differs(DType, bool);
    impl ModuleVisitor for Differs {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.1 |= param.val().dtype() != self.0;
        }
    }
    let mut differs = Differs(dtype, false);
    layer.visit(&mut differs);
    if differs.1 {
        Cow::Owned(cast_params(layer.clone(), dtype.into()))
    } else {
        Cow::Borrowed(layer)
    }
}

/// `module` with every float parameter cast to `dtype` by [`cast`].
fn cast_params<M: Module>(module: M, dtype: FloatDType) -> M {
    struct CastParams(FloatDType);
    impl ModuleMapper for CastParams {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let dtype = self.0;
            param.map(|t| cast(t, dtype))
        }
    }
    module.map(&mut CastParams(dtype))
}

/// A model whose weights are stored in one dtype and whose activations are computed in another:
/// the one body behind every model's `with_dtype` and `with_weight_dtype`.
pub(crate) trait Precision: Module + Sized {
    /// The model's record of the dtype its activations are computed in.
    fn compute_dtype_mut(&mut self) -> &mut FloatDType;

    /// This model with its weights cast to `weights`, computing in `compute`.
    fn with_precision(self, weights: FloatDType, compute: FloatDType) -> Self {
        let mut model = cast_params(self, weights);
        *model.compute_dtype_mut() = compute;
        model
    }

    /// A model just loaded with its weights converted to `dtype`, as `with_weight_dtype(dtype)`
    /// leaves a model (f32: as loaded, the reference path).
    fn stored_as(self, dtype: FloatDType) -> Self {
        match dtype {
            FloatDType::F32 => self,
            weights => self.with_precision(weights, FloatDType::F32),
        }
    }
}

/// The kernel for `x`'s device: `tracked` on an autodiff device (it records its own backward),
/// `plain` elsewhere. Each returns `None` where it does not apply.
fn native<const D: usize, T>(
    x: &Tensor<D>,
    plain: impl FnOnce() -> Option<T>,
    tracked: impl FnOnce() -> Option<T>,
) -> Option<T> {
    if x.device().is_autodiff() {
        tracked()
    } else {
        plain()
    }
}

/// The flex tensors behind `tensors` when all of them are f32 on a flex device without
/// autodiff: the case the native kernels cover.
fn flex_f32<const D: usize, const N: usize>(tensors: [&Tensor<D>; N]) -> Option<[FlexTensor; N]> {
    let native = tensors.iter().all(|t| {
        let device = t.device();
        !device.is_autodiff()
            && matches!(device.as_dispatch(), DispatchDevice::Flex(_))
            && t.dtype() == DType::F32
    });
    if !native {
        return None;
    }
    let primitives: Vec<FlexTensor> = tensors
        .iter()
        .map(|t| (*t).clone().try_into_primitive::<Flex>().ok())
        .collect::<Option<_>>()?;
    primitives.try_into().ok()
}

/// The flex tensor behind `t` when it is on flex and not tracked by autodiff: either on a
/// plain flex device, or on an autodiff one without a gradient to record (the weights of a
/// model differentiated with respect to its input only).
fn flex_untracked<const D: usize>(t: &Tensor<D>) -> Option<FlexTensor> {
    let device = t.device();
    if !device.is_autodiff() {
        let flex = matches!(device.as_dispatch(), DispatchDevice::Flex(_));
        return flex.then(|| t.clone().try_into_primitive::<Flex>().ok())?;
    }
    let tracked = t.clone().try_into_primitive::<Autodiff<Flex>>().ok()?;
    (!tracked.is_tracked()).then(|| tracked.into_primitive())
}

/// [`flex_untracked`] for an f32 tensor.
fn flex_f32_untracked<const D: usize>(t: &Tensor<D>) -> Option<FlexTensor> {
    (t.dtype() == DType::F32).then(|| flex_untracked(t))?
}

/// Wraps `out`, computed by a native kernel from autodiff inputs, as a tensor on the autodiff
/// device, recording `backward` with the state `state` builds from `out`, which is built only
/// when some input is tracked.
fn record<B: Backward<Flex, N>, const N: usize, const D: usize>(
    backward: B,
    inputs: [NodeGuard; N],
    out: FlexTensor,
    state: impl FnOnce(&FlexTensor) -> B::State,
) -> Tensor<D> {
    let out = match backward
        .prepare::<NoCheckpointing>(inputs)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let state = state(&out);
            prep.finish(state, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Tensor::from_primitive::<Autodiff<Flex>>(out)
}

/// The body of a one-input backward: consumes the output's gradient and, when the input is
/// tracked, registers `gradient(state, output's gradient)` as the input's.
fn register_input_gradient<S>(
    ops: Ops<S, 1>,
    grads: &mut Gradients,
    gradient: impl FnOnce(S, FlexTensor) -> FlexTensor,
) {
    let [input] = ops.parents;
    let upstream = grads.consume::<Flex>(&ops.node);
    if let Some(input) = input {
        grads.register::<Flex>(input.id, gradient(ops.state, upstream));
    }
}

fn dims(t: &FlexTensor) -> [usize; 4] {
    let s = t.layout().shape();
    [s[0], s[1], s[2], s[3]]
}

/// A contiguous f32 flex tensor's elements in row-major order.
fn elements(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("an f32 tensor made contiguous has a contiguous f32 slice")
}

/// A matrix operand: its first element, row stride and column stride (in elements).
#[derive(Clone, Copy)]
struct Operand<T = f32>(*const T, isize, isize);

// SAFETY: an operand is only read, from memory its creator keeps valid and unchanged while the
// product that reads it runs (see `product`).
unsafe impl<T: Sync> Send for Operand<T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for Operand<T> {}

/// A product's destination: its first element, its row stride (columns are adjacent) and
/// whether the product is added to what it holds (`true`) or overwrites it.
#[derive(Clone, Copy)]
struct Output(*mut f32, isize, bool);

/// `dst (+)= lhs rhs` for `[m, n, k]`: `dst` `m x n`, `lhs` `m x k`, `rhs` `k x n`. Called from
/// inside rayon's pool (the callers' blocks already run in parallel) it stays on the calling
/// thread; called from outside with enough work it spreads over the pool.
///
/// # Safety
/// `dst`, `lhs` and `rhs` address `m x n`, `m x k` and `k x n` valid elements, and no other
/// thread touches the destination's elements meanwhile.
unsafe fn product([m, n, k]: [usize; 3], dst: Output, lhs: Operand, rhs: Operand) {
    const PARALLEL_WORK: usize = 1 << 21;
    let parallelism = if rayon::current_thread_index().is_none() && m * n * k >= PARALLEL_WORK {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the caller's promise; gemm reads `lhs`, `rhs` (and `dst` when accumulating) and
    // writes `dst` only.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.0,
            1,
            dst.1,
            dst.2,
            lhs.0,
            lhs.2,
            lhs.1,
            rhs.0,
            rhs.2,
            rhs.1,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// A raw pointer that the parallel tasks writing disjoint parts of one buffer may share.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);

impl SharedMut {
    /// The element `offset` places on. (A method, so that closures capture the whole
    /// `SharedMut` rather than its raw pointer field.)
    ///
    /// # Safety
    /// As `pointer::add`: the result lies inside the buffer.
    unsafe fn add(self, offset: usize) -> *mut f32 {
        // SAFETY: the caller's promise.
        unsafe { self.0.add(offset) }
    }
}

// SAFETY: every user writes a part of the buffer no other task writes (see each use).
unsafe impl Send for SharedMut {}
// SAFETY: as above.
unsafe impl Sync for SharedMut {}

/// Runs `kernel` compiled for the widest vector unit the CPU has (AVX-512, else AVX2 + FMA,
/// checked at run time): the kernels are written as plain loops that the compiler vectorises
/// for the target features of the function they are inlined into. Pass `kernel` as an
/// `#[inline(always)]` closure: one the compiler leaves out of line is compiled for the baseline
/// target (SSE2) and runs several times slower.
#[inline(always)]
fn vectorised<R>(kernel: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { avx512(kernel) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: as above.
            return unsafe { avx2(kernel) };
        }
    }
    kernel()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn avx512<R>(kernel: impl FnOnce() -> R) -> R {
    kernel()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn avx2<R>(kernel: impl FnOnce() -> R) -> R {
    kernel()
}

/// `values` folded by `op` (associative and commutative: `+`, `max`) into 16 independent lanes
/// and then the lanes into one. A plain fold over floats is one chain of dependent operations,
/// which the compiler may not reorder, so it runs one element per operation latency; the lanes
/// vectorise.
#[inline(always)]
fn lane_fold(values: &[f32], identity: f32, op: impl Fn(f32, f32) -> f32) -> f32 {
    const LANES: usize = 16;
    let mut lanes = [identity; LANES];
    let whole = values.chunks_exact(LANES);
    let rest = whole.remainder();
    for chunk in whole {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = op(*lane, v);
        }
    }
    lanes
        .into_iter()
        .chain(rest.iter().copied())
        .fold(identity, op)
}

/// `e^x` within 2 ulp of libm's `expf` over `[-87, 88]`, branch-free so that it vectorises:
/// `x = n ln 2 + r` with `|r| <= ln 2 / 2` (Cody-Waite, two-part `ln 2`), `e^r` by its degree-7
/// Taylor polynomial, times `2^n` put together in the exponent bits. Arguments are clamped to
/// that range: below it `e^-87` (1.6e-38) stands for 0 next to the values it is added to (a
/// softmax's maximum gives `e^0 = 1`, SiLU's denominator is at least 1), above it `e^88`
/// (1.7e38) makes SiLU's `x / (1 + e^-x)` 0 within 1e-36. NaN stays NaN, so poisoned input
/// poisons the output.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer in the FPU.
    const ROUND: f32 = 12_582_912.0;
    let clamped = x.clamp(-87.0, 88.0);
    let shifted = clamped * LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = (clamped - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.0 / 5040.0;
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    // `shifted`'s low mantissa bits hold `n` (in [-126, 127]) as an integer: adding the bias 127
    // and shifting them into the exponent field builds `2^n` without a float-to-int conversion,
    // whose saturating semantics would keep the loop from vectorising.
    let two_n = f32::from_bits(shifted.to_bits().wrapping_add(127) << 23);
    if x.is_nan() { x } else { p * two_n }
}

/// The output of `op` on an autodiff device and the gradient of `sum(out * upstream)` with
/// respect to `x` (for the backwards' tests).
#[cfg(test)]
fn output_and_gradient<const D: usize, const E: usize>(
    x: &Tensor<D>,
    upstream: &Tensor<E>,
    op: impl FnOnce(&Tensor<D>) -> Tensor<E>,
) -> (Tensor<E>, Tensor<D>) {
    let x = x.clone().require_grad();
    let out = op(&x);
    let grads = (out.clone() * upstream.clone()).sum().backward();
    (out.inner(), x.grad(&grads).expect("a gradient"))
}

/// The largest absolute difference between two tensors of one shape (for the kernels' tests).
#[cfg(test)]
fn max_difference<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    (a - b).abs().max().into_scalar()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length around the lane count, with the maximum in the remainder and in a lane.
    #[test]
    fn lane_fold_folds_every_element() {
        for len in [0usize, 1, 15, 16, 17, 40] {
            let values: Vec<f32> = (0..len).map(|i| ((i * 7) % 11) as f32 - 3.0).collect();
            let sum: f32 = values.iter().sum();
            assert_eq!(lane_fold(&values, 0.0, |a, b| a + b), sum, "{len}");
            for at in [0, len.saturating_sub(1)] {
                let mut peaked = values.clone();
                if let Some(v) = peaked.get_mut(at) {
                    *v = 100.0;
                }
                let max = peaked.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                assert_eq!(
                    lane_fold(&peaked, f32::NEG_INFINITY, f32::max),
                    max,
                    "{len}"
                );
            }
        }
    }

    #[test]
    fn exp_is_within_2_ulp_of_libm_on_its_range() {
        let mut worst = 0u32;
        for i in 0..=2_000_000 {
            let x = -87.0 + 175.0 * i as f32 / 2_000_000.0;
            let (got, want) = (exp(x), x.exp());
            worst = worst.max(got.to_bits().abs_diff(want.to_bits()));
        }
        assert!(worst <= 2, "{worst} ulp");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-1000.0), exp(-87.0));
        assert_eq!(exp(f32::NEG_INFINITY), exp(-87.0));
        assert_eq!(exp(f32::INFINITY), exp(88.0));
        assert!(exp(-87.0) < 2e-38);
        assert!(exp(88.0).is_finite());
        assert!(exp(f32::NAN).is_nan());
    }
}
