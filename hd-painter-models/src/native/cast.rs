//! Casts between f32 and f16 / bf16. burn-flex's cast converts one element at a time on one
//! thread; a model whose weights are stored in half precision and used in f32 widens every
//! layer's weights at every call, so here the conversion runs over chunks in parallel with
//! `half`'s slice conversions (F16C for f16, a shift for bf16, both vectorised).

use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, TensorData};
use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use rayon::prelude::*;

/// Elements per parallel task: large enough to amortise the task, small enough to split the
/// weights of one layer over both cores.
const CHUNK: usize = 1 << 15;

/// `t` in `dtype` for casts between f32 and f16 / bf16; `None` for any other pair.
pub(super) fn cast(t: &FlexTensor, dtype: DType) -> Option<FlexTensor> {
    let t = t.to_contiguous();
    let shape = t.layout().shape().to_vec();
    let data = match (t.dtype(), dtype) {
        (DType::F16, DType::F32) => TensorData::new(widen(t.as_slice::<f16>()?), shape),
        (DType::BF16, DType::F32) => TensorData::new(widen(t.as_slice::<bf16>()?), shape),
        (DType::F32, DType::F16) => TensorData::new(narrow::<f16>(t.as_slice()?), shape),
        (DType::F32, DType::BF16) => TensorData::new(narrow::<bf16>(t.as_slice()?), shape),
        _ => return None,
    };
    Some(FlexTensor::from_data(data))
}

fn widen<H: Sync>(src: &[H]) -> Vec<f32>
where
    [H]: HalfFloatSliceExt,
{
    let mut out = vec![0.0; src.len()];
    out.par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK))
        .for_each(|(out, src)| src.convert_to_f32_slice(out));
    out
}

fn narrow<H: Copy + Default + Send>(src: &[f32]) -> Vec<H>
where
    [H]: HalfFloatSliceExt,
{
    let mut out = vec![H::default(); src.len()];
    out.par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK))
        .for_each(|(out, src)| out.convert_from_f32_slice(src));
    out
}

#[cfg(test)]
mod tests {
    use super::CHUNK;
    use crate::native;
    use burn::tensor::{Distribution, FloatDType, Tensor, TensorData};

    fn bytes<const D: usize>(t: Tensor<D>) -> (Vec<usize>, burn::tensor::DType, Vec<u8>) {
        let data = t.into_data();
        (
            data.shape().to_vec(),
            data.dtype(),
            data.as_bytes().to_vec(),
        )
    }

    /// Bit for bit burn's own cast, both ways, for f16 and bf16: over several parallel chunks,
    /// through a transposed view, with the values that round specially (ties, subnormals,
    /// overflow, infinities, NaN).
    #[test]
    fn matches_burns_cast() {
        let device = hd_painter_core::BackendKind::Flex.device().unwrap();
        let mut values: Vec<f32> =
            Tensor::<1>::random([7 * (CHUNK / 2 + 1)], Distribution::Default, &device)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
        let special = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            1e-40,
            -3e-8,
            7e4,
            f32::MAX,
            f32::from_bits(0x3f80_8000), // a bf16 tie
            1.0 + 2f32.powi(-11),        // an f16 tie
            -0.0,
        ];
        values[..special.len()].copy_from_slice(&special);
        let rows = values.len() / 7;
        let t = Tensor::<2>::from_data(TensorData::new(values, [rows, 7]), &device).transpose();
        let flex = t
            .clone()
            .try_into_primitive::<burn::backend::Flex>()
            .unwrap();
        assert!(
            super::cast(&flex, burn::tensor::DType::BF16).is_some(),
            "the native path runs"
        );
        for dtype in [FloatDType::F16, FloatDType::BF16] {
            let narrow = native::cast(t.clone(), dtype);
            assert_eq!(
                bytes(narrow.clone()),
                bytes(t.clone().cast(dtype)),
                "{dtype:?}"
            );
            let wide = native::cast(narrow.clone(), FloatDType::F32);
            assert_eq!(
                bytes(wide),
                bytes(narrow.cast(FloatDType::F32)),
                "{dtype:?}"
            );
        }
    }

    /// On an autodiff device a weight (untracked) is converted natively and stays untracked; a
    /// tracked tensor goes through burn's cast, which carries its gradient.
    #[test]
    fn autodiff_weights_stay_untracked_and_tracked_tensors_keep_their_gradient() {
        let device = hd_painter_core::BackendKind::Flex
            .device()
            .unwrap()
            .autodiff();
        let weight =
            Tensor::<2>::random([3, 5], Distribution::Default, &device).cast(FloatDType::BF16);
        let widened = native::cast(weight.clone(), FloatDType::F32);
        assert!(widened.is_autodiff() && !widened.is_tracked());
        assert_eq!(bytes(widened), bytes(weight.cast(FloatDType::F32)));

        let x = Tensor::<2>::random([3, 5], Distribution::Default, &device).require_grad();
        let y = native::cast(x.clone(), FloatDType::BF16);
        let grads = (y.cast(FloatDType::F32) * 3.0).sum().backward();
        let grad: Vec<f32> = x
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!(grad.iter().all(|&g| g == 3.0), "{grad:?}");
    }
}
