//! Matrix products of bf16-rounded operands accumulated in f32, the arithmetic of PyTorch's
//! bf16 matmuls on the CPU. Three kernels, picked at run time: Intel's AMX tiles where the CPU
//! has them and the OS grants them (`amx.rs`), AVX512-BF16's `vdpbf16ps` elsewhere where the CPU
//! has it (`avx512.rs`), and on other CPUs the f32 GEMM on operands rounded to bf16 first, so the
//! result is the same on every machine up to the order of the f32 sums.
//!
//! The first two share their packing: the right operand is packed once ([`PackedRhs`]) into
//! panels of [`NR`] columns holding, for each pair of rows `(2p, 2p + 1)`, one `u32` per column
//! with the two bf16 values side by side (the layout both instructions multiply); the left
//! operand is rounded block by block into bf16 rows, read as the same pairs.

use std::cell::Cell;
use std::mem::MaybeUninit;
use std::sync::OnceLock;

use half::bf16;

use super::panels::{NR, Panels, empty_product, packed_panels, parallel};
use super::{Operand, Output};

#[cfg(target_arch = "x86_64")]
mod amx;

/// How the native kernels multiply matrices: in f32, or with both operands rounded to bf16 and
/// the sums kept in f32. Models whose weights are stored in bf16 and computed in f32 run their
/// forward passes with [`Products::Bf16`] (see [`with_products`]); everything else in f32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Products {
    /// Exact f32 operands.
    #[default]
    F32,
    /// bf16-rounded operands, f32 accumulation.
    Bf16,
}

thread_local! {
    static PRODUCTS: Cell<Products> = const { Cell::new(Products::F32) };
}

/// Runs `body` with the native kernels' products in `products` on this thread (the layer
/// functions read it before they spread work over the thread pool), restoring the previous
/// setting afterwards, also when `body` panics.
pub(crate) fn with_products<R>(products: Products, body: impl FnOnce() -> R) -> R {
    struct Restore(Products);
    impl Drop for Restore {
        fn drop(&mut self) {
            PRODUCTS.with(|p| p.set(self.0));
        }
    }
    let _restore = Restore(PRODUCTS.with(|p| p.replace(products)));
    body()
}

/// The products the forward kernels use on this thread now (see [`with_products`]).
pub(crate) fn products() -> Products {
    PRODUCTS.with(Cell::get)
}

/// A matrix element the packing rounds to bf16.
pub(super) trait Element: Copy + Send + Sync {
    /// The element rounded to bf16 (to nearest, ties to even; NaN stays NaN), as its bits.
    fn bf16_bits(self) -> u16;

    /// `at` as bf16 bits in memory, for bf16 elements (which need no rounding).
    fn bf16_slice_start(_at: *const Self) -> Option<*const u16> {
        None
    }
}

impl Element for f32 {
    #[inline(always)]
    fn bf16_bits(self) -> u16 {
        let bits = self.to_bits();
        // A quiet NaN keeps its sign and top payload bits; the rounding below could carry a NaN's
        // payload into infinity.
        let nan = ((bits >> 16) | 0x40) as u16;
        let rounded = (bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16) as u16;
        if self.is_nan() { nan } else { rounded }
    }
}

impl Element for bf16 {
    #[inline(always)]
    fn bf16_bits(self) -> u16 {
        self.to_bits()
    }

    fn bf16_slice_start(at: *const Self) -> Option<*const u16> {
        Some(at.cast())
    }
}

/// The packed depth of the right operand is padded to a multiple of this many pairs: one AMX
/// tile's depth (32 bf16 values).
const PAIR_ALIGN: usize = 16;

/// The kernels that multiply packed pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kernel {
    /// AMX tiles (`tdpbf16ps`).
    Amx,
    /// AVX-512 registers (`vdpbf16ps`).
    Avx512,
}

impl Kernel {
    /// The kernel the products use on this CPU (decided once), `None` for the f32 GEMM on
    /// rounded operands. On Intel's AMX CPUs `vdpbf16ps` runs at half the rate of an f32 FMA, so
    /// where Linux does not grant the tiles the f32 GEMM is the faster of the two.
    pub(super) fn best() -> Option<Self> {
        static BEST: OnceLock<Option<Kernel>> = OnceLock::new();
        *BEST.get_or_init(|| {
            let available = Self::available();
            #[cfg(target_arch = "x86_64")]
            if amx::on_cpu() && !available.contains(&Self::Amx) {
                return None;
            }
            available.first().copied()
        })
    }

    /// Every kernel this CPU runs, fastest first.
    pub(super) fn available() -> Vec<Self> {
        let mut kernels = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if amx::available() {
                kernels.push(Self::Amx);
            }
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bf16")
            {
                kernels.push(Self::Avx512);
            }
        }
        kernels
    }
}

/// `dst (+)= round(lhs) round(rhs)` for `[m, n, k]` (`dst` `m x n`, `lhs` `m x k`, `rhs`
/// `k x n`) with f32 sums, where `round` rounds to bf16. Spreads over the thread pool when
/// called from outside it with enough work, as [`super::product`] does.
///
/// # Safety
/// As [`super::product`]: the operands address `m x k` and `k x n` valid elements through their
/// strides, `dst` `m x n` elements that no other thread touches meanwhile.
pub(super) unsafe fn product_bf16<A: Element, B: Element>(
    [m, n, k]: [usize; 3],
    dst: Output,
    lhs: Operand<A>,
    rhs: Operand<B>,
) {
    if m == 0 || n == 0 {
        return;
    }
    let rhs = PackedRhs::new(rhs, [k, n], parallel([m, n, k]));
    // SAFETY: the caller's promise.
    unsafe { rhs.multiply(m, dst, lhs) };
}

/// A right operand `k x n` rounded to bf16 once, for several products with it (the keys and
/// values of an attention head, multiplied by every block of queries).
pub(super) struct PackedRhs {
    /// `k`, `n`.
    size: [usize; 2],
    data: Packed,
}

enum Packed {
    /// Panels of [`NR`] columns for `kernel`: panel `j` holds, for every pair of rows `p` of the
    /// depth padded to a multiple of `2 PAIR_ALIGN`, `NR` pairs `(rhs[2p][c], rhs[2p + 1][c])`
    /// (zero past the operand).
    Pairs { kernel: Kernel, pairs: Vec<u32> },
    /// The rounded values widened back to f32, contiguous: for the f32 GEMM on CPUs without
    /// a kernel.
    Rounded(Vec<f32>),
}

impl PackedRhs {
    /// `rhs` (`k x n` valid elements through its strides) packed for this CPU's best kernel,
    /// over the thread pool where `parallel`.
    pub(super) fn new<T: Element>(rhs: Operand<T>, size: [usize; 2], parallel: bool) -> Self {
        Self::for_kernel(Kernel::best(), rhs, size, parallel)
    }

    /// The same for `kernel` (which this CPU runs), or for the f32 GEMM.
    fn for_kernel<T: Element>(
        kernel: Option<Kernel>,
        rhs: Operand<T>,
        [k, n]: [usize; 2],
        parallel: bool,
    ) -> Self {
        let data = match kernel {
            Some(kernel) => Packed::Pairs {
                kernel,
                pairs: pack_rhs(rhs, [k, n], parallel),
            },
            None => Packed::Rounded(rounded(rhs, k, n)),
        };
        Self { size: [k, n], data }
    }

    /// `dst (+)= round(lhs) round(self)` for `lhs` `m x k`, as [`product_bf16`].
    ///
    /// # Safety
    /// As [`product_bf16`].
    pub(super) unsafe fn multiply<A: Element>(&self, m: usize, dst: Output, lhs: Operand<A>) {
        let [k, n] = self.size;
        let dims = [m, n, k];
        if k == 0 {
            // SAFETY: the caller's promise.
            return unsafe { empty_product(dst, [m, n]) };
        }
        match &self.data {
            // SAFETY (both kernels): packed pairs exist only for kernels the CPU runs; the rest
            // is the caller's promise.
            #[cfg(target_arch = "x86_64")]
            Packed::Pairs { kernel, pairs } => unsafe {
                let rhs = Panels {
                    values: pairs,
                    stride: padded_pairs(k) * NR,
                };
                match kernel {
                    Kernel::Amx => amx::product(dims, dst, lhs, rhs),
                    Kernel::Avx512 => {
                        super::avx512::product::<A, super::avx512::Bf16Pairs>(dims, dst, lhs, rhs)
                    }
                }
            },
            #[cfg(not(target_arch = "x86_64"))]
            Packed::Pairs { .. } => unreachable!("no bf16 kernel off x86-64"),
            Packed::Rounded(values) => {
                let lhs_rounded = rounded(lhs, m, k);
                // SAFETY: the rounded copies are contiguous `m x k` and `k x n`; `dst` is the
                // caller's.
                unsafe {
                    super::product(
                        dims,
                        dst,
                        Operand(lhs_rounded.as_ptr(), k as isize, 1),
                        Operand(values.as_ptr(), n as isize, 1),
                    );
                }
            }
        }
    }
}

/// The pairs of depth `k` in a packed right-operand panel.
fn padded_pairs(k: usize) -> usize {
    k.div_ceil(2).next_multiple_of(PAIR_ALIGN)
}

/// The `rows x cols` matrix `src` rounded to bf16 and widened back, contiguous.
fn rounded<T: Element>(src: Operand<T>, rows: usize, cols: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        // SAFETY: the caller of `product_bf16` promised `rows x cols` valid elements.
        out.extend((0..cols).map(|c| widened(unsafe { src.at(r, c) }.bf16_bits())));
    }
    out
}

fn widened(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// Two bf16 values as one `u32`, `low` in the low half.
#[inline(always)]
fn pair(low: u16, high: u16) -> u32 {
    u32::from(low) | u32::from(high) << 16
}

/// The right operand's pair panels (see [`Packed::Pairs`]).
fn pack_rhs<T: Element>(rhs: Operand<T>, [k, n]: [usize; 2], parallel: bool) -> Vec<u32> {
    let pairs = padded_pairs(k);
    let zero = MaybeUninit::new(0u32);
    // Every element is written below, the padding with zeros.
    packed_panels(n.div_ceil(NR), pairs * NR, parallel, |panel, out| {
        let first = panel * NR;
        let cols = NR.min(n - first);
        let mut rows = [Vec::new(), Vec::new()];
        for (p, out) in out.chunks_exact_mut(NR).enumerate() {
            if 2 * p >= k {
                out.fill(zero);
                continue;
            }
            // SAFETY: rows `2p` and `2p + 1` (where it is below `k`) and the panel's columns lie
            // inside `k x n`.
            let [even, odd] = &mut rows;
            let even = unsafe { rhs.run(2 * p, first, cols, even) };
            let odd = (2 * p + 1 < k).then(|| unsafe { rhs.run(2 * p + 1, first, cols, odd) });
            interleave(&mut out[..cols], even, odd);
            out[cols..].fill(zero);
        }
    })
}

/// `out[c] = (even[c], odd[c])` rounded to bf16 pairs, `odd` zero where absent.
fn interleave<T: Element>(out: &mut [MaybeUninit<u32>], even: &[T], odd: Option<&[T]>) {
    super::vectorised(
        #[inline(always)]
        || match odd {
            Some(odd) => {
                for ((slot, a), b) in out.iter_mut().zip(even).zip(odd) {
                    *slot = MaybeUninit::new(pair(a.bf16_bits(), b.bf16_bits()));
                }
            }
            None => {
                for (slot, a) in out.iter_mut().zip(even) {
                    *slot = MaybeUninit::new(pair(a.bf16_bits(), 0));
                }
            }
        },
    );
}

/// `out[p] = (values[2p], values[2p + 1])` rounded to bf16 pairs, the last one's second half
/// zero for an odd length. On a little-endian machine the pairs are the rounded values one after
/// the other, so this is an element-wise map (which vectorises, where pairing does not).
fn pairs_of<T: Element>(out: &mut [u32], values: &[T]) {
    debug_assert_eq!(out.len(), values.len().div_ceil(2));
    #[cfg(target_endian = "little")]
    {
        // SAFETY: `u16` has no invalid values and an alignment dividing `u32`'s; the halves of
        // each `u32` are its two `u16` in memory order, low first.
        let halves = unsafe {
            std::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<u16>(), 2 * out.len())
        };
        super::vectorised(
            #[inline(always)]
            || {
                for (half, value) in halves.iter_mut().zip(values) {
                    *half = value.bf16_bits();
                }
            },
        );
        if let Some(pad) = halves.get_mut(values.len()) {
            *pad = 0;
        }
    }
    #[cfg(not(target_endian = "little"))]
    for (slot, two) in out.iter_mut().zip(values.chunks(2)) {
        *slot = pair(two[0].bf16_bits(), two.get(1).map_or(0, |v| v.bf16_bits()));
    }
}

/// A block of the left operand: rows `first_row..first_row + rows` and depths
/// `first_depth..first_depth + depths`, rounded by [`pack_lhs`] into `padded_rows` rows of
/// `row_pairs` pairs (zero past the block).
#[derive(Clone, Copy)]
pub(super) struct LhsBlock {
    pub(super) first: [usize; 2],
    pub(super) size: [usize; 2],
    pub(super) padded_rows: usize,
    pub(super) row_pairs: usize,
}

/// The block `block` of `lhs` rounded to bf16, row-major, into `out`.
pub(super) fn pack_lhs<T: Element>(lhs: Operand<T>, block: LhsBlock, out: &mut Vec<u32>) {
    let ([first_row, first_depth], [rows, depths]) = (block.first, block.size);
    // The buffer is reused between blocks: every element is written below, the padding with
    // zeros, instead of clearing it first.
    out.resize(block.padded_rows * block.row_pairs, 0);
    if block.row_pairs == 0 {
        return;
    }
    let used = depths.div_ceil(2);
    let mut buffer = Vec::new();
    for (i, row) in out.chunks_exact_mut(block.row_pairs).enumerate() {
        if i >= rows {
            row.fill(0);
            continue;
        }
        // SAFETY: row `first_row + i` and the block's depths lie inside `m x k`.
        let values = unsafe { lhs.run(first_row + i, first_depth, depths, &mut buffer) };
        pairs_of(&mut row[..used], values);
        row[used..].fill(0);
    }
}

/// Adds (`accumulate`) or writes a tile of sums `sums` (`rows x cols` of it used, row stride
/// `sums_stride`) into the output at `out` with row stride `out_stride`.
///
/// # Safety
/// The `rows x cols` elements at `out` are valid and no other thread touches them.
unsafe fn store_tile(
    sums: &[f32],
    sums_stride: usize,
    [rows, cols]: [usize; 2],
    out: *mut f32,
    out_stride: isize,
    accumulate: bool,
) {
    super::vectorised(
        #[inline(always)]
        || {
            for (i, sums) in sums.chunks(sums_stride).take(rows).enumerate() {
                // SAFETY: row `i` of the tile is inside the output (the promise).
                let row = unsafe {
                    std::slice::from_raw_parts_mut(out.offset(i as isize * out_stride), cols)
                };
                if accumulate {
                    row.iter_mut().zip(sums).for_each(|(o, s)| *o += s);
                } else {
                    row.copy_from_slice(&sums[..cols]);
                }
            }
        },
    );
}

#[cfg(test)]
mod layer_tests;
#[cfg(test)]
mod tests;
