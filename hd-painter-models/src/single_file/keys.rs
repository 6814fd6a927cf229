//! Checkpoint keys renamed to the diffusers layout, as diffusers' `single_file_utils`
//! converters rename them: the UNet's `input_blocks` / `middle_block` / `output_blocks`, the
//! VAE's `down` / `mid` / `up`, OpenCLIP's `resblocks`.

/// What a checkpoint tensor becomes in the diffusers layout: one part of it under a new key,
/// with a new shape or transposed where the layouts differ.
pub(super) struct Part {
    pub(super) key: String,
    pub(super) shape: Option<Vec<usize>>,
    pub(super) transposed: bool,
}

impl Part {
    /// The tensor as it is, under `key`.
    pub(super) fn renamed(key: String) -> Self {
        Self {
            key,
            shape: None,
            transposed: false,
        }
    }

    /// The tensor (or its share of a split) under `key` with `shape`.
    pub(super) fn reshaped(key: String, shape: Vec<usize>) -> Self {
        Self {
            shape: Some(shape),
            ..Self::renamed(key)
        }
    }

    /// The 2-d tensor transposed, under `key`.
    pub(super) fn transposed(key: String) -> Self {
        Self {
            transposed: true,
            ..Self::renamed(key)
        }
    }
}

/// `key` with the first `(old, new)` prefix of `table` it starts with replaced, if any.
fn renamed_prefix<'a>(
    key: &str,
    table: impl IntoIterator<Item = &'a (&'a str, &'a str)>,
) -> Option<String> {
    table
        .into_iter()
        .find_map(|(old, new)| key.strip_prefix(old).map(|rest| format!("{new}{rest}")))
}

/// `input_blocks.4.1.proj_in.weight` -> `down_blocks.1.attentions.0.proj_in.weight`, and so on
/// (diffusers' `convert_ldm_unet_checkpoint`); keys it cannot place are kept as they are, so
/// that the loader reports them as unexpected.
pub(super) fn unet_key(key: &str, layers_per_block: usize, text_time: bool) -> String {
    const ADDED: [(&str, &str); 2] = [
        ("label_emb.0.0.", "add_embedding.linear_1."),
        ("label_emb.0.2.", "add_embedding.linear_2."),
    ];
    const TOP: [(&str, &str); 6] = [
        ("time_embed.0.", "time_embedding.linear_1."),
        ("time_embed.2.", "time_embedding.linear_2."),
        ("input_blocks.0.0.", "conv_in."),
        ("out.0.", "conv_norm_out."),
        ("out.2.", "conv_out."),
        ("label_emb.", "class_embedding."),
    ];
    let added: &[(&str, &str)] = if text_time { &ADDED } else { &[] };
    if let Some(new) = renamed_prefix(key, added.iter().chain(&TOP)) {
        return new;
    }
    let per_level = layers_per_block + 1;
    let Some((block, index, part, rest)) = split_block(key) else {
        return key.to_string();
    };
    match (block, part) {
        ("input_blocks", "0") if rest.starts_with("op.") => format!(
            "down_blocks.{}.downsamplers.0.conv.{}",
            (index - 1) / per_level,
            &rest[3..]
        ),
        ("input_blocks", "0") => format!(
            "down_blocks.{}.resnets.{}.{}",
            (index - 1) / per_level,
            (index - 1) % per_level,
            resnet_rest(rest)
        ),
        ("input_blocks", "1") => format!(
            "down_blocks.{}.attentions.{}.{rest}",
            (index - 1) / per_level,
            (index - 1) % per_level
        ),
        ("middle_block", "") if index % 2 == 0 => {
            format!("mid_block.resnets.{}.{}", index / 2, resnet_rest(rest))
        }
        ("middle_block", "") => format!("mid_block.attentions.0.{rest}"),
        ("output_blocks", "0") => format!(
            "up_blocks.{}.resnets.{}.{}",
            index / per_level,
            index % per_level,
            resnet_rest(rest)
        ),
        ("output_blocks", "1" | "2") if rest.starts_with("conv.") => {
            format!("up_blocks.{}.upsamplers.0.{rest}", index / per_level)
        }
        ("output_blocks", "1") => format!(
            "up_blocks.{}.attentions.{}.{rest}",
            index / per_level,
            index % per_level
        ),
        _ => key.to_string(),
    }
}

/// `input_blocks.4.1.rest` -> `("input_blocks", 4, "1", "rest")`; `middle_block.1.rest` ->
/// `("middle_block", 1, "", "rest")`.
fn split_block(key: &str) -> Option<(&str, usize, &str, &str)> {
    let (block, rest) = key.split_once('.')?;
    let (index, rest) = rest.split_once('.')?;
    let index: usize = index.parse().ok()?;
    match block {
        "middle_block" => Some((block, index, "", rest)),
        "input_blocks" | "output_blocks" => {
            let (part, rest) = rest.split_once('.')?;
            Some((block, index, part, rest))
        }
        _ => None,
    }
}

/// A UNet resnet's parameter names in diffusers' terms.
fn resnet_rest(rest: &str) -> String {
    const NAMES: [(&str, &str); 6] = [
        ("in_layers.0.", "norm1."),
        ("in_layers.2.", "conv1."),
        ("emb_layers.1.", "time_emb_proj."),
        ("out_layers.0.", "norm2."),
        ("out_layers.3.", "conv2."),
        ("skip_connection.", "conv_shortcut."),
    ];
    renamed_prefix(rest, &NAMES).unwrap_or_else(|| rest.to_string())
}

/// `encoder.down.1.block.0.nin_shortcut.weight` ->
/// `encoder.down_blocks.1.resnets.0.conv_shortcut.weight`, and so on (diffusers'
/// `convert_ldm_vae_checkpoint`; the decoder's `up.{i}` counts from the bottom).
pub(super) fn vae_key(key: &str, levels: usize) -> String {
    let Some((half, rest)) = key.split_once('.') else {
        return key.to_string();
    };
    if half != "encoder" && half != "decoder" {
        return key.to_string();
    }
    let renamed = if let Some(rest) = rest.strip_prefix("norm_out.") {
        format!("conv_norm_out.{rest}")
    } else if let Some(rest) = rest.strip_prefix("mid.") {
        mid_key(rest)
    } else if let Some((level, inner)) = rest
        .strip_prefix("down.")
        .or_else(|| rest.strip_prefix("up."))
        .and_then(|r| r.split_once('.'))
        .and_then(|(l, inner)| Some((l.parse::<usize>().ok()?, inner)))
    {
        let (blocks, level) = if rest.starts_with("down.") {
            ("down_blocks", level)
        } else {
            ("up_blocks", levels.saturating_sub(1 + level))
        };
        let inner = if let Some(r) = inner.strip_prefix("block.") {
            format!("resnets.{}", r.replace("nin_shortcut.", "conv_shortcut."))
        } else if let Some(r) = inner
            .strip_prefix("downsample.")
            .or_else(|| inner.strip_prefix("upsample."))
        {
            let kind = if inner.starts_with("down") {
                "downsamplers"
            } else {
                "upsamplers"
            };
            format!("{kind}.0.{r}")
        } else {
            inner.to_string()
        };
        format!("{blocks}.{level}.{inner}")
    } else {
        rest.to_string()
    };
    format!("{half}.{renamed}")
}

/// The VAE mid-block: `block_1` / `block_2` resnets and `attn_1`'s norm and projections.
fn mid_key(rest: &str) -> String {
    const NAMES: [(&str, &str); 7] = [
        ("block_1.", "mid_block.resnets.0."),
        ("block_2.", "mid_block.resnets.1."),
        ("attn_1.norm.", "mid_block.attentions.0.group_norm."),
        ("attn_1.q.", "mid_block.attentions.0.to_q."),
        ("attn_1.k.", "mid_block.attentions.0.to_k."),
        ("attn_1.v.", "mid_block.attentions.0.to_v."),
        ("attn_1.proj_out.", "mid_block.attentions.0.to_out.0."),
    ];
    renamed_prefix(rest, &NAMES).unwrap_or_else(|| format!("mid.{rest}"))
}

/// OpenCLIP's text tower in transformers' `CLIPTextModel` keys (diffusers'
/// `convert_open_clip_checkpoint`): the fused `in_proj` becomes three parts; `logit_scale`, the
/// attention mask buffer and layers from `layers` on are dropped, and so is the projection
/// unless `projection` (SDXL's `CLIPTextModelWithProjection`: the matrix `x P` becomes the
/// linear weight `P^T`).
pub(super) fn open_clip_keys(
    key: &str,
    shape: &[usize],
    layers: usize,
    projection: bool,
) -> Vec<Part> {
    const TOP: [(&str, &str); 3] = [
        (
            "token_embedding.weight",
            "text_model.embeddings.token_embedding.weight",
        ),
        (
            "positional_embedding",
            "text_model.embeddings.position_embedding.weight",
        ),
        ("ln_final.", "text_model.final_layer_norm."),
    ];
    const LAYER: [(&str, &str); 6] = [
        ("ln_1.", "layer_norm1."),
        ("ln_2.", "layer_norm2."),
        ("attn.out_proj.", "self_attn.out_proj."),
        ("mlp.c_fc.", "mlp.fc1."),
        ("mlp.c_proj.", "mlp.fc2."),
        ("attn.in_proj_", ""),
    ];
    if key == "text_projection" && projection {
        return vec![Part::transposed("text_projection.weight".to_string())];
    }
    if ["text_projection", "logit_scale", "attn_mask"].contains(&key) {
        return Vec::new();
    }
    if let Some(new) = renamed_prefix(key, &TOP) {
        return vec![Part::renamed(new)];
    }
    let Some((layer, rest)) = key
        .strip_prefix("transformer.resblocks.")
        .and_then(|r| r.split_once('.'))
        .and_then(|(l, rest)| Some((l.parse::<usize>().ok()?, rest)))
    else {
        return vec![Part::renamed(key.to_string())];
    };
    if layer >= layers {
        return Vec::new();
    }
    let base = format!("text_model.encoder.layers.{layer}.");
    if let Some(kind) = rest.strip_prefix("attn.in_proj_") {
        let mut part = shape.to_vec();
        part[0] /= 3;
        return ["q_proj", "k_proj", "v_proj"]
            .iter()
            .map(|p| Part::reshaped(format!("{base}self_attn.{p}.{kind}"), part.clone()))
            .collect();
    }
    let renamed = renamed_prefix(rest, &LAYER).unwrap_or_else(|| rest.to_string());
    vec![Part::renamed(format!("{base}{renamed}"))]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unet_keys_follow_diffusers_converter() {
        let cases = [
            ("input_blocks.0.0.weight", "conv_in.weight"),
            (
                "input_blocks.1.0.in_layers.2.weight",
                "down_blocks.0.resnets.0.conv1.weight",
            ),
            (
                "input_blocks.2.1.proj_in.weight",
                "down_blocks.0.attentions.1.proj_in.weight",
            ),
            (
                "input_blocks.3.0.op.bias",
                "down_blocks.0.downsamplers.0.conv.bias",
            ),
            (
                "input_blocks.4.0.skip_connection.weight",
                "down_blocks.1.resnets.0.conv_shortcut.weight",
            ),
            (
                "middle_block.0.emb_layers.1.weight",
                "mid_block.resnets.0.time_emb_proj.weight",
            ),
            (
                "middle_block.1.transformer_blocks.0.attn2.to_k.weight",
                "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight",
            ),
            (
                "middle_block.2.out_layers.3.bias",
                "mid_block.resnets.1.conv2.bias",
            ),
            (
                "output_blocks.2.1.conv.weight",
                "up_blocks.0.upsamplers.0.conv.weight",
            ),
            (
                "output_blocks.5.2.conv.bias",
                "up_blocks.1.upsamplers.0.conv.bias",
            ),
            (
                "output_blocks.5.1.norm.weight",
                "up_blocks.1.attentions.2.norm.weight",
            ),
            (
                "output_blocks.11.0.out_layers.0.weight",
                "up_blocks.3.resnets.2.norm2.weight",
            ),
            ("time_embed.2.bias", "time_embedding.linear_2.bias"),
            ("out.0.weight", "conv_norm_out.weight"),
        ];
        for (ldm, diffusers) in cases {
            assert_eq!(unet_key(ldm, 2, false), diffusers, "{ldm}");
        }
        // SDXL's added embedding, where the UNet has one; the x4 upscaler's class embedding.
        let added = "label_emb.0.2.weight";
        assert_eq!(unet_key(added, 2, true), "add_embedding.linear_2.weight");
        assert_eq!(unet_key(added, 2, false), "class_embedding.0.2.weight");
        let class = "label_emb.weight";
        assert_eq!(unet_key(class, 2, true), "class_embedding.weight");
    }

    #[test]
    fn vae_keys_follow_diffusers_converter() {
        let cases = [
            (
                "encoder.down.1.block.0.nin_shortcut.weight",
                "encoder.down_blocks.1.resnets.0.conv_shortcut.weight",
            ),
            (
                "encoder.down.0.downsample.conv.weight",
                "encoder.down_blocks.0.downsamplers.0.conv.weight",
            ),
            (
                "decoder.up.3.block.2.conv1.bias",
                "decoder.up_blocks.0.resnets.2.conv1.bias",
            ),
            (
                "decoder.up.1.upsample.conv.weight",
                "decoder.up_blocks.2.upsamplers.0.conv.weight",
            ),
            (
                "encoder.mid.attn_1.proj_out.weight",
                "encoder.mid_block.attentions.0.to_out.0.weight",
            ),
            (
                "decoder.mid.block_2.norm1.bias",
                "decoder.mid_block.resnets.1.norm1.bias",
            ),
            ("decoder.norm_out.weight", "decoder.conv_norm_out.weight"),
            ("post_quant_conv.weight", "post_quant_conv.weight"),
        ];
        for (ldm, diffusers) in cases {
            assert_eq!(vae_key(ldm, 4), diffusers, "{ldm}");
        }
    }

    #[test]
    fn open_clip_in_proj_splits_in_three_and_the_last_layer_is_dropped() {
        let in_proj = "transformer.resblocks.0.attn.in_proj_weight";
        let parts = open_clip_keys(in_proj, &[96, 32], 2, false);
        let keys: Vec<&str> = parts.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "text_model.encoder.layers.0.self_attn.q_proj.weight",
                "text_model.encoder.layers.0.self_attn.k_proj.weight",
                "text_model.encoder.layers.0.self_attn.v_proj.weight",
            ]
        );
        assert!(
            parts
                .iter()
                .all(|p| p.shape.as_deref() == Some(&[32, 32][..]) && !p.transposed)
        );
        let last = "transformer.resblocks.2.ln_1.weight";
        assert!(open_clip_keys(last, &[32], 2, false).is_empty());
        // SD 2 drops the projection; SDXL's second encoder keeps it as a linear weight.
        assert!(open_clip_keys("text_projection", &[32, 32], 2, false).is_empty());
        let kept = open_clip_keys("text_projection", &[32, 16], 2, true);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].key, "text_projection.weight");
        assert!(kept[0].transposed);
    }
}
