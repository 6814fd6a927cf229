//! Fuzzing the image and mask loaders: the fixture PNG, JPEG, WebP, 16-bit, CMYK and alpha files
//! with random byte edits, truncations and splices. Every input must give an image or a typed
//! error, never a panic. CI runs 64 cases per format; `HD_PAINTER_FUZZ_CASES=100000` runs a long
//! campaign (see the README).

mod fixtures;

use hd_painter_core::{CoreError, Image, Mask, MaskChannel, MaskOptions};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("HD_PAINTER_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

const FILES: [&str; 8] = [
    "rgb.png",
    "rgba.png",
    "mask.png",
    "gray16.png",
    "rgb16.png",
    "rgb.jpg",
    "cmyk.jpg",
    "rgb.webp",
];

/// One edit of a file: overwrite bytes, truncate, or duplicate a range.
#[derive(Clone, Debug)]
enum Edit {
    Overwrite(usize, Vec<u8>),
    Truncate(usize),
    Splice(usize, usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(at, b)| Edit::Overwrite(at, b)),
        1 => any::<usize>().prop_map(Edit::Truncate),
        1 => (any::<usize>(), any::<usize>(), any::<usize>()).prop_map(|(a, b, c)| Edit::Splice(a, b, c)),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let n = bytes.len().max(1);
        match e {
            Edit::Overwrite(at, b) => {
                // Headers are where parsers go wrong: aim half the edits at the first 64 bytes.
                let at = if at % 2 == 0 { at % 64.min(n) } else { at % n };
                for (i, &v) in b.iter().enumerate() {
                    if let Some(slot) = bytes.get_mut(at + i) {
                        *slot = v;
                    }
                }
            }
            Edit::Truncate(at) => bytes.truncate(at % n),
            Edit::Splice(a, b, c) => {
                let (a, b) = ((a % n).min(b % n), (a % n).max(b % n));
                let piece = bytes[a..b.min(bytes.len())].to_vec();
                let at = c % n;
                bytes.splice(at.min(bytes.len())..at.min(bytes.len()), piece);
            }
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn edited_image_files_load_or_fail_typed(file in 0..FILES.len(), edits in prop::collection::vec(edit(), 1..6), case in any::<u64>()) {
        let bytes = apply(std::fs::read(fixtures::path(FILES[file])).unwrap(), &edits);
        let path = std::env::temp_dir().join(format!("hd-painter-fuzz-{}-{case}-{}", std::process::id(), FILES[file]));
        std::fs::write(&path, &bytes).unwrap();
        let alpha = MaskOptions { channel: MaskChannel::Alpha, invert: true, ..MaskOptions::default() };
        let results = [
            Image::open(&path).map(|i| (i.width(), i.height())),
            Mask::open(&path).map(|m| (m.width(), m.height())),
            Mask::open_with(&path, alpha).map(|m| (m.width(), m.height())),
        ];
        std::fs::remove_file(&path).unwrap();
        for r in results {
            match r {
                Ok((w, h)) => prop_assert!(w > 0 && h > 0),
                Err(CoreError::Decode { .. } | CoreError::Empty { .. } | CoreError::TooLarge { .. } | CoreError::Io { .. }) => {}
                Err(other) => prop_assert!(false, "unexpected error kind: {other}"),
            }
        }
    }
}
