//! The key layouts that published weight files use besides the one diffusers and transformers
//! write today, and how each is read: renamed at load time as the reference libraries rename
//! it, or ignored where they ignore it. [`inspect`](crate::inspect) reports which rules a file
//! needed.

use regex::Regex;

/// One load-time rule of a published layout.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyRule {
    /// What the rule handles, as `inspect` reports it.
    pub(crate) what: &'static str,
    /// A regex over the file's keys.
    pub(crate) pattern: &'static str,
    /// The model key (`$1` for groups), or `None` for tensors the model has no use for.
    pub(crate) replacement: Option<&'static str>,
}

const fn rename(what: &'static str, pattern: &'static str, to: &'static str) -> KeyRule {
    KeyRule {
        what,
        pattern,
        replacement: Some(to),
    }
}

const fn ignore(what: &'static str, pattern: &'static str) -> KeyRule {
    KeyRule {
        what,
        pattern,
        replacement: None,
    }
}

/// diffusers before 0.17 named the VAE mid-block attention `query` / `key` / `value` /
/// `proj_attn` (its `AttentionBlock`); `ModelMixin._convert_deprecated_attention_blocks`
/// renames them at load time, as here. The 2022 VAE files carry these names.
const VAE_ATTENTION: &str = "pre-0.17 VAE attention names (query, key, value, proj_attn)";

/// The VAE's rules.
pub(crate) const VAE: [KeyRule; 4] = [
    rename(
        VAE_ATTENTION,
        r"(mid_block\.attentions\.\d+)\.query\.(weight|bias)$",
        "$1.to_q.$2",
    ),
    rename(
        VAE_ATTENTION,
        r"(mid_block\.attentions\.\d+)\.key\.(weight|bias)$",
        "$1.to_k.$2",
    ),
    rename(
        VAE_ATTENTION,
        r"(mid_block\.attentions\.\d+)\.value\.(weight|bias)$",
        "$1.to_v.$2",
    ),
    rename(
        VAE_ATTENTION,
        r"(mid_block\.attentions\.\d+)\.proj_attn\.(weight|bias)$",
        "$1.to_out.$2",
    ),
];

/// `UNet2DModel`'s rules: the 2022 DDPM files carry the same pre-0.17 attention names in every
/// attention block, and the score-SDE files their Fourier frequencies as `time_proj.W`.
pub(crate) const UNET_2D: [KeyRule; 5] = [
    rename(
        UNET_2D_ATTENTION,
        r"(attentions\.\d+)\.query\.(weight|bias)$",
        "$1.to_q.$2",
    ),
    rename(
        UNET_2D_ATTENTION,
        r"(attentions\.\d+)\.key\.(weight|bias)$",
        "$1.to_k.$2",
    ),
    rename(
        UNET_2D_ATTENTION,
        r"(attentions\.\d+)\.value\.(weight|bias)$",
        "$1.to_v.$2",
    ),
    rename(
        UNET_2D_ATTENTION,
        r"(attentions\.\d+)\.proj_attn\.(weight|bias)$",
        "$1.to_out.$2",
    ),
    rename(
        "pre-0.17 Fourier projection name (time_proj.W)",
        r"^time_proj\.W$",
        "time_proj.weight",
    ),
];

const UNET_2D_ATTENTION: &str =
    "pre-0.17 UNet2DModel attention names (query, key, value, proj_attn)";

/// The text encoder's rules: transformers 4 saved `CLIPTextModel` under its `text_model.`
/// base-model prefix, which transformers 5 drops, and accepts either; buffers and the parts of
/// larger CLIP classes are unused, as transformers leaves them unused.
pub(crate) const CLIP: [KeyRule; 4] = [
    rename(
        "transformers 4 layout (`text_model.` prefix)",
        r"^text_model\.",
        "",
    ),
    ignore(
        "transformers 4 `position_ids` buffer (ignored)",
        r"embeddings\.position_ids$",
    ),
    ignore(
        "CLIPTextModelWithProjection's `text_projection` (ignored by `CLIPTextModel`)",
        TEXT_PROJECTION,
    ),
    ignore(
        "a whole CLIPModel file: vision tower and `logit_scale` (ignored)",
        r"^(vision_model\.|visual_projection\.|logit_scale$)",
    ),
];

/// The key pattern of `CLIPTextModelWithProjection`'s projection, which `CLIPTextModel` ignores.
pub(crate) const TEXT_PROJECTION: &str = r"^text_projection\.";

/// `(pattern, replacement)` of the renaming rules, for the weight loader.
pub(crate) fn remaps(rules: &[KeyRule]) -> Vec<(&'static str, &'static str)> {
    rules
        .iter()
        .filter_map(|r| r.replacement.map(|to| (r.pattern, to)))
        .collect()
}

/// The patterns of the keys the model has no use for.
pub(crate) fn ignored(rules: &[KeyRule]) -> Vec<&'static str> {
    rules
        .iter()
        .filter(|r| r.replacement.is_none())
        .map(|r| r.pattern)
        .collect()
}

/// What the rules that match at least one of `keys` handle, each named once.
pub(crate) fn applied<'k>(
    rules: &[KeyRule],
    keys: impl IntoIterator<Item = &'k str>,
) -> Vec<&'static str> {
    let compiled: Vec<(Regex, &'static str)> = rules
        .iter()
        .map(|r| (Regex::new(r.pattern).expect("valid layout pattern"), r.what))
        .collect();
    let mut found: Vec<&'static str> = Vec::new();
    for key in keys {
        for (regex, what) in &compiled {
            if regex.is_match(key) && !found.contains(what) {
                found.push(what);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rules applied one after the other, as the store applies its remappings.
    fn renamed(rules: &[KeyRule], key: &str) -> String {
        remaps(rules).iter().fold(key.to_string(), |k, (p, to)| {
            Regex::new(p).unwrap().replace(&k, *to).into_owned()
        })
    }

    #[test]
    fn the_deprecated_vae_attention_names_map_onto_ours() {
        for (old, new) in [
            (
                "encoder.mid_block.attentions.0.query.weight",
                "encoder.mid_block.attentions.0.to_q.weight",
            ),
            (
                "decoder.mid_block.attentions.0.key.bias",
                "decoder.mid_block.attentions.0.to_k.bias",
            ),
            (
                "decoder.mid_block.attentions.0.value.weight",
                "decoder.mid_block.attentions.0.to_v.weight",
            ),
            (
                "encoder.mid_block.attentions.0.proj_attn.bias",
                "encoder.mid_block.attentions.0.to_out.bias",
            ),
            // Current names and the group norm stay as they are.
            (
                "encoder.mid_block.attentions.0.group_norm.weight",
                "encoder.mid_block.attentions.0.group_norm.weight",
            ),
            (
                "encoder.mid_block.attentions.0.to_q.weight",
                "encoder.mid_block.attentions.0.to_q.weight",
            ),
        ] {
            assert_eq!(renamed(&VAE, old), new, "{old}");
        }
        assert_eq!(
            applied(&VAE, ["decoder.mid_block.attentions.0.query.weight"]),
            [VAE_ATTENTION]
        );
        assert!(applied(&VAE, ["decoder.mid_block.attentions.0.to_q.weight"]).is_empty());
    }

    #[test]
    fn clip_prefixes_and_unused_tensors() {
        assert_eq!(
            renamed(&CLIP, "text_model.encoder.layers.0.mlp.fc1.weight"),
            "encoder.layers.0.mlp.fc1.weight"
        );
        let keys = [
            "text_model.embeddings.position_ids",
            "vision_model.embeddings.patch_embedding.weight",
            "logit_scale",
        ];
        assert_eq!(applied(&CLIP, keys).len(), 3);
        let ignored: Vec<Regex> = ignored(&CLIP)
            .iter()
            .map(|p| Regex::new(p).unwrap())
            .collect();
        for key in [
            "embeddings.position_ids",
            "visual_projection.weight",
            "logit_scale",
        ] {
            assert!(ignored.iter().any(|r| r.is_match(key)), "{key}");
        }
        assert!(!ignored.iter().any(|r| r.is_match("logit_scale_extra")));
    }
}
