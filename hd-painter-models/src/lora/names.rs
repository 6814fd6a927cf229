//! The names LoRA files give a model's layers, for each weight of the model: the diffusers /
//! transformers module name (`down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q`)
//! that PEFT files use, and the same with underscores (kohya-ss' `lora_unet_*` names).
//! Our burn paths differ from the diffusers names where the weight loader renames (see
//! `Unet2DConditionModel::from_weights` and `layout::CLIP`); the rules below undo those renames.

use std::collections::HashMap;

use regex::Regex;

use super::file::LoraComponent;

/// Burn path -> diffusers name rewrites of the UNet (the inverse of its load-time remaps).
const UNET: [(&str, &str); 4] = [
    (r"\.to_out\.", ".to_out.0."),
    (r"\.ff\.proj\.", ".ff.net.0.proj."),
    (r"\.ff\.out\.", ".ff.net.2."),
    (r"\.proj_(in|out)\.(Linear|Conv)\.", ".proj_$1."),
];

/// The module names of a component's weights, mapped to their burn paths.
pub(crate) struct LayerNames {
    names: HashMap<String, Option<String>>,
}

impl LayerNames {
    /// The names of every weight in `paths` (burn paths ending in `.weight`) of `component`.
    pub(crate) fn new<'a>(
        component: LoraComponent,
        paths: impl Iterator<Item = &'a String>,
    ) -> Self {
        let rules: Vec<(Regex, &str)> = UNET
            .iter()
            .map(|(p, to)| (Regex::new(p).expect("valid name rule"), *to))
            .collect();
        let mut names: HashMap<String, Option<String>> = HashMap::new();
        let mut insert = |name: String, path: &String| {
            // Two weights under one name (never seen in the published models) resolve to
            // neither, so a file naming it fails instead of picking one.
            names
                .entry(name)
                .and_modify(|p| *p = p.take().filter(|p| p == path))
                .or_insert_with(|| Some(path.clone()));
        };
        for path in paths {
            let Some(module) = path.strip_suffix(".weight") else {
                continue;
            };
            let module = match component {
                LoraComponent::Unet => rules
                    .iter()
                    .fold(format!("{module}."), |m, (re, to)| {
                        re.replace_all(&m, *to).into_owned()
                    })
                    .trim_end_matches('.')
                    .to_string(),
                // transformers 4's `text_model.` prefix, which PEFT files and kohya names carry
                // (transformers 5 files do not: both spellings resolve).
                LoraComponent::TextEncoder => {
                    insert(module.to_string(), path);
                    format!("text_model.{module}")
                }
            };
            insert(module.replace('.', "_"), path);
            insert(module, path);
        }
        Self { names }
    }

    /// The burn path of a file's module name (dotted or underscored).
    pub(crate) fn resolve(&self, module: &str) -> Option<String> {
        self.names.get(module).cloned().flatten()
    }
}
