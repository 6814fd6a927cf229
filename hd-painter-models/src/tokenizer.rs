//! The CLIP BPE tokenizer of Stable Diffusion, reading a diffusers `tokenizer/` folder
//! (`vocab.json`, `merges.txt`) and producing the ids transformers' `CLIPTokenizer` produces.
//!
//! Our own implementation rather than the `tokenizers` crate: the published SD folders carry no
//! `tokenizer.json` for that crate to load, the whole algorithm is a hundred lines over `regex`,
//! and it keeps the default build free of `tokenizers`' dependency tree. The steps follow
//! transformers' `CLIPTokenizer` exactly: special tokens (start, end, pad) are matched in the raw
//! text; each other
//! stretch is NFC-normalised, whitespace runs become one space, characters are lower-cased one
//! by one, the CLIP pattern splits it into words, each word's UTF-8 bytes are mapped to GPT-2's
//! printable byte alphabet, and BPE merges them by rank with `</w>` marking the word's end.

use std::collections::HashMap;
use std::path::Path;

use regex::Regex;
use unicode_normalization::UnicodeNormalization;

use crate::error::{ModelsError, Result, read_text};

/// The start-of-text token.
pub const BOS_TOKEN: &str = "<|startoftext|>";
/// The end-of-text token (also the padding token of SD 1.x).
pub const EOS_TOKEN: &str = "<|endoftext|>";
/// The context length of every SD text encoder.
pub const MAX_LENGTH: usize = 77;

/// A CLIP BPE tokenizer.
#[derive(Clone, Debug)]
pub struct ClipTokenizer {
    vocab: HashMap<String, u32>,
    tokens: Vec<String>,
    ranks: HashMap<(String, String), u32>,
    byte_chars: [char; 256],
    words: Regex,
    whitespace: Regex,
    /// Tokens matched in the raw text before normalisation: start, end and the pad token.
    specials: Vec<(String, u32)>,
    /// Added tokens (textual inversion), normalised, with the ids each stands for.
    added: Vec<(String, Vec<u32>)>,
    bos: u32,
    eos: u32,
    pad: u32,
    max_length: usize,
}

impl ClipTokenizer {
    /// Loads a diffusers `tokenizer/` folder: `vocab.json` and `merges.txt` (as published), or
    /// `tokenizer.json` (as transformers 5 saves it); the pad token and length from
    /// `special_tokens_map.json` / `tokenizer_config.json` when present (SD 1.x pads with
    /// `<|endoftext|>`, SD 2.x with `!`).
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let mut tokenizer =
            if !dir.join("vocab.json").exists() && dir.join("tokenizer.json").exists() {
                Self::from_tokenizer_json(dir.join("tokenizer.json"))?
            } else {
                Self::from_files(dir.join("vocab.json"), dir.join("merges.txt"))?
            };
        let config = read_json_if_present(&dir.join("tokenizer_config.json"))?;
        let special = read_json_if_present(&dir.join("special_tokens_map.json"))?;
        let pad = [&special, &config]
            .into_iter()
            .flatten()
            .find_map(|json| token_content(json.get("pad_token")?));
        if let Some(pad) = pad {
            tokenizer = tokenizer.with_pad_token(&pad)?;
        }
        if let Some(n) = config
            .as_ref()
            .and_then(|c| c.get("model_max_length")?.as_u64())
        {
            // Tokenizer configs store "no limit" as a huge number; SD's encoders take 77.
            if (2..=MAX_LENGTH as u64).contains(&n) {
                tokenizer.max_length = n as usize;
            }
        }
        Ok(tokenizer)
    }

    /// Loads `vocab.json` (token -> id) and `merges.txt` (one `left right` pair per line, by
    /// rank, after an optional `#version` header). Pads with `<|endoftext|>`.
    pub fn from_files(vocab: impl AsRef<Path>, merges: impl AsRef<Path>) -> Result<Self> {
        let (vocab_path, merges_path) = (vocab.as_ref(), merges.as_ref());
        let json: serde_json::Value = serde_json::from_str(&read_text(vocab_path)?)
            .map_err(|e| malformed(vocab_path, e.to_string()))?;
        let vocab = parse_vocab(&json, vocab_path)?;
        let mut pairs = Vec::new();
        for (line_no, line) in read_text(merges_path)?.lines().enumerate() {
            if line.is_empty() || (line_no == 0 && line.starts_with("#version")) {
                continue;
            }
            let (left, right) = line
                .split_once(' ')
                .filter(|(_, r)| !r.contains(' '))
                .ok_or_else(|| {
                    malformed(
                        merges_path,
                        format!("line {}: {line:?} is not a `left right` pair", line_no + 1),
                    )
                })?;
            pairs.push((left.to_string(), right.to_string()));
        }
        Self::from_parts(vocab, pairs, vocab_path)
    }

    /// Loads the BPE model of a `tokenizers` `tokenizer.json` (`model.vocab`, `model.merges` as
    /// `[left, right]` pairs or `"left right"` strings). Pads with `<|endoftext|>`.
    pub fn from_tokenizer_json(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let json: serde_json::Value =
            serde_json::from_str(&read_text(path)?).map_err(|e| malformed(path, e.to_string()))?;
        let model = json
            .get("model")
            .ok_or_else(|| malformed(path, "no `model` section".into()))?;
        if model.get("type").and_then(|t| t.as_str()) != Some("BPE") {
            return Err(malformed(path, "`model.type` is not \"BPE\"".into()));
        }
        let vocab = parse_vocab(model.get("vocab").unwrap_or(&serde_json::Value::Null), path)?;
        let merges = model
            .get("merges")
            .and_then(|m| m.as_array())
            .ok_or_else(|| malformed(path, "no `model.merges` list".into()))?;
        let pairs = merges
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let pair = match m {
                    serde_json::Value::String(s) => s
                        .split_once(' ')
                        .map(|(l, r)| (l.to_string(), r.to_string())),
                    serde_json::Value::Array(a) if a.len() == 2 => a[0]
                        .as_str()
                        .zip(a[1].as_str())
                        .map(|(l, r)| (l.to_string(), r.to_string())),
                    _ => None,
                };
                pair.ok_or_else(|| malformed(path, format!("merge {i}: {m} is not a pair")))
            })
            .collect::<Result<Vec<_>>>()?;
        Self::from_parts(vocab, pairs, path)
    }

    fn from_parts(
        vocab: HashMap<String, u32>,
        pairs: Vec<(String, String)>,
        vocab_path: &Path,
    ) -> Result<Self> {
        let mut tokens = vec![String::new(); vocab.values().max().map_or(0, |&m| m as usize + 1)];
        for (token, &id) in &vocab {
            tokens[id as usize] = token.clone();
        }
        let mut ranks = HashMap::with_capacity(pairs.len());
        for pair in pairs {
            let rank = ranks.len() as u32;
            ranks.entry(pair).or_insert(rank);
        }
        let id_of = |token: &str| {
            vocab
                .get(token)
                .copied()
                .ok_or_else(|| malformed(vocab_path, format!("the vocabulary lacks {token}")))
        };
        let (bos, eos) = (id_of(BOS_TOKEN)?, id_of(EOS_TOKEN)?);
        Ok(Self {
            byte_chars: byte_alphabet(),
            words: Regex::new(
                r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
            )
            .expect("valid CLIP pattern"),
            whitespace: Regex::new(r"\s+").expect("valid pattern"),
            vocab,
            tokens,
            ranks,
            specials: vec![(BOS_TOKEN.to_string(), bos), (EOS_TOKEN.to_string(), eos)],
            added: Vec::new(),
            bos,
            eos,
            pad: eos,
            max_length: MAX_LENGTH,
        })
    }

    /// Pads with `token` instead (it must be in the vocabulary). Like every special token in
    /// transformers, the pad token is then also matched as a whole in the raw text: with SD 2.x's
    /// `!`, a prompt's `"!!!"` becomes three pad ids, exactly as diffusers' pipelines encode it.
    pub fn with_pad_token(mut self, token: &str) -> Result<Self> {
        self.pad = *self
            .vocab
            .get(token)
            .ok_or_else(|| ModelsError::Incompatible {
                what: "the tokenizer's pad token".into(),
                reason: format!("the pad token {token:?} is not in the vocabulary"),
            })?;
        self.specials.truncate(2);
        if !self.specials.iter().any(|(s, _)| s == token) {
            self.specials.push((token.to_string(), self.pad));
        }
        Ok(self)
    }

    /// The id of `<|startoftext|>`.
    pub fn bos_id(&self) -> u32 {
        self.bos
    }

    /// The id of `<|endoftext|>`.
    pub fn eos_id(&self) -> u32 {
        self.eos
    }

    /// The padding id.
    pub fn pad_id(&self) -> u32 {
        self.pad
    }

    /// The model's context length (77).
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// The number of ids (the largest id + 1).
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The token string of an id (`</w>` marks a word end), if the id exists.
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The id of a token string (`</w>` marks a word end), if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.vocab.get(token).copied()
    }

    /// `<|startoftext|>`, the text's tokens, `<|endoftext|>`: no truncation, no padding.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = vec![self.bos];
        ids.extend(self.tokens(text));
        ids.push(self.eos);
        ids
    }

    /// The text's tokens alone (transformers' `add_special_tokens=False`); special tokens
    /// written in the text are still recognised.
    pub fn tokens(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        let mut rest = text;
        // Special tokens are recognised in the raw text, before any normalisation.
        while let Some((at, len, id)) = self.next_special(rest) {
            self.encode_plain(&rest[..at], &mut ids);
            ids.push(id);
            rest = &rest[at + len..];
        }
        self.encode_plain(rest, &mut ids);
        ids
    }

    /// The UNet's text input: [`encode`](Self::encode) truncated to the context length (keeping
    /// `<|endoftext|>` last) and padded with the pad id.
    pub fn encode_padded(&self, text: &str) -> Vec<u32> {
        let mut ids = self.encode(text);
        if ids.len() > self.max_length {
            ids.truncate(self.max_length - 1);
            ids.push(self.eos);
        }
        ids.resize(self.max_length, self.pad);
        ids
    }

    /// The first special token in `text`: its byte offset, byte length and id (the longest
    /// one where two start at the same place).
    fn next_special(&self, text: &str) -> Option<(usize, usize, u32)> {
        self.specials
            .iter()
            .filter_map(|(s, id)| text.find(s.as_str()).map(|at| (at, s.len(), *id)))
            .min_by_key(|&(at, len, _)| (at, std::cmp::Reverse(len)))
    }

    /// NFC, whitespace runs to one space, lower case character by character (as the
    /// `tokenizers` normaliser does: no final-sigma rule).
    fn normalize(&self, text: &str) -> String {
        let nfc: String = text.nfc().collect();
        let spaced = self.whitespace.replace_all(&nfc, " ");
        spaced.chars().flat_map(char::to_lowercase).collect()
    }

    fn encode_plain(&self, text: &str, ids: &mut Vec<u32>) {
        let text = self.normalize(text);
        let mut rest = text.as_str();
        // Added tokens are matched in the normalised text (transformers adds them with
        // `normalized=True`): the leftmost, then the longest.
        while let Some((at, len, expansion)) = self
            .added
            .iter()
            .filter_map(|(t, ids)| rest.find(t.as_str()).map(|at| (at, t.len(), ids)))
            .min_by_key(|&(at, len, _)| (at, std::cmp::Reverse(len)))
        {
            self.encode_words(&rest[..at], ids);
            ids.extend(expansion);
            rest = &rest[at + len..];
        }
        self.encode_words(rest, ids);
    }

    /// Adds `token` (matched as a whole in the normalised text) with new ids: one, or `vectors`
    /// of them for a multi-vector token, which then also adds `{token}_1` ... as single ids,
    /// as diffusers' `load_textual_inversion` names them. Returns the new ids; a token or one
    /// of its names already in the vocabulary is [`ModelsError::Incompatible`].
    pub(crate) fn add_token(&mut self, token: &str, vectors: usize) -> Result<Vec<u32>> {
        let names: Vec<String> = (0..vectors.max(1))
            .map(|i| {
                if i == 0 {
                    token.to_string()
                } else {
                    format!("{token}_{i}")
                }
            })
            .collect();
        let normalized: Vec<String> = names.iter().map(|n| self.normalize(n)).collect();
        let taken = names.iter().zip(&normalized).find(|(name, norm)| {
            self.vocab.contains_key(name.as_str()) || self.added.iter().any(|(t, _)| t == *norm)
        });
        if token.trim().is_empty() || taken.is_some() {
            let name = taken.map_or(token, |(name, _)| name.as_str());
            return Err(ModelsError::Incompatible {
                what: format!("adding the token {name:?} to the tokenizer"),
                reason: "it is blank or already in the vocabulary: choose another token name"
                    .into(),
            });
        }
        let first = self.tokens.len() as u32;
        let ids: Vec<u32> = (first..first + names.len() as u32).collect();
        for ((name, norm), &id) in names.iter().zip(normalized).zip(&ids) {
            self.vocab.insert(name.clone(), id);
            self.tokens.push(name.clone());
            let expansion = if id == first { ids.clone() } else { vec![id] };
            self.added.push((norm, expansion));
        }
        Ok(ids)
    }

    fn encode_words(&self, lower: &str, ids: &mut Vec<u32>) {
        for word in self.words.find_iter(lower) {
            let bytes: Vec<String> = word
                .as_str()
                .bytes()
                .map(|b| self.byte_chars[b as usize].to_string())
                .collect();
            for symbol in self.bpe(bytes) {
                ids.push(self.vocab.get(&symbol).copied().unwrap_or(self.eos));
            }
        }
    }

    /// Merges the word's symbols pair by pair, lowest rank first, until no pair has a rank.
    fn bpe(&self, mut symbols: Vec<String>) -> Vec<String> {
        if let Some(last) = symbols.last_mut() {
            last.push_str("</w>");
        }
        loop {
            let best = symbols
                .windows(2)
                .enumerate()
                .filter_map(|(i, pair)| {
                    self.ranks
                        .get(&(pair[0].clone(), pair[1].clone()))
                        .map(|&rank| (rank, i))
                })
                .min();
            let Some((rank, _)) = best else { break };
            // Merge every occurrence of that pair, left to right, as BPE does.
            let mut merged = Vec::with_capacity(symbols.len());
            let mut i = 0;
            while i < symbols.len() {
                if i + 1 < symbols.len()
                    && self
                        .ranks
                        .get(&(symbols[i].clone(), symbols[i + 1].clone()))
                        == Some(&rank)
                {
                    merged.push(format!("{}{}", symbols[i], symbols[i + 1]));
                    i += 2;
                } else {
                    merged.push(std::mem::take(&mut symbols[i]));
                    i += 1;
                }
            }
            symbols = merged;
        }
        symbols
    }
}

/// GPT-2's reversible byte -> printable character table: printable Latin-1 bytes map to
/// themselves, the others to code points from U+0100 on, in byte order.
fn byte_alphabet() -> [char; 256] {
    let printable = |b: u32| {
        (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
    };
    let mut table = ['\0'; 256];
    let mut next = 256;
    for b in 0..256u32 {
        table[b as usize] = if printable(b) {
            char::from_u32(b).expect("Latin-1")
        } else {
            next += 1;
            char::from_u32(next - 1).expect("valid code point")
        };
    }
    table
}

fn malformed(path: &Path, reason: String) -> ModelsError {
    ModelsError::Malformed {
        path: path.to_path_buf(),
        reason,
    }
}

/// A `{token: id}` object.
fn parse_vocab(json: &serde_json::Value, path: &Path) -> Result<HashMap<String, u32>> {
    let entries = json
        .as_object()
        .ok_or_else(|| malformed(path, "expected a JSON object of token -> id".into()))?;
    entries
        .iter()
        .map(|(token, id)| {
            let id = id
                .as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .ok_or_else(|| {
                    malformed(
                        path,
                        format!("token {token:?} has id {id}, expected an integer"),
                    )
                })?;
            Ok((token.clone(), id))
        })
        .collect()
}

fn read_json_if_present(path: &Path) -> Result<Option<serde_json::Value>> {
    if !path.exists() {
        return Ok(None);
    }
    serde_json::from_str(&read_text(path)?)
        .map(Some)
        .map_err(|e| ModelsError::Malformed {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

/// A special-token entry: either the token string or `{"content": "..."}`.
fn token_content(value: &serde_json::Value) -> Option<String> {
    value
        .as_str()
        .or_else(|| value.get("content")?.as_str())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both merge formats of `tokenizer.json` apply: "ab" is the one word `a`, `b</w>`, merged.
    #[test]
    fn tokenizer_json_merges_in_either_format_apply() {
        let dir = std::env::temp_dir().join(format!("hd-painter-tokjson-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let vocab =
            r#"{"a":0,"b":1,"a</w>":2,"b</w>":3,"ab</w>":4,"<|startoftext|>":5,"<|endoftext|>":6}"#;
        for merges in [r#"[["a","b</w>"]]"#, r#"["a b</w>"]"#] {
            let json = format!(r#"{{"model":{{"type":"BPE","vocab":{vocab},"merges":{merges}}}}}"#);
            let path = dir.join("tokenizer.json");
            std::fs::write(&path, json).unwrap();
            let t = ClipTokenizer::from_tokenizer_json(&path).unwrap();
            assert_eq!(t.encode("ab"), [5, 4, 6], "{merges}");
            assert_eq!(t.encode("ba"), [5, 1, 2, 6], "{merges}");
        }
        std::fs::write(
            dir.join("tokenizer.json"),
            r#"{"model":{"type":"WordPiece"}}"#,
        )
        .unwrap();
        assert!(matches!(
            ClipTokenizer::from_tokenizer_json(dir.join("tokenizer.json")),
            Err(ModelsError::Malformed { .. })
        ));
    }

    #[test]
    fn byte_alphabet_is_a_bijection_onto_printable_characters() {
        let table = byte_alphabet();
        let mut seen: Vec<char> = table.to_vec();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 256);
        assert_eq!(table[b'a' as usize], 'a');
        assert_eq!(table[b' ' as usize], 'Ġ');
        assert!(table.iter().all(|c| !c.is_whitespace() && !c.is_control()));
    }
}
