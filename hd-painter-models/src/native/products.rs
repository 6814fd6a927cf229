//! The products of the layer kernels whichever their arithmetic: operands that are f32 values
//! or bf16 weights as stored, one right operand shared by several products, and the rule that
//! picks the f32 GEMM or the bf16 one.

use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Tensor};

use super::bf16::{self, Products};
use super::cast::cast;
use super::panels::PackedF32;
use super::{Operand, Output, flex_f32_untracked, flex_untracked, product};

/// An operand of f32 values, or of bf16 weights as stored.
#[derive(Clone, Copy)]
pub(super) enum AnyOperand {
    F32(Operand<f32>),
    Bf16(Operand<half::bf16>),
}

impl From<Operand<f32>> for AnyOperand {
    fn from(op: Operand<f32>) -> Self {
        Self::F32(op)
    }
}

impl From<Operand<half::bf16>> for AnyOperand {
    fn from(op: Operand<half::bf16>) -> Self {
        Self::Bf16(op)
    }
}

/// `dst (+)= lhs rhs` as [`product`] does, in `products`' arithmetic. A bf16 operand (weights
/// kept as stored, which the layers do for bf16 products only) makes the product bf16.
///
/// # Safety
/// As [`product`].
pub(super) unsafe fn product_in(
    products: Products,
    dims: [usize; 3],
    dst: Output,
    lhs: impl Into<AnyOperand>,
    rhs: impl Into<AnyOperand>,
) {
    use AnyOperand::{Bf16, F32};
    use bf16::product_bf16;
    // SAFETY: the caller's promise.
    unsafe {
        match (products, lhs.into(), rhs.into()) {
            (Products::F32, F32(lhs), F32(rhs)) => product(dims, dst, lhs, rhs),
            (_, F32(lhs), F32(rhs)) => product_bf16(dims, dst, lhs, rhs),
            (_, Bf16(lhs), F32(rhs)) => product_bf16(dims, dst, lhs, rhs),
            (_, F32(lhs), Bf16(rhs)) => product_bf16(dims, dst, lhs, rhs),
            (_, Bf16(lhs), Bf16(rhs)) => product_bf16(dims, dst, lhs, rhs),
        }
    }
}

/// The size above which [`SharedRhs::packed_once`] packs an f32 operand: about a core's share
/// of a server's L3 cache (the UNet's heads at a 64 x 64 latent, 1 MiB, stay below it).
pub(super) const PACK_ONCE_BYTES: usize = 8 << 20;

/// A right operand `k x n` for several products (with each image of a batch): read in place
/// for f32 products, packed once for bf16 ones ([`product_in`]'s rule), or packed once in both
/// arithmetics ([`SharedRhs::packed_once`]).
pub(super) enum SharedRhs {
    F32(Operand, [usize; 2]),
    F32Panels(PackedF32),
    Packed(bf16::PackedRhs),
}

impl SharedRhs {
    /// `rhs` must stay valid while this is used.
    pub(super) fn new(
        products: Products,
        rhs: AnyOperand,
        size: [usize; 2],
        parallel: bool,
    ) -> Self {
        match (products, rhs) {
            (Products::F32, AnyOperand::F32(rhs)) => Self::F32(rhs, size),
            (_, AnyOperand::F32(rhs)) => Self::Packed(bf16::PackedRhs::new(rhs, size, parallel)),
            (_, AnyOperand::Bf16(rhs)) => Self::Packed(bf16::PackedRhs::new(rhs, size, parallel)),
        }
    }

    /// The same for a right operand that many products multiply (an attention head's keys or
    /// values, with every block of queries): f32 ones larger than [`PACK_ONCE_BYTES`] are
    /// packed once too, into the f32 panel kernel's panels, where the CPU has that kernel. A
    /// GEMM called per block packs its right operand again each time; that costs little while
    /// the operand stays in the cache, but at the x4 VAE's 262,144 tokens (512 MiB per operand,
    /// read from memory for every block) it was half of the attention's time.
    pub(super) fn packed_once(
        products: Products,
        rhs: AnyOperand,
        size: [usize; 2],
        parallel: bool,
    ) -> Self {
        let large = size[0] * size[1] * std::mem::size_of::<f32>() > PACK_ONCE_BYTES;
        if let (Products::F32, AnyOperand::F32(op), true) = (products, rhs, large)
            && let Some(panels) = PackedF32::new(op, size, parallel)
        {
            return Self::F32Panels(panels);
        }
        Self::new(products, rhs, size, parallel)
    }

    /// `dst (+)= lhs rhs` for `lhs` `m x k`.
    ///
    /// # Safety
    /// As [`product`].
    pub(super) unsafe fn multiply(&self, m: usize, dst: Output, lhs: Operand) {
        // SAFETY: the caller's promise.
        unsafe {
            match self {
                Self::F32(rhs, [k, n]) => product([m, *n, *k], dst, lhs, *rhs),
                Self::F32Panels(rhs) => rhs.multiply(m, dst, lhs),
                Self::Packed(rhs) => rhs.multiply(m, dst, lhs),
            }
        }
    }
}

/// A layer's weight tensor as the kernels read it: f32, or bf16 as stored.
#[derive(Clone, Copy)]
pub(super) enum Weights<'a> {
    F32(&'a [f32]),
    Bf16(&'a [half::bf16]),
}

impl<'a> Weights<'a> {
    /// The elements of a contiguous f32 or bf16 tensor.
    pub(super) fn of(t: &'a FlexTensor) -> Option<Self> {
        match t.dtype() {
            DType::F32 => Some(Self::F32(t.as_slice()?)),
            DType::BF16 => Some(Self::Bf16(t.as_slice()?)),
            _ => None,
        }
    }

    /// The weights as a matrix operand with `strides` (row, column).
    pub(super) fn operand(self, [row, col]: [isize; 2]) -> AnyOperand {
        match self {
            Self::F32(w) => Operand(w.as_ptr(), row, col).into(),
            Self::Bf16(w) => Operand(w.as_ptr(), row, col).into(),
        }
    }
}

/// The flex tensor behind a weight that the kernels read in place, contiguous: untracked f32,
/// or untracked bf16 when `products` are bf16 (where [`weights_in`] keeps bf16 weights).
pub(super) fn flex_weight<const D: usize>(t: &Tensor<D>, products: Products) -> Option<FlexTensor> {
    let weight = match t.dtype() == DType::BF16 && products == Products::Bf16 {
        true => flex_untracked(t)?,
        false => flex_f32_untracked(t)?,
    };
    Some(weight.to_contiguous())
}

/// A weight kept for a backward, in f32: bf16 ones widened for the time the backward runs.
pub(super) fn widened(weight: FlexTensor) -> FlexTensor {
    match weight.dtype() {
        DType::BF16 => cast(&weight, DType::F32).expect("bf16 widens to f32"),
        _ => weight,
    }
}
