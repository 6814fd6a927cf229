//! The process's memory use, for run summaries and memory budgets.

/// The process's peak resident set size so far, in bytes: `VmHWM` of `/proc/self/status` on
/// Linux, `None` where that is not available.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn the_peak_covers_a_buffer_just_touched() {
        let buffer = vec![1u8; 64 << 20];
        let peak = super::peak_rss_bytes().expect("VmHWM on Linux");
        assert!(
            peak >= 64 << 20,
            "peak {peak} below the 64 MiB just written"
        );
        assert_eq!(buffer.iter().map(|&b| b as usize).sum::<usize>(), 64 << 20);
    }
}
