//! The product on AVX-512 registers with AVX512-BF16's `vdpbf16ps`, which adds two bf16
//! products to each of 16 f32 lanes: a micro-kernel keeps an `MR x NR` tile of sums in 24
//! registers and, per depth pair, loads the four vectors of the right operand's panel and
//! broadcasts one pair of each of its `MR` rows.

use super::{Element, LhsBlock, NR, PairPanels, for_row_blocks, pack_lhs, parallel};
use crate::native::{Operand, Output, SharedMut};

/// Rows of the micro-kernel's tile.
const MR: usize = 6;
/// Depth of a block (even): a right-operand micro-panel of `KC x NR` bf16 values is 32 KiB,
/// read from L1 for every `MR` rows of the block.
const KC: usize = 256;
/// Rows of a left-operand block, `MC x KC` bf16 values kept in L2.
const MC: usize = 96;

/// `dst (+)= round(lhs) rhs` for `[m, n, k]`, `rhs` packed by `pack_rhs`.
///
/// # Safety
/// As `product_bf16`, for a depth `k` above 0, on a CPU with AVX-512F and AVX512-BF16.
pub(super) unsafe fn product<A: Element>(
    [m, n, k]: [usize; 3],
    dst: Output,
    lhs: Operand<A>,
    rhs: PairPanels<'_>,
) {
    let parallel = parallel([m, n, k]);
    let out = SharedMut(dst.0);
    let block = |first_row: usize| {
        let rows = MC.min(m - first_row);
        let mut lhs_packed = Vec::new();
        for first_depth in (0..k).step_by(KC) {
            let depths = KC.min(k - first_depth);
            let depth_pairs = depths.div_ceil(2);
            let block = LhsBlock {
                first: [first_row, first_depth],
                size: [rows, depths],
                padded_rows: rows,
                row_pairs: depth_pairs,
            };
            pack_lhs(lhs, block, &mut lhs_packed);
            let accumulate = dst.2 || first_depth > 0;
            for panel in 0..n.div_ceil(NR) {
                let rhs_panel = &rhs.pairs[panel * rhs.stride + first_depth / 2 * NR..];
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
    for_row_blocks(m, MC, parallel, block);
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
