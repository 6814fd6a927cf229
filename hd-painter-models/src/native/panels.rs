//! Right operands packed once into panels of [`NR`] columns, for the products that multiply the
//! same right operand many times (an attention head's keys and values, against every block of
//! queries). The bf16 kernels read panels of bf16 pairs (`bf16.rs`); this module packs f32
//! panels for the AVX-512 f32 micro-kernel (`avx512.rs`), where a GEMM called once per block
//! would pack the whole right operand again each time: at the x4 VAE's 262,144 tokens that
//! packing was half of the attention's time.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::{Operand, Output};

/// Columns of a packed right-operand panel: four AVX-512 vectors of f32 sums.
pub(super) const NR: usize = 64;

/// A packed right operand as the kernels read it: panel `j` starts at `j * stride`.
#[derive(Clone, Copy)]
pub(super) struct Panels<'a, T> {
    pub(super) values: &'a [T],
    pub(super) stride: usize,
}

/// Products of more multiply-adds than this spread over the thread pool (when called from
/// outside it).
const PARALLEL_WORK: usize = 1 << 21;

/// Whether a product of `m x n x k` spreads over the thread pool.
pub(super) fn parallel([m, n, k]: [usize; 3]) -> bool {
    rayon::current_thread_index().is_none() && m * n * k >= PARALLEL_WORK
}

/// Runs `block(first_row)` for the blocks of `rows` rows of `m`, over the thread pool where
/// `parallel` (the kernels' split: each block packs its own rows of the left operand).
pub(super) fn for_row_blocks(
    m: usize,
    rows: usize,
    parallel: bool,
    block: impl Fn(usize) + Send + Sync,
) {
    if parallel {
        (0..m).into_par_iter().step_by(rows).for_each(block);
    } else {
        (0..m).step_by(rows).for_each(block);
    }
}

impl<T: Copy> Operand<T> {
    /// The element at `(row, col)`.
    ///
    /// # Safety
    /// The element lies inside the operand.
    #[inline(always)]
    pub(super) unsafe fn at(self, row: usize, col: usize) -> T {
        // SAFETY: the caller's promise.
        unsafe { *self.0.offset(row as isize * self.1 + col as isize * self.2) }
    }

    /// Columns `first..first + len` of row `row`: the elements themselves where they are
    /// adjacent, else gathered into `buffer`.
    ///
    /// # Safety
    /// The elements lie inside the operand, and stay unchanged while the slice is used.
    pub(super) unsafe fn run(
        self,
        row: usize,
        first: usize,
        len: usize,
        buffer: &mut Vec<T>,
    ) -> &[T] {
        if self.2 == 1 {
            // SAFETY: the caller's promise; adjacent elements form a slice.
            unsafe {
                std::slice::from_raw_parts(
                    self.0.offset(row as isize * self.1 + first as isize),
                    len,
                )
            }
        } else {
            buffer.clear();
            // SAFETY: the caller's promise.
            buffer.extend((first..first + len).map(|c| unsafe { self.at(row, c) }));
            buffer
        }
    }
}

/// An f32 right operand `k x n` packed for the AVX-512 f32 micro-kernel: panel `j` holds rows
/// `0..k` of columns `j NR..(j + 1) NR`, `NR` values per row (zero past the operand).
pub(super) struct PackedF32 {
    /// `k`, `n`.
    size: [usize; 2],
    panels: Vec<f32>,
}

impl PackedF32 {
    /// Whether this CPU runs the f32 panel kernel (AVX-512F).
    pub(super) fn available() -> bool {
        #[cfg(target_arch = "x86_64")]
        return std::arch::is_x86_feature_detected!("avx512f");
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    /// `rhs` (`k x n` valid elements through its strides) packed, over the thread pool where
    /// `parallel`; `None` where this CPU has no f32 panel kernel.
    pub(super) fn new(rhs: Operand, [k, n]: [usize; 2], parallel: bool) -> Option<Self> {
        if !Self::available() {
            return None;
        }
        let panels = packed_panels(n.div_ceil(NR), k * NR, parallel, |panel, out| {
            let first = panel * NR;
            pack_panel(rhs, [first, NR.min(n - first)], out);
        });
        Some(Self {
            size: [k, n],
            panels,
        })
    }

    /// `dst (+)= lhs self` for `lhs` `m x k`.
    ///
    /// # Safety
    /// As [`super::product`].
    pub(super) unsafe fn multiply(&self, m: usize, dst: Output, lhs: Operand) {
        let [k, n] = self.size;
        if m == 0 || n == 0 {
            return;
        }
        if k == 0 {
            // SAFETY: the caller's promise.
            return unsafe { empty_product(dst, [m, n]) };
        }
        let panels = Panels {
            values: &self.panels,
            stride: k * NR,
        };
        // SAFETY: packed panels exist only where the CPU has AVX-512F; the rest is the caller's
        // promise.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            super::avx512::product::<f32, super::avx512::F32Lanes>([m, n, k], dst, lhs, panels)
        };
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("no f32 panel kernel off x86-64: {}", panels.stride);
    }
}

/// `count` panels of `panel_len` values each, panel `j` written by `fill(j, slots)` (which
/// writes every slot), over the thread pool where `parallel`; no zeroed allocation first.
pub(super) fn packed_panels<T: Send>(
    count: usize,
    panel_len: usize,
    parallel: bool,
    fill: impl Fn(usize, &mut [MaybeUninit<T>]) + Send + Sync,
) -> Vec<T> {
    let len = count * panel_len;
    let mut packed = Vec::with_capacity(len);
    if len == 0 {
        return packed;
    }
    let slots = &mut packed.spare_capacity_mut()[..len];
    let fill = |(panel, out): (usize, &mut [MaybeUninit<T>])| fill(panel, out);
    if parallel {
        slots.par_chunks_mut(panel_len).enumerate().for_each(fill);
    } else {
        slots.chunks_mut(panel_len).enumerate().for_each(fill);
    }
    // SAFETY: the panels cover the `len` elements, each written by `fill`.
    unsafe { packed.set_len(len) };
    packed
}

/// `dst (+)= lhs rhs` for a depth of 0: the `m x n` output cleared, unless it accumulates.
///
/// # Safety
/// `dst` addresses `m x n` valid elements that no other thread touches meanwhile.
pub(super) unsafe fn empty_product(dst: Output, [m, n]: [usize; 2]) {
    if !dst.2 {
        for r in 0..m {
            // SAFETY: row `r` of `dst` holds `n` valid elements (the caller's promise).
            unsafe { std::slice::from_raw_parts_mut(dst.0.offset(r as isize * dst.1), n) }
                .fill(0.0);
        }
    }
}

/// Columns `first..first + cols` of `rhs` (all of its `out.len() / NR` rows) into one panel,
/// `NR` values per row, zero past `cols`.
fn pack_panel(rhs: Operand, [first, cols]: [usize; 2], out: &mut [MaybeUninit<f32>]) {
    let zero = MaybeUninit::new(0.0);
    let mut buffer = Vec::new();
    if rhs.2 == 1 || rhs.1 != 1 {
        for (d, row) in out.chunks_exact_mut(NR).enumerate() {
            // SAFETY: row `d` and the panel's columns lie inside the operand.
            let values = unsafe { rhs.run(d, first, cols, &mut buffer) };
            for (slot, &v) in row.iter_mut().zip(values) {
                *slot = MaybeUninit::new(v);
            }
            row[cols..].fill(zero);
        }
    } else {
        // Rows adjacent (a transposed matrix, as an attention's keys): read each column along
        // its rows, in place.
        let depth = out.len() / NR;
        let transposed = Operand(rhs.0, rhs.2, rhs.1);
        for c in 0..NR {
            if c >= cols {
                (0..depth).for_each(|d| out[d * NR + c] = zero);
                continue;
            }
            // SAFETY: column `first + c` and all rows lie inside the operand.
            let values = unsafe { transposed.run(first + c, 0, depth, &mut buffer) };
            for (d, &v) in values.iter().enumerate() {
                out[d * NR + c] = MaybeUninit::new(v);
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests;
