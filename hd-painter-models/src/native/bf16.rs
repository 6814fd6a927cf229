//! Matrix products of bf16-rounded operands accumulated in f32, the arithmetic of PyTorch's
//! bf16 matmuls on the CPU. Where the CPU has AVX512-BF16 the product runs on `vdpbf16ps`
//! (two bf16 products per f32 lane and instruction, twice the f32 FMA's work); elsewhere the
//! operands are rounded to bf16 and multiplied by the f32 GEMM, so the result is the same on
//! every machine up to the order of the f32 sums.
//!
//! The kernel is a blocked GEMM: the right operand is packed once ([`PackedRhs`]) into panels
//! of [`NR`] columns holding, for each pair of rows `(2p, 2p + 1)`, one `u32` per column with the
//! two bf16 values side by side (the layout `vdpbf16ps` multiplies lane by lane); the left
//! operand is rounded per block of [`MC`] rows and [`KC`] depths into bf16 rows, read as the
//! same pairs; a micro-kernel keeps an `MR x NR` tile of f32 sums in 24 registers and
//! broadcasts one pair of each of its `MR` rows per step.

use std::cell::Cell;

use half::bf16;
use rayon::prelude::*;

use super::{Operand, Output, SharedMut};

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
}

/// Rows of the micro-kernel's tile.
const MR: usize = 6;
/// Columns of the micro-kernel's tile: four 16-lane vectors.
const NR: usize = 64;
/// Depth of a packed block (even): a right-operand micro-panel of `KC x NR` bf16 values is
/// 32 KiB, read from L1 for every `MR` rows of the block.
const KC: usize = 256;
/// Rows of a packed left-operand block (a multiple of `MR`), `MC x KC` bf16 values in L2.
const MC: usize = 96;

/// Whether this CPU runs the `vdpbf16ps` kernel (checked once by the standard library).
pub(super) fn has_bf16_kernel() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Products of more multiply-adds than this spread over the thread pool (when called from
/// outside it).
const PARALLEL_WORK: usize = 1 << 21;

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
    let parallel = rayon::current_thread_index().is_none() && m * n * k >= PARALLEL_WORK;
    let rhs = PackedRhs::new(rhs, [k, n], parallel);
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
    /// Panels of [`NR`] columns: panel `j` holds, for every pair of rows `p` of the depth
    /// padded to even, `NR` pairs `(rhs[2p][c], rhs[2p + 1][c])`, the first in the low half.
    Pairs(Vec<u32>),
    /// The rounded values widened back to f32, contiguous: for the f32 GEMM on CPUs without
    /// the kernel.
    Rounded(Vec<f32>),
}

impl PackedRhs {
    /// `rhs` (`k x n` valid elements through its strides) packed for this CPU's product, over
    /// the thread pool where `parallel`.
    pub(super) fn new<T: Element>(rhs: Operand<T>, [k, n]: [usize; 2], parallel: bool) -> Self {
        let data = if has_bf16_kernel() {
            Packed::Pairs(pack_rhs(rhs, [k, n], parallel))
        } else {
            Packed::Rounded(rounded(rhs, k, n))
        };
        Self { size: [k, n], data }
    }

    /// `dst (+)= round(lhs) round(self)` for `lhs` `m x k`, as [`product_bf16`].
    ///
    /// # Safety
    /// As [`product_bf16`].
    pub(super) unsafe fn multiply<A: Element>(&self, m: usize, dst: Output, lhs: Operand<A>) {
        let [k, n] = self.size;
        match &self.data {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: packed pairs exist only where the CPU has the kernel; the rest is the
            // caller's promise.
            Packed::Pairs(pairs) => unsafe { blocked([m, n, k], dst, lhs, pairs) },
            #[cfg(not(target_arch = "x86_64"))]
            Packed::Pairs(_) => unreachable!("no bf16 kernel off x86-64"),
            Packed::Rounded(values) => {
                let lhs_rounded = rounded(lhs, m, k);
                // SAFETY: the rounded copies are contiguous `m x k` and `k x n`; `dst` is the
                // caller's.
                unsafe {
                    super::product(
                        [m, n, k],
                        dst,
                        Operand(lhs_rounded.as_ptr(), k as isize, 1),
                        Operand(values.as_ptr(), n as isize, 1),
                    );
                }
            }
        }
    }
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

impl<T: Element> Operand<T> {
    /// The element at `(row, col)`.
    ///
    /// # Safety
    /// The element lies inside the operand.
    #[inline(always)]
    unsafe fn at(self, row: usize, col: usize) -> T {
        // SAFETY: the caller's promise.
        unsafe { *self.0.offset(row as isize * self.1 + col as isize * self.2) }
    }
}

/// Two bf16 values as one `u32`, `low` in the low half.
#[inline(always)]
fn pair(low: u16, high: u16) -> u32 {
    u32::from(low) | u32::from(high) << 16
}

/// The right operand's pair panels (see [`Packed::Pairs`]).
fn pack_rhs<T: Element>(rhs: Operand<T>, [k, n]: [usize; 2], parallel: bool) -> Vec<u32> {
    let pairs = k.div_ceil(2);
    let mut packed = vec![0u32; n.div_ceil(NR) * pairs * NR];
    if packed.is_empty() {
        return packed;
    }
    let fill = |(panel, out): (usize, &mut [u32])| {
        let first = panel * NR;
        let cols = NR.min(n - first);
        for (p, row) in out.chunks_exact_mut(NR).enumerate() {
            let (even, odd) = (2 * p, 2 * p + 1);
            // SAFETY: rows `even` (and `odd` where it is below `k`) and columns
            // `first..first + cols` lie inside `k x n`.
            let bits = |r: usize, c: usize| unsafe { rhs.at(r, first + c) }.bf16_bits();
            if odd < k {
                for (c, slot) in row[..cols].iter_mut().enumerate() {
                    *slot = pair(bits(even, c), bits(odd, c));
                }
            } else {
                for (c, slot) in row[..cols].iter_mut().enumerate() {
                    *slot = pair(bits(even, c), 0);
                }
            }
        }
    };
    super::vectorised(
        #[inline(always)]
        || {
            if parallel {
                packed.par_chunks_mut(pairs * NR).enumerate().for_each(fill);
            } else {
                packed.chunks_mut(pairs * NR).enumerate().for_each(fill);
            }
        },
    );
    packed
}

/// Rows `first_row..first_row + rows` and depths `first_depth..first_depth + depths` of the left
/// operand rounded to bf16, row-major, each row padded to an even length and read as
/// `depths.div_ceil(2)` pairs; rows past the block's end are left out (the micro-kernel reads
/// only the tile's rows).
fn pack_lhs<T: Element>(
    lhs: Operand<T>,
    [first_row, first_depth]: [usize; 2],
    [rows, depths]: [usize; 2],
    out: &mut Vec<u32>,
) {
    let pairs = depths.div_ceil(2);
    out.clear();
    out.resize(rows * pairs, 0);
    if pairs == 0 {
        return;
    }
    super::vectorised(
        #[inline(always)]
        || {
            for (i, row) in out.chunks_exact_mut(pairs).enumerate() {
                let r = first_row + i;
                // SAFETY: row `r` and the block's depths lie inside `m x k`.
                let bits = |d: usize| unsafe { lhs.at(r, first_depth + d) }.bf16_bits();
                let whole = depths / 2;
                for (p, slot) in row[..whole].iter_mut().enumerate() {
                    *slot = pair(bits(2 * p), bits(2 * p + 1));
                }
                if depths % 2 == 1 {
                    row[whole] = pair(bits(depths - 1), 0);
                }
            }
        },
    );
}

/// The blocked product on the `vdpbf16ps` kernel, with `rhs` packed by [`pack_rhs`].
///
/// # Safety
/// As [`product_bf16`], on a CPU with AVX-512F and AVX512-BF16.
#[cfg(target_arch = "x86_64")]
unsafe fn blocked<A: Element>([m, n, k]: [usize; 3], dst: Output, lhs: Operand<A>, rhs: &[u32]) {
    let parallel = rayon::current_thread_index().is_none() && m * n * k >= PARALLEL_WORK;
    let pairs = k.div_ceil(2);
    let out = SharedMut(dst.0);
    let block = |first_row: usize| {
        let rows = MC.min(m - first_row);
        let mut lhs_packed = Vec::new();
        // An empty depth still runs once, to overwrite the output with zeros.
        for first_depth in (0..k.max(1)).step_by(KC) {
            let depths = KC.min(k - first_depth.min(k));
            let depth_pairs = depths.div_ceil(2);
            pack_lhs(lhs, [first_row, first_depth], [rows, depths], &mut lhs_packed);
            let accumulate = dst.2 || first_depth > 0;
            for panel in 0..n.div_ceil(NR) {
                let rhs_panel = &rhs[(panel * pairs + first_depth / 2) * NR..];
                for tile_row in (0..rows).step_by(MR) {
                    let row = first_row + tile_row;
                    let tile = Tile {
                        // SAFETY: row `row`, column `panel * NR` lies inside `dst`.
                        out: unsafe { out.add(row * dst.1 as usize + panel * NR) },
                        row_stride: dst.1,
                        rows: MR.min(m - row),
                        cols: NR.min(n - panel * NR),
                        accumulate,
                    };
                    let lhs_rows = &lhs_packed[tile_row * depth_pairs..];
                    // SAFETY: `lhs_rows` holds the tile's rows of `depth_pairs` pairs, the
                    // panel `depth_pairs` pairs of `NR` values; the tile is inside `dst`, in
                    // this block's rows, which no other task writes.
                    unsafe { micro_kernel(depth_pairs, lhs_rows, rhs_panel, tile) };
                }
            }
        }
    };
    if parallel {
        (0..m).into_par_iter().step_by(MC).for_each(block);
    } else {
        (0..m).step_by(MC).for_each(block);
    }
}

/// Where a micro-kernel's tile goes: its first element, the row stride, how many of its rows and
/// columns lie inside the output, and whether it is added to what the output holds.
#[derive(Clone, Copy)]
struct Tile {
    out: *mut f32,
    row_stride: isize,
    rows: usize,
    cols: usize,
    accumulate: bool,
}

/// `tile (+)= lhs rhs` over `pairs` depth pairs: `lhs` the tile's rows, `pairs` pairs each, one
/// after the other; `rhs` `NR` pairs per depth pair.
///
/// # Safety
/// The CPU has AVX-512F and AVX512-BF16; `lhs` holds `tile.rows * pairs` values, `rhs` at least
/// `pairs * NR`; the tile's `rows x cols` elements are valid and no other thread touches them.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn micro_kernel(pairs: usize, lhs: &[u32], rhs: &[u32], tile: Tile) {
    use std::arch::x86_64::*;
    debug_assert!(lhs.len() >= tile.rows * pairs && rhs.len() >= pairs * NR);
    // A partial tile reads its last row again for the missing ones (their sums are dropped).
    let mut row_starts = [lhs.as_ptr(); MR];
    for (i, start) in row_starts.iter_mut().enumerate() {
        *start = lhs.as_ptr().wrapping_add(i.min(tile.rows - 1) * pairs);
    }
    let mut sums = [[_mm512_setzero_ps(); NR / 16]; MR];
    for p in 0..pairs {
        let mut columns = [_mm512_setzero_si512(); NR / 16];
        for (v, column) in columns.iter_mut().enumerate() {
            // SAFETY: `rhs` holds `NR` values at `p * NR` (the function's promise).
            *column = unsafe { _mm512_loadu_si512(rhs.as_ptr().add(p * NR + 16 * v).cast()) };
        }
        // SAFETY: reinterpretations of 512 bits.
        let columns: [__m512bh; NR / 16] = unsafe { std::mem::transmute(columns) };
        for (row, start) in sums.iter_mut().zip(row_starts) {
            // SAFETY: every row start addresses a row of `pairs` values (the promise).
            let a = _mm512_set1_epi32(unsafe { *start.add(p) } as i32);
            // SAFETY: a reinterpretation of 512 bits.
            let a = unsafe { std::mem::transmute::<__m512i, __m512bh>(a) };
            for (sum, &column) in row.iter_mut().zip(&columns) {
                *sum = _mm512_dpbf16_ps(*sum, a, column);
            }
        }
    }
    for (i, row) in sums.iter().enumerate().take(tile.rows) {
        // SAFETY: row `i` of the tile is inside the output.
        let out = unsafe { tile.out.offset(i as isize * tile.row_stride) };
        for (v, &sum) in row.iter().enumerate() {
            let first = 16 * v;
            if first >= tile.cols {
                break;
            }
            let lanes = (tile.cols - first).min(16);
            let mask: __mmask16 = if lanes == 16 { !0 } else { (1 << lanes) - 1 };
            // SAFETY: the masked lanes are the tile's columns inside the output.
            unsafe {
                let at = out.add(first);
                let value = if tile.accumulate {
                    _mm512_add_ps(sum, _mm512_maskz_loadu_ps(mask, at))
                } else {
                    sum
                };
                _mm512_mask_storeu_ps(at, mask, value);
            }
        }
    }
}

#[cfg(test)]
mod tests;
