use half::bf16;

use super::*;
use crate::native::panels::tests::{LAYOUTS, SHAPES, Strided, check_product, values};

#[test]
fn rounds_as_half_does() {
    let mut specials = vec![
        0.0f32,
        -0.0,
        1.0,
        f32::MIN_POSITIVE,
        f32::MIN_POSITIVE / 3.0,
        f32::MAX,
        f32::MIN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        f32::from_bits(0x7f80_0001), // a signalling NaN whose payload is in the low half only
        f32::from_bits(0x3f80_8000), // a tie to even (down)
        f32::from_bits(0x3f81_8000), // a tie to even (up)
        f32::from_bits(0x3f80_8001),
        f32::from_bits(0x7f7f_ffff),
    ];
    specials.extend(values(100_000, 3));
    for x in specials {
        let ours = x.bf16_bits();
        let half = bf16::from_f32(x);
        if x.is_nan() {
            assert!(bf16::from_bits(ours).is_nan(), "{x:e}");
            assert_eq!(ours >> 15, half.to_bits() >> 15, "sign of {x:e}");
        } else {
            assert_eq!(ours, half.to_bits(), "{x:e} ({:#x})", x.to_bits());
        }
    }
}

fn round(x: f32) -> f64 {
    f64::from(widened(x.bf16_bits()))
}

/// Checks `kernel` (one of the bf16 kernels, or `None` for the fallback) against the f64
/// product of the rounded operands, within the f32 summation bound.
fn check(name: &str, kernel: Option<Kernel>, dims: [usize; 3], layout: [bool; 2]) {
    let multiply = |lhs: &Strided, rhs: &Strided, dst: Output| {
        let [m, n, k] = dims;
        let packed = PackedRhs::for_kernel(kernel, rhs.operand(), [k, n], parallel(dims));
        // SAFETY: `dst` is `m x n` contiguous; the operands hold their elements.
        unsafe { packed.multiply(m, dst, lhs.operand()) };
    };
    check_product(name, dims, layout, round, multiply);
}

fn check_all(kernel: Option<Kernel>) {
    let name = format!("{kernel:?}");
    for dims in SHAPES {
        for layout in LAYOUTS {
            check(&name, kernel, dims, layout);
        }
    }
}

/// Every kernel this CPU runs (the others are named on stderr: CI machines differ).
#[test]
fn kernels_multiply_the_rounded_operands() {
    let kernels = Kernel::available();
    for kernel in [Kernel::Amx, Kernel::Avx512] {
        if !kernels.contains(&kernel) {
            eprintln!("this CPU does not run the {kernel:?} kernel: not tested here");
        }
    }
    for kernel in kernels {
        check_all(Some(kernel));
    }
}

/// The product on CPUs without a kernel, which every CPU runs.
#[test]
fn fallback_multiplies_the_rounded_operands() {
    check_all(None);
}

/// bf16 operands (weights as stored) give exactly what their values in f32 give, through every
/// kernel: as the right operand, and as the left one both packed and read in place (AMX reads
/// bf16 rows whose depth is whole tiles without packing them), across depth blocks.
#[test]
fn bf16_sources_agree_with_f32_sources() {
    for [m, n, k] in [[37, 81, 300], [64, 50, 96], [160, 70, 1088], [45, 33, 64]] {
        let lhs = Strided::new(m, k, false, 11);
        let rhs = Strided::new(k, n, true, 12);
        let bf16s =
            |m: &Strided| -> Vec<bf16> { m.data.iter().map(|&x| bf16::from_f32(x)).collect() };
        let (lhs_bf16, rhs_bf16) = (bf16s(&lhs), bf16s(&rhs));
        let mut kernels: Vec<_> = Kernel::available().into_iter().map(Some).collect();
        kernels.push(None);
        for kernel in kernels {
            let run = |bf16_sources: bool| {
                let mut out = vec![0f32; m * n];
                let dst = Output(out.as_mut_ptr(), n as isize, false);
                // SAFETY: as in `check`; the bf16 copies have the f32 operands' strides.
                unsafe {
                    if bf16_sources {
                        let source = Operand(rhs_bf16.as_ptr(), rhs.row, rhs.col);
                        let packed = PackedRhs::for_kernel(kernel, source, [k, n], false);
                        packed.multiply(m, dst, Operand(lhs_bf16.as_ptr(), lhs.row, lhs.col));
                    } else {
                        let packed = PackedRhs::for_kernel(kernel, rhs.operand(), [k, n], false);
                        packed.multiply(m, dst, lhs.operand());
                    }
                }
                out
            };
            assert_eq!(run(true), run(false), "{kernel:?} [{m}, {n}, {k}]");
        }
    }
}

#[test]
fn products_setting_is_scoped() {
    assert_eq!(products(), Products::F32);
    with_products(Products::Bf16, || {
        assert_eq!(products(), Products::Bf16);
        with_products(Products::F32, || assert_eq!(products(), Products::F32));
        assert_eq!(products(), Products::Bf16);
    });
    let unwound = std::panic::catch_unwind(|| with_products(Products::Bf16, || panic!("inside")));
    assert!(unwound.is_err());
    assert_eq!(products(), Products::F32);
}

/// Throughput of each kernel against the f32 GEMM on the shapes of a UNet step and of a block of
/// 64 queries in the x4 VAE's attention at 2048 px (in release:
/// `cargo test --release -p hd-painter-models --lib bf16::tests::throughput -- --ignored
/// --nocapture`).
#[test]
#[ignore = "a throughput measurement (README, bf16 products), not a check: run it in release"]
fn throughput() {
    let shapes = [
        [4096, 320, 320],
        [4096, 1280, 320],
        [1024, 1280, 1280],
        [320, 1024, 2880],
        [1280, 256, 11520],
        [64, 4096, 64],
        [64, 64, 4096],
        [64, 262144, 512],
        [64, 512, 262144],
    ];
    for [m, n, k] in shapes {
        let lhs = Strided::new(m, k, false, 1);
        let rhs = Strided::new(k, n, false, 2);
        let mut out = vec![0f32; m * n];
        let dst = Output(out.as_mut_ptr(), n as isize, false);
        let time = |f: &mut dyn FnMut()| {
            f();
            let start = std::time::Instant::now();
            for _ in 0..5 {
                f();
            }
            start.elapsed().as_secs_f64() / 5.0
        };
        let gflops = |seconds: f64| 2.0 * (m * n * k) as f64 / 1e9 / seconds;
        // SAFETY (all products): as in `check`.
        let f32_gemm = time(&mut || unsafe {
            super::super::product([m, n, k], dst, lhs.operand(), rhs.operand())
        });
        let mut line = format!("[{m}, {n}, {k}]: f32 {:.0} GFLOP/s", gflops(f32_gemm));
        if let Some(panels) = crate::native::panels::PackedF32::new(rhs.operand(), [k, n], true) {
            let mut run = || unsafe { panels.multiply(m, dst, lhs.operand()) };
            line += &format!(", f32 panels (packed once) {:.0}", gflops(time(&mut run)));
        }
        for kernel in Kernel::available() {
            let mut run = || {
                let packed = PackedRhs::for_kernel(Some(kernel), rhs.operand(), [k, n], true);
                unsafe { packed.multiply(m, dst, lhs.operand()) };
            };
            line += &format!(", {kernel:?} {:.0}", gflops(time(&mut run)));
        }
        println!("{line}");
    }
}
