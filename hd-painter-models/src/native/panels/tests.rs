//! The f32 panel kernel against f64 products, and the matrices and checks the bf16 kernels'
//! tests share.

use super::*;

/// A deterministic spread of values over several magnitudes and both signs.
pub(in crate::native) fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let unit = (state >> 40) as f32 / (1u64 << 24) as f32;
            (unit - 0.5) * 4.0 * if state & 1 == 0 { 1.0 } else { 0.01 }
        })
        .collect()
}

/// A strided matrix in a buffer: element `(r, c)` at `r * row + c * col`.
pub(in crate::native) struct Strided {
    pub(in crate::native) data: Vec<f32>,
    pub(in crate::native) row: isize,
    pub(in crate::native) col: isize,
}

impl Strided {
    /// `rows x cols`, stored row-major or transposed.
    pub(in crate::native) fn new(rows: usize, cols: usize, transposed: bool, seed: u64) -> Self {
        let (row, col) = if transposed {
            (1, rows as isize)
        } else {
            (cols as isize, 1)
        };
        Self {
            data: values(rows * cols, seed),
            row,
            col,
        }
    }

    fn at(&self, r: usize, c: usize) -> f32 {
        self.data[(r as isize * self.row + c as isize * self.col) as usize]
    }

    pub(in crate::native) fn operand(&self) -> Operand {
        Operand(self.data.as_ptr(), self.row, self.col)
    }
}

/// Checks `multiply(lhs, rhs, dst)` (`dst (+)= lhs rhs` for `[m, n, k]`, the operands transposed
/// as `layout` says) against the f64 product of the operands' values as `value` reads them,
/// within the f32 summation bound `k u sum |a b|` (u = 2^-24) for any order, both overwriting
/// and accumulating.
pub(in crate::native) fn check_product(
    name: &str,
    [m, n, k]: [usize; 3],
    [lhs_t, rhs_t]: [bool; 2],
    value: fn(f32) -> f64,
    multiply: impl Fn(&Strided, &Strided, Output),
) {
    let lhs = Strided::new(m, k, lhs_t, 1 + (m * k) as u64);
    let rhs = Strided::new(k, n, rhs_t, 2 + (k * n) as u64);
    for accumulate in [false, true] {
        let start = values(m * n, 7);
        let mut out = start.clone();
        multiply(&lhs, &rhs, Output(out.as_mut_ptr(), n as isize, accumulate));
        for r in 0..m {
            for c in 0..n {
                let terms = (0..k).map(|d| value(lhs.at(r, d)) * value(rhs.at(d, c)));
                let (exact, magnitude) = terms.fold((0.0, 0.0), |(s, a), t| (s + t, a + t.abs()));
                let base = if accumulate {
                    f64::from(start[r * n + c])
                } else {
                    0.0
                };
                let got = f64::from(out[r * n + c]);
                let bound = (k + 1) as f64 * 2f64.powi(-24) * (magnitude + base.abs()) + 1e-30;
                assert!(
                    (got - (exact + base)).abs() <= bound,
                    "{name} [{m}, {n}, {k}] transposed {lhs_t}/{rhs_t} accumulate {accumulate}: \
                     ({r}, {c}) = {got}, want {} within {bound:e}",
                    exact + base
                );
            }
        }
    }
}

/// Shapes around every blocking size of the kernels (tiles of 6 x 64 and 32 x 32, blocks of 96
/// rows, depths of 128, 256 and 1024, 32-deep AMX steps), odd depths, the empty depth and some
/// big enough to run in parallel, through row-major and transposed operands.
pub(in crate::native) const SHAPES: [[usize; 3]; 12] = [
    [1, 1, 1],
    [5, 63, 3],
    [6, 64, 2],
    [7, 65, 0],
    [13, 129, 257],
    [31, 33, 31],
    [97, 70, 513],
    [101, 65, 257],
    [33, 97, 1100],
    [3, 300, 1000],
    [230, 150, 310],
    [12, 128, 129],
];

/// The four layouts of the two operands (transposed or not).
pub(in crate::native) const LAYOUTS: [[bool; 2]; 4] =
    [[false, false], [true, false], [false, true], [true, true]];

#[test]
fn f32_panels_multiply_exactly_in_f32() {
    if !PackedF32::available() {
        eprintln!("this CPU has no AVX-512F: the f32 panel kernel is not tested here");
        assert!(PackedF32::new(Operand(std::ptr::null(), 0, 0), [0, 0], false).is_none());
        return;
    }
    for dims in SHAPES {
        for layout in LAYOUTS {
            let multiply = |lhs: &Strided, rhs: &Strided, dst: Output| {
                let [m, n, k] = dims;
                let packed = PackedF32::new(rhs.operand(), [k, n], parallel(dims));
                let packed = packed.expect("AVX-512F");
                // SAFETY: `dst` is `m x n` contiguous; the operands hold their elements.
                unsafe { packed.multiply(m, dst, lhs.operand()) };
            };
            check_product("f32 panels", dims, layout, f64::from, multiply);
        }
    }
}
