//! Products on AVX-512 registers against a right operand packed in panels of [`NR`] columns: a
//! micro-kernel keeps an `MR x NR` tile of f32 sums in 24 registers and, per step of the depth,
//! loads the four vectors of the panel's row and broadcasts one value of each of its `MR` rows.
//! Two kinds of lanes share that loop: f32 values with `vfmadd231ps` (one depth per step), and
//! bf16 pairs with AVX512-BF16's `vdpbf16ps`, which adds two bf16 products to each of 16 f32
//! lanes (two depths per step).

use std::arch::x86_64::*;

use super::bf16::{Element, LhsBlock, pack_lhs};
use super::panels::{NR, Panels, for_row_blocks, parallel};
use super::{Operand, Output, SharedMut};

/// Rows of the micro-kernel's tile.
const MR: usize = 6;
/// Rows of a left-operand block, kept in L2 while every panel passes.
const MC: usize = 96;

/// What a micro-kernel multiplies: the packed values of both operands, and how the left
/// operand's rows (elements `A`) are packed block by block.
pub(super) trait Lanes<A> {
    /// One broadcast value of the left operand, and one lane of a packed panel row.
    type Packed: Copy + Send + Sync;
    /// Depths per packed value.
    const STEP: usize;
    /// Depth of a block (a multiple of `STEP`): a panel's `KC x NR` block is 32 KiB, read from
    /// L1 for every `MR` rows of the left operand's block.
    const KC: usize;

    /// Rows `first[0]..+size[0]`, depths `first[1]..+size[1]` of `lhs`, row-major, each row
    /// `size[1].div_ceil(STEP)` values, into `out`.
    fn pack_lhs(lhs: Operand<A>, first: [usize; 2], size: [usize; 2], out: &mut Vec<Self::Packed>);

    /// `tile (+)= lhs rhs` over `steps` steps: `lhs` the tile's rows, `steps` values each, one
    /// after the other; `rhs` `NR` values per step.
    ///
    /// # Safety
    /// The CPU has the kernel's features; `lhs` holds `tile.rows * steps` values, `rhs` at least
    /// `steps * NR`; the tile's `rows x cols` elements are valid and no other thread touches
    /// them.
    unsafe fn micro_kernel(steps: usize, lhs: &[Self::Packed], rhs: &[Self::Packed], tile: Tile);
}

/// f32 lanes: exact f32 products (AVX-512F).
pub(super) struct F32Lanes;

impl Lanes<f32> for F32Lanes {
    type Packed = f32;
    const STEP: usize = 1;
    const KC: usize = 512;

    fn pack_lhs(
        lhs: Operand,
        [row, depth]: [usize; 2],
        [rows, depths]: [usize; 2],
        out: &mut Vec<f32>,
    ) {
        out.clear();
        let mut buffer = Vec::new();
        for r in row..row + rows {
            // SAFETY: the block lies inside the left operand (the product's promise).
            out.extend_from_slice(unsafe { lhs.run(r, depth, depths, &mut buffer) });
        }
    }

    unsafe fn micro_kernel(steps: usize, lhs: &[f32], rhs: &[f32], tile: Tile) {
        // SAFETY: the caller's promise.
        unsafe { f32_micro_kernel(steps, lhs, rhs, tile) }
    }
}

/// bf16 pairs: products of bf16-rounded operands with f32 sums (AVX-512F and AVX512-BF16).
pub(super) struct Bf16Pairs;

impl<A: Element> Lanes<A> for Bf16Pairs {
    type Packed = u32;
    const STEP: usize = 2;
    const KC: usize = 256;

    fn pack_lhs(lhs: Operand<A>, first: [usize; 2], size: [usize; 2], out: &mut Vec<u32>) {
        let block = LhsBlock {
            first,
            size,
            padded_rows: size[0],
            row_pairs: size[1].div_ceil(2),
        };
        pack_lhs(lhs, block, out);
    }

    unsafe fn micro_kernel(steps: usize, lhs: &[u32], rhs: &[u32], tile: Tile) {
        // SAFETY: the caller's promise.
        unsafe { bf16_micro_kernel(steps, lhs, rhs, tile) }
    }
}

/// `dst (+)= lhs rhs` for `[m, n, k]` in `L`'s lanes, `rhs` packed into `L`'s panels.
///
/// # Safety
/// As [`super::product`], for a depth `k` above 0, on a CPU with `L`'s features.
pub(super) unsafe fn product<A: Copy, L: Lanes<A>>(
    [m, n, k]: [usize; 3],
    dst: Output,
    lhs: Operand<A>,
    rhs: Panels<'_, L::Packed>,
) where
    Operand<A>: Send + Sync,
{
    let parallel = parallel([m, n, k]);
    let out = SharedMut(dst.0);
    let block = |first_row: usize| {
        let rows = MC.min(m - first_row);
        let mut lhs_packed = Vec::new();
        for first_depth in (0..k).step_by(L::KC) {
            let depths = L::KC.min(k - first_depth);
            let steps = depths.div_ceil(L::STEP);
            L::pack_lhs(
                lhs,
                [first_row, first_depth],
                [rows, depths],
                &mut lhs_packed,
            );
            let accumulate = dst.2 || first_depth > 0;
            for panel in 0..n.div_ceil(NR) {
                let rhs_panel = &rhs.values[panel * rhs.stride + first_depth / L::STEP * NR..];
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
                    let lhs_rows = &lhs_packed[tile_row * steps..];
                    // SAFETY: `lhs_rows` holds the tile's rows of `steps` values, the panel
                    // `steps` rows of `NR` values; the tile is inside `dst`, in this block's
                    // rows, which no other task writes.
                    unsafe { L::micro_kernel(steps, lhs_rows, rhs_panel, tile) };
                }
            }
        }
    };
    for_row_blocks(m, MC, parallel, block);
}

/// Where a micro-kernel's tile goes: its first element, the row stride, how many of its rows and
/// columns lie inside the output, and whether it is added to what the output holds.
#[derive(Clone, Copy)]
pub(super) struct Tile {
    out: *mut f32,
    row_stride: isize,
    rows: usize,
    cols: usize,
    accumulate: bool,
}

impl Tile {
    /// The tile's row starts in `lhs` (rows of `steps` values): a partial tile reads its last
    /// row again for the missing ones (their sums are dropped).
    fn row_starts<T>(self, lhs: &[T], steps: usize) -> [*const T; MR] {
        debug_assert!(lhs.len() >= self.rows * steps);
        std::array::from_fn(|i| lhs.as_ptr().wrapping_add(i.min(self.rows - 1) * steps))
    }
}

/// [`Lanes::micro_kernel`] for [`F32Lanes`].
///
/// # Safety
/// As [`Lanes::micro_kernel`], on a CPU with AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn f32_micro_kernel(steps: usize, lhs: &[f32], rhs: &[f32], tile: Tile) {
    debug_assert!(rhs.len() >= steps * NR);
    let row_starts = tile.row_starts(lhs, steps);
    let mut sums = [[_mm512_setzero_ps(); NR / 16]; MR];
    for d in 0..steps {
        let mut columns = [_mm512_setzero_ps(); NR / 16];
        for (v, column) in columns.iter_mut().enumerate() {
            // SAFETY: `rhs` holds `NR` values at `d * NR` (the function's promise).
            *column = unsafe { _mm512_loadu_ps(rhs.as_ptr().add(d * NR + 16 * v)) };
        }
        for (row, start) in sums.iter_mut().zip(row_starts) {
            // SAFETY: every row start addresses a row of `steps` values (the promise).
            let a = _mm512_set1_ps(unsafe { *start.add(d) });
            for (sum, &column) in row.iter_mut().zip(&columns) {
                *sum = _mm512_fmadd_ps(a, column, *sum);
            }
        }
    }
    // SAFETY: the tile's promise.
    unsafe { store(&sums, tile) };
}

/// [`Lanes::micro_kernel`] for [`Bf16Pairs`].
///
/// # Safety
/// As [`Lanes::micro_kernel`], on a CPU with AVX-512F and AVX512-BF16.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn bf16_micro_kernel(pairs: usize, lhs: &[u32], rhs: &[u32], tile: Tile) {
    debug_assert!(rhs.len() >= pairs * NR);
    let row_starts = tile.row_starts(lhs, pairs);
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
    // SAFETY: the tile's promise.
    unsafe { store(&sums, tile) };
}

/// Writes or adds the tile's sums into the output, the columns past `tile.cols` masked off.
///
/// # Safety
/// The CPU has AVX-512F; the tile's `rows x cols` elements are valid and no other thread touches
/// them.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn store(sums: &[[__m512; NR / 16]; MR], tile: Tile) {
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
