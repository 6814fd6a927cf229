//! Both long-side formulas of the official HD-Painter code (`src/utils.resize` for
//! `hd_inpaint.py`'s 512 px stage, `IImage.resize` for the demo and the SR stage) for every size
//! from 1x1 to 4096x4096 at long sides 512 and 2048, against goldens that
//! `tools/reference/hd_painter_official.py` computed with the official functions' arithmetic
//! (checked there against the functions themselves): a checksum over all 16.7 million sizes
//! per rule, and the list of every size where the two rules differ (928 at 512).

mod fixtures;

use fixtures::Fixture;
use hd_painter_core::SizeRule;

/// The golden's checksum: `sum (W * 4099 + H) * (w * 4097 + h)` over all sizes, wrapping.
fn checksum(rule: SizeRule, long_side: u32) -> u64 {
    let mut sum = 0u64;
    for w in 1..=4096u32 {
        for h in 1..=4096u32 {
            let (nw, nh) = rule.size(w, h, long_side);
            let key = u64::from(w) * 4097 + u64::from(h);
            sum = sum.wrapping_add((u64::from(nw) * 4099 + u64::from(nh)).wrapping_mul(key));
        }
    }
    sum
}

#[test]
fn every_size_from_1_to_4096_follows_the_official_formulas() {
    let f = Fixture::open("hd_painter_masks");
    for long_side in [512, 2048] {
        for (name, rule) in [("script", SizeRule::Script), ("demo", SizeRule::Demo)] {
            let (_, want) = f.u64(&format!("checksum_{name}_{long_side}"));
            assert_eq!(
                checksum(rule, long_side),
                want[0],
                "{name} rule at {long_side}"
            );
        }
    }
}

#[test]
fn the_sizes_where_the_two_rules_differ_are_the_official_ones() {
    let f = Fixture::open("hd_painter_masks");
    for (long_side, count) in [(512, 928), (2048, 1544)] {
        let (shape, rows) = f.i64(&format!("differ_{long_side}"));
        assert_eq!(shape[0], count, "sizes that differ at {long_side}");
        let want: Vec<[u32; 6]> = rows
            .chunks_exact(6)
            .map(|r| std::array::from_fn(|i| r[i] as u32))
            .collect();
        let mut got = Vec::new();
        for w in 1..=4096u32 {
            for h in 1..=4096u32 {
                let (script, demo) = (
                    SizeRule::Script.size(w, h, long_side),
                    SizeRule::Demo.size(w, h, long_side),
                );
                if script != demo {
                    got.push([w, h, script.0, script.1, demo.0, demo.1]);
                }
            }
        }
        assert_eq!(got, want, "at {long_side}");
    }
    assert_eq!(SizeRule::Script.size(93, 128, 512), (372, 512));
    assert_eq!(SizeRule::Demo.size(93, 128, 512), (371, 512));
}
