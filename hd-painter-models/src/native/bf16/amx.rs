//! The product on Intel's AMX tiles: `tdpbf16ps` adds a `16 x 32` bf16 tile times a `32 x 16`
//! one (stored as 16 rows of 16 pairs, the packed right operand's layout) to a `16 x 16` f32
//! tile in one instruction, 16 times the work of an AVX-512 FMA. A block of `32 x 32` outputs
//! keeps its sums in four tiles while two tiles of each operand stream through the other four.
//! The AMX intrinsics are not stable, so the tile instructions are inline assembly; the Linux
//! kernel grants a process the tiles' register state only when asked (`arch_prctl`), which
//! [`available`] does once.

use std::arch::asm;
use std::sync::OnceLock;

use super::{Element, LhsBlock, PAIR_ALIGN, pack_lhs, store_tile};
use crate::native::panels::{NR, Panels, for_row_blocks, parallel};
use crate::native::{Operand, Output, SharedMut};

/// Rows and columns of the block of outputs one pass of the tiles computes.
const TILE_BLOCK: usize = 32;
/// Depth of a left-operand block (a multiple of `2 PAIR_ALIGN`): `MC x KC` bf16 values, 192 KiB,
/// kept in L2 while every panel of the right operand passes.
const KC: usize = 1024;
/// Rows of a left-operand block (a multiple of `TILE_BLOCK`).
const MC: usize = 96;

/// Whether the CPU has AMX-BF16 and the OS lets this process use the tiles (asked once).
pub(super) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| on_cpu() && request_tile_state())
}

/// Whether the CPU has AMX-BF16 tiles (CPUID leaf 7: EDX bit 22 AMX-BF16, bit 24 AMX-TILE),
/// whatever the OS allows.
pub(super) fn on_cpu() -> bool {
    let leaf = std::arch::x86_64::__cpuid_count(7, 0);
    (leaf.edx >> 22) & 1 == 1 && (leaf.edx >> 24) & 1 == 1
}

/// Asks Linux for the tile data state (`ARCH_REQ_XCOMP_PERM` for `XFEATURE_XTILEDATA`): without
/// it the first tile instruction kills the process. Fails on kernels before 5.16 and where the
/// hypervisor does not pass the state through.
#[cfg(target_os = "linux")]
fn request_tile_state() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: `arch_prctl` with this request only changes which register states the process may
    // use; it reads no memory.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

#[cfg(not(target_os = "linux"))]
fn request_tile_state() -> bool {
    false
}

/// The tile configuration (palette 1): tiles 0 - 3 the sums (16 rows of 16 f32), 4 - 5 the
/// left operand (16 rows of 32 bf16), 6 - 7 the right operand (16 pairs of 16 columns), all
/// 16 rows of 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    fn new() -> Self {
        let mut bytes = [0u8; 64];
        bytes[0] = 1;
        for tile in 0..8 {
            bytes[16 + 2 * tile] = 64;
            bytes[48 + tile] = 16;
        }
        Self(bytes)
    }
}

/// `dst (+)= round(lhs) rhs` for `[m, n, k]`, `rhs` packed by `pack_rhs`.
///
/// # Safety
/// As `product_bf16`, for a depth `k` above 0, with [`available`] true.
pub(super) unsafe fn product<A: Element>(
    [m, n, k]: [usize; 3],
    dst: Output,
    lhs: Operand<A>,
    rhs: Panels<'_, u32>,
) {
    let parallel = parallel([m, n, k]);
    let out = SharedMut(dst.0);
    let config = TileConfig::new();
    let block = |first_row: usize| {
        let rows = MC.min(m - first_row);
        let mut lhs_packed = Vec::new();
        let mut sums = [0f32; TILE_BLOCK * TILE_BLOCK];
        // SAFETY: the configuration is valid for palette 1; the tiles are released below, before
        // this task ends, so no other task on this thread sees them configured.
        unsafe { asm!("ldtilecfg [{}]", in(reg) config.0.as_ptr(), options(nostack)) };
        for first_depth in (0..k).step_by(KC) {
            let depths = KC.min(k - first_depth);
            let row_pairs = depths.div_ceil(2).next_multiple_of(PAIR_ALIGN);
            let block = LhsBlock {
                first: [first_row, first_depth],
                size: [rows, depths],
                padded_rows: rows.next_multiple_of(TILE_BLOCK),
                row_pairs,
            };
            // bf16 rows in memory (weights as stored) whose depth is whole tiles are the packed
            // layout already: the tiles read them in place.
            let lhs_rows = match in_place_rows(lhs, k, rows) {
                Some(source) => LhsRows {
                    first: source.wrapping_add(first_row * k / 2 + first_depth / 2),
                    stride: k / 2,
                },
                None => {
                    pack_lhs(lhs, block, &mut lhs_packed);
                    LhsRows {
                        first: lhs_packed.as_ptr(),
                        stride: row_pairs,
                    }
                }
            };
            let accumulate = dst.2 || first_depth > 0;
            for first_col in (0..n).step_by(TILE_BLOCK) {
                let (panel, within) = (first_col / NR, first_col % NR);
                let rhs_block = &rhs.values[panel * rhs.stride + first_depth / 2 * NR + within..];
                for tile_row in (0..rows).step_by(TILE_BLOCK) {
                    let lhs_rows = LhsRows {
                        first: lhs_rows.first.wrapping_add(tile_row * lhs_rows.stride),
                        ..lhs_rows
                    };
                    let row = first_row + tile_row;
                    let size = [TILE_BLOCK.min(m - row), TILE_BLOCK.min(n - first_col)];
                    // SAFETY: the block's outputs lie inside `dst`, in this task's rows.
                    let at = unsafe { out.add(row * dst.1 as usize + first_col) };
                    if size == [TILE_BLOCK; 2] {
                        // A whole block: the tiles load (when accumulating) and store the output
                        // in place.
                        let sums = Sums {
                            at,
                            row_stride: dst.1 as usize,
                            load: accumulate,
                        };
                        // SAFETY: as below, with the 32 x 32 outputs at `at` inside `dst`.
                        unsafe { tile_block(row_pairs, lhs_rows, rhs_block, sums) };
                        continue;
                    }
                    let scratch = Sums {
                        at: sums.as_mut_ptr(),
                        row_stride: TILE_BLOCK,
                        load: false,
                    };
                    // SAFETY: `lhs_rows` addresses 32 rows of `row_pairs` pairs (a packed block is
                    // padded to whole tiles), `rhs_block` `row_pairs` rows of the panel from column
                    // `within` (panels are padded to `NR` columns and to `PAIR_ALIGN` pairs);
                    // `sums` is 32 x 32.
                    unsafe { tile_block(row_pairs, lhs_rows, rhs_block, scratch) };
                    // SAFETY: the block's outputs inside `dst`, in this task's rows.
                    unsafe { store_tile(&sums, TILE_BLOCK, size, at, dst.1, accumulate) };
                }
            }
        }
        // SAFETY: releases the configuration loaded above.
        unsafe { asm!("tilerelease", options(nostack)) };
    };
    for_row_blocks(m, MC, parallel, block);
}

/// Rows of bf16 pairs the tiles read (only through tile loads, which need no alignment): the
/// first pair of the first row, and the row stride in pairs.
#[derive(Clone, Copy)]
struct LhsRows {
    first: *const u32,
    stride: usize,
}

/// The first pair of `lhs` read as bf16 rows in place, where that is its packed layout: bf16
/// elements, adjacent along rows of `k` (a multiple of the tiles' 32) that follow each other,
/// and a block of `rows` (a multiple of 32: the tiles read whole ones).
fn in_place_rows<A: Element>(lhs: Operand<A>, k: usize, rows: usize) -> Option<*const u32> {
    let fits = lhs.2 == 1
        && lhs.1 == k as isize
        && k.is_multiple_of(2 * PAIR_ALIGN)
        && rows.is_multiple_of(TILE_BLOCK);
    // Tile loads have no alignment requirement: rows starting at any `u16` do.
    let first = A::bf16_slice_start(lhs.0)?;
    fits.then(|| first.cast::<u32>())
}

/// Where a `32 x 32` block of sums goes: its first element and row stride (in elements), and
/// whether the product is added to what it holds.
#[derive(Clone, Copy)]
struct Sums {
    at: *mut f32,
    row_stride: usize,
    load: bool,
}

/// `sums (+)= lhs rhs` for a `32 x 32` block over `pairs` depth pairs (a multiple of
/// `PAIR_ALIGN`): `lhs` 32 rows of (at least) `pairs` pairs, `rhs` `pairs` rows of `NR` pairs of which the
/// first 32 are used.
///
/// # Safety
/// The tiles are configured as [`TileConfig`] says; the operands hold what is described; the
/// block's 32 rows of 32 sums are valid and no other thread touches them.
unsafe fn tile_block(pairs: usize, lhs: LhsRows, rhs: &[u32], sums: Sums) {
    debug_assert!(pairs.is_multiple_of(PAIR_ALIGN) && lhs.stride >= pairs);
    debug_assert!(pairs == 0 || rhs.len() >= (pairs - 1) * NR + TILE_BLOCK);
    let stride = sums.row_stride * 4;
    let [top_left, top_right, bottom_left, bottom_right] =
        [0, 16, 16 * sums.row_stride, 16 * sums.row_stride + 16]
            .map(|offset| sums.at.wrapping_add(offset));
    if sums.load {
        // SAFETY: each load reads 16 rows of 64 bytes of the block (the promise).
        unsafe {
            asm!(
                "tileloadd tmm0, [{top_left} + {stride} * 1]",
                "tileloadd tmm1, [{top_right} + {stride} * 1]",
                "tileloadd tmm2, [{bottom_left} + {stride} * 1]",
                "tileloadd tmm3, [{bottom_right} + {stride} * 1]",
                top_left = in(reg) top_left,
                top_right = in(reg) top_right,
                bottom_left = in(reg) bottom_left,
                bottom_right = in(reg) bottom_right,
                stride = in(reg) stride,
                options(nostack, readonly)
            )
        };
    } else {
        // SAFETY: zeroes the four sum tiles.
        unsafe {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, nomem)
            )
        };
    }
    let lhs_stride = lhs.stride * 4;
    let rhs_stride = NR * 4;
    for step in (0..pairs).step_by(PAIR_ALIGN) {
        let top = lhs.first.wrapping_add(step);
        let bottom = top.wrapping_add(16 * lhs.stride);
        let left = rhs.as_ptr().wrapping_add(step * NR);
        let right = left.wrapping_add(16);
        // SAFETY: each load reads 16 rows of 64 bytes inside its operand (the promise); the
        // products touch the tiles only. The tiles live across the asm blocks: the compiler
        // allocates no tile registers of its own.
        unsafe {
            asm!(
                "tileloadd tmm4, [{top} + {lhs_stride} * 1]",
                "tileloadd tmm5, [{bottom} + {lhs_stride} * 1]",
                "tileloadd tmm6, [{left} + {rhs_stride} * 1]",
                "tileloadd tmm7, [{right} + {rhs_stride} * 1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                top = in(reg) top,
                bottom = in(reg) bottom,
                left = in(reg) left,
                right = in(reg) right,
                lhs_stride = in(reg) lhs_stride,
                rhs_stride = in(reg) rhs_stride,
                options(nostack, readonly)
            )
        };
    }
    // SAFETY: each store writes 16 rows of 64 bytes of the block (the promise).
    unsafe {
        asm!(
            "tilestored [{top_left} + {stride} * 1], tmm0",
            "tilestored [{top_right} + {stride} * 1], tmm1",
            "tilestored [{bottom_left} + {stride} * 1], tmm2",
            "tilestored [{bottom_right} + {stride} * 1], tmm3",
            top_left = in(reg) top_left,
            top_right = in(reg) top_right,
            bottom_left = in(reg) bottom_left,
            bottom_right = in(reg) bottom_right,
            stride = in(reg) stride,
            options(nostack)
        )
    };
}
