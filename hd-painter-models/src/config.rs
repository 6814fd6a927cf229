//! Reading a component's `config.json` with errors that name the file, the key and the value.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{ModelsError, Result, read_text};

/// The largest integer a config may hold (widths, layer counts, vocabulary sizes): far above
/// every published model (SDXL's widest layer is 2048, CLIP's vocabulary 49408), and low enough
/// that a corrupt config is reported instead of sizing a model beyond any memory.
const MAX_CONFIG_INT: u64 = 1 << 20;

/// A parsed `config.json`.
pub(crate) struct ConfigFile {
    path: PathBuf,
    json: Value,
    /// The keys absent from the file that [`with_defaults`](Self::with_defaults) filled in.
    defaulted: Vec<String>,
}

impl ConfigFile {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let json: Value =
            serde_json::from_str(&read_text(path)?).map_err(|e| ModelsError::Malformed {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        if !json.is_object() {
            return Err(ModelsError::Malformed {
                path: path.to_path_buf(),
                reason: "a config must be a JSON object".into(),
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            json,
            defaulted: Vec::new(),
        })
    }

    /// A config already parsed, from `path`.
    pub(crate) fn from_json(path: &Path, json: Value) -> Self {
        Self {
            path: path.to_path_buf(),
            json,
            defaulted: Vec::new(),
        }
    }

    /// The file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The whole JSON object.
    pub(crate) fn json(&self) -> &Value {
        &self.json
    }

    /// This config with every key of `defaults` that the file lacks set to its default value:
    /// configs written by early diffusers and transformers versions omit most keys, which the
    /// libraries then take from the class's constructor. Keys present (`null` included) stay
    /// as written and are checked as usual.
    pub(crate) fn with_defaults(mut self, defaults: &Value) -> Self {
        let (Some(json), Some(defaults)) = (self.json.as_object_mut(), defaults.as_object()) else {
            return self;
        };
        for (key, value) in defaults {
            if !json.contains_key(key) {
                json.insert(key.clone(), value.clone());
                self.defaulted.push(key.clone());
            }
        }
        self
    }

    /// The keys [`with_defaults`](Self::with_defaults) filled in.
    pub(crate) fn defaulted(&self) -> &[String] {
        &self.defaulted
    }

    /// The object under `key` as a config of its own (same file), if `key` holds one.
    pub(crate) fn section(&self, key: &str) -> Option<Self> {
        self.json
            .get(key)
            .filter(|v| v.is_object())
            .map(|json| Self {
                path: self.path.clone(),
                json: json.clone(),
                defaulted: Vec::new(),
            })
    }

    /// An error for `key` holding something other than `expected`.
    pub(crate) fn unsupported(&self, key: &str, expected: &str) -> ModelsError {
        ModelsError::UnsupportedConfig {
            path: self.path.clone(),
            key: key.to_string(),
            value: self
                .json
                .get(key)
                .map_or_else(|| "missing".to_string(), Value::to_string),
            expected: expected.to_string(),
        }
    }

    /// An error for `key` holding `found` where one of `allowed` was expected (a value given
    /// outside the file, such as `model_index.json`'s class for a component's config).
    pub(crate) fn unsupported_value(
        &self,
        key: &str,
        found: &str,
        allowed: &[&str],
    ) -> ModelsError {
        ModelsError::UnsupportedConfig {
            path: self.path.clone(),
            key: key.to_string(),
            value: format!("{found:?}"),
            expected: format!("one of {allowed:?}"),
        }
    }

    /// The keys the file sets.
    pub(crate) fn keys(&self) -> Vec<String> {
        self.json
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// A required non-negative integer (at most [`MAX_CONFIG_INT`]).
    pub(crate) fn count(&self, key: &str) -> Result<usize> {
        self.json
            .get(key)
            .and_then(Value::as_u64)
            .filter(|v| *v <= MAX_CONFIG_INT)
            .map(|v| v as usize)
            .ok_or_else(|| self.unsupported(key, "an integer from 0 to 2^20"))
    }

    /// A required positive integer (at most [`MAX_CONFIG_INT`]).
    pub(crate) fn usize(&self, key: &str) -> Result<usize> {
        self.json
            .get(key)
            .and_then(positive)
            .ok_or_else(|| self.unsupported(key, "a positive integer up to 2^20"))
    }

    /// An optional number, `default` when absent.
    pub(crate) fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        match self.json.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| self.unsupported(key, "a number")),
        }
    }

    /// A required string, which must be one of `allowed`.
    pub(crate) fn one_of<'a>(&self, key: &str, allowed: &[&'a str]) -> Result<&'a str> {
        let value = self.json.get(key).and_then(Value::as_str);
        allowed
            .iter()
            .find(|a| Some(**a) == value)
            .copied()
            .ok_or_else(|| self.unsupported(key, &format!("one of {allowed:?}")))
    }

    /// An optional boolean, `default` when absent.
    pub(crate) fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.json.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.unsupported(key, "true or false")),
        }
    }

    /// A required non-empty list of positive integers.
    pub(crate) fn usize_list(&self, key: &str) -> Result<Vec<usize>> {
        let list = self.json.get(key).and_then(Value::as_array);
        list.filter(|l| !l.is_empty())
            .and_then(|l| l.iter().map(positive).collect::<Option<Vec<_>>>())
            .ok_or_else(|| {
                self.unsupported(key, "a non-empty list of positive integers up to 2^20")
            })
    }

    /// `block_out_channels`, with one down and one up block type per entry.
    pub(crate) fn levels(&self, down: usize, up: usize) -> Result<Vec<usize>> {
        let block_out_channels = self.usize_list("block_out_channels")?;
        if down != block_out_channels.len() || up != block_out_channels.len() {
            return Err(self.unsupported(
                "down_block_types",
                "one down and one up block per block_out_channels entry",
            ));
        }
        Ok(block_out_channels)
    }

    /// `norm_num_groups`, which must divide every one of `widths`.
    pub(crate) fn groups_dividing(&self, widths: &[usize]) -> Result<usize> {
        let groups = self.usize("norm_num_groups")?;
        if widths.iter().any(|c| c % groups != 0) {
            return Err(self.unsupported(
                "norm_num_groups",
                "a divisor of every block_out_channels entry",
            ));
        }
        Ok(groups)
    }

    /// A required non-empty list of strings, each one of `allowed`.
    pub(crate) fn str_list<'a>(&self, key: &str, allowed: &[&'a str]) -> Result<Vec<&'a str>> {
        let list = self.json.get(key).and_then(Value::as_array);
        list.filter(|l| !l.is_empty())
            .and_then(|l| {
                l.iter()
                    .map(|v| allowed.iter().find(|a| v.as_str() == Some(**a)).copied())
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| self.unsupported(key, &format!("a non-empty list of {allowed:?}")))
    }

    /// Fails unless `key` is absent, null, or equal to `expected`.
    pub(crate) fn require_default(&self, key: &str, expected: &Value) -> Result<()> {
        let same = |v: &Value| match (v.as_f64(), expected.as_f64()) {
            (Some(a), Some(b)) => a == b, // 1 and 1.0 are the same setting
            _ => v == expected,
        };
        match self.json.get(key) {
            None | Some(Value::Null) => Ok(()),
            Some(v) if same(v) => Ok(()),
            Some(_) => Err(self.unsupported(key, &format!("{expected} (or absent)"))),
        }
    }

    /// Whether `key` is absent or null.
    pub(crate) fn is_absent(&self, key: &str) -> bool {
        matches!(self.json.get(key), None | Some(Value::Null))
    }

    /// An optional positive integer, `default` when absent.
    pub(crate) fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        if self.is_absent(key) {
            Ok(default)
        } else {
            self.usize(key)
        }
    }

    /// A positive integer for every one of `n` levels: one number for all, or a list of `n`.
    pub(crate) fn usize_or_list(&self, key: &str, n: usize) -> Result<Vec<usize>> {
        match self.json.get(key) {
            Some(Value::Array(_)) => {
                let list = self.usize_list(key)?;
                if list.len() == n {
                    Ok(list)
                } else {
                    Err(self.unsupported(key, &format!("a number or a list of {n}")))
                }
            }
            _ => Ok(vec![self.usize(key)?; n]),
        }
    }

    /// A boolean for every one of `n` levels: one for all, a list of `n`, or `default`.
    pub(crate) fn bool_or_list(&self, key: &str, n: usize, default: bool) -> Result<Vec<bool>> {
        match self.json.get(key) {
            Some(Value::Array(list)) if list.len() == n => list
                .iter()
                .map(|v| v.as_bool())
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| self.unsupported(key, "booleans")),
            Some(Value::Array(_)) => {
                Err(self.unsupported(key, &format!("a boolean or a list of {n}")))
            }
            _ => Ok(vec![self.bool_or(key, default)?; n]),
        }
    }

    /// The raw value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        self.json.get(key)
    }
}

/// `v` as an integer in `1..=MAX_CONFIG_INT`.
fn positive(v: &Value) -> Option<usize> {
    v.as_u64()
        .filter(|v| (1..=MAX_CONFIG_INT).contains(v))
        .map(|v| v as usize)
}
