//! Example programs, and what they share.

use burn::tensor::FloatDType;
use clap::ValueEnum;

/// A seed from the clock, for runs that give none (reported, so that the run can be repeated).
pub fn random_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64 % 1_000_000_007)
}

/// The weights' precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DTypeArg {
    /// f32, the reference path.
    F32,
    /// bfloat16 weights: half the memory, about 0.5% from f32 (2% with `--half-activations`).
    Bf16,
    /// float16 weights: half the memory, within 1e-3 of f32 (1e-2 with `--half-activations`).
    F16,
}

impl From<DTypeArg> for FloatDType {
    fn from(d: DTypeArg) -> Self {
        match d {
            DTypeArg::F32 => FloatDType::F32,
            DTypeArg::Bf16 => FloatDType::BF16,
            DTypeArg::F16 => FloatDType::F16,
        }
    }
}
