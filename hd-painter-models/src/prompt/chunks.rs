//! Weighted prompts of any length as Automatic1111 tokenizes them (its
//! `FrozenCLIPEmbedderWithCustomWordsBase.tokenize_line`): each segment tokenized on its own,
//! the tokens laid out in chunks of 75 between a start and an end token, a chunk that fills up
//! broken after its last comma when that comma is at most 20 tokens back (the reference's
//! default `comma_padding_backtrack`), `BREAK` starting a new chunk, and each chunk padded to
//! 77 ids: end-of-text ids, then, after the first end-of-text, the tokenizer's pad id (SD 2's
//! `!`; SD 1's pad is the end-of-text id itself).

use super::parse::Segment;
use crate::tokenizer::ClipTokenizer;

/// The prompt tokens of one chunk (the text encoder's 77 less the start and end tokens).
pub const CHUNK_TOKENS: usize = 75;

/// How far back (in tokens) a full chunk looks for a comma to break after.
const COMMA_BACKTRACK: usize = 20;

/// Where a position of the encoded sequence comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenOrigin {
    /// A chunk's start, end or padding token.
    Frame,
    /// A token of part `n` of the prompt (see [`WeightedTokens::new`]).
    Part(usize),
}

/// A prompt laid out in 77-id chunks, with the weight and origin of every position.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightedTokens {
    /// The ids, `77 * chunks` of them.
    pub ids: Vec<u32>,
    /// The weight of each position (1.0 for the frame tokens), as the reference's f64.
    pub weights: Vec<f64>,
    /// Where each position comes from.
    pub origins: Vec<TokenOrigin>,
}

/// One chunk being filled: (id, weight, origin) per token.
type Pending = Vec<(u32, f64, TokenOrigin)>;

impl WeightedTokens {
    /// Lays out `parts` (each a parsed prompt, e.g. the user's prompt and HD-Painter's positive
    /// prompt, one after the other as if concatenated) in chunks. At least one chunk, even for
    /// an empty prompt.
    pub fn new(tokenizer: &ClipTokenizer, parts: &[Vec<Segment>]) -> Self {
        let comma = tokenizer.token_id(",</w>");
        let mut out = Self {
            ids: Vec::new(),
            weights: Vec::new(),
            origins: Vec::new(),
        };
        let mut chunk: Pending = Vec::new();
        let mut last_comma: Option<usize> = None;
        for (part, segments) in parts.iter().enumerate() {
            for segment in segments {
                let (text, weight) = match segment {
                    Segment::Break => {
                        out.close(tokenizer, std::mem::take(&mut chunk));
                        last_comma = None;
                        continue;
                    }
                    Segment::Text { text, weight } => (text, *weight),
                };
                for id in tokenizer.tokens(text) {
                    if Some(id) == comma {
                        last_comma = Some(chunk.len());
                    } else if let Some(at) = last_comma.filter(|&at| {
                        chunk.len() == CHUNK_TOKENS && chunk.len() - at <= COMMA_BACKTRACK
                    }) {
                        let moved = chunk.split_off(at + 1);
                        out.close(tokenizer, std::mem::replace(&mut chunk, moved));
                        last_comma = None;
                    }
                    if chunk.len() == CHUNK_TOKENS {
                        out.close(tokenizer, std::mem::take(&mut chunk));
                        last_comma = None;
                    }
                    chunk.push((id, weight, TokenOrigin::Part(part)));
                }
            }
        }
        if !chunk.is_empty() || out.ids.is_empty() {
            out.close(tokenizer, chunk);
        }
        out
    }

    /// The number of 77-id chunks.
    pub fn chunks(&self) -> usize {
        self.ids.len() / (CHUNK_TOKENS + 2)
    }

    /// The positions whose tokens come from part `part`.
    pub fn positions_of(&self, part: usize) -> Vec<usize> {
        let origin = TokenOrigin::Part(part);
        (0..self.origins.len())
            .filter(|&i| self.origins[i] == origin)
            .collect()
    }

    /// The position of the end-of-text token that closes the prompt's last token (the first
    /// chunk's for a prompt without tokens).
    pub fn end_of_text(&self) -> usize {
        let last = self.origins.iter().rposition(|o| *o != TokenOrigin::Frame);
        last.map_or(1, |at| at + 1)
    }

    /// Appends `chunk` framed and padded to 77 ids.
    fn close(&mut self, tokenizer: &ClipTokenizer, chunk: Pending) {
        let frame = |id| (id, 1.0, TokenOrigin::Frame);
        let mut framed = vec![frame(tokenizer.bos_id())];
        let length = chunk.len();
        framed.extend(chunk);
        framed.extend((length..=CHUNK_TOKENS).map(|_| frame(tokenizer.eos_id())));
        // After the chunk's first end-of-text comes the pad id (the reference's
        // `process_tokens`).
        let first_end = framed
            .iter()
            .position(|t| t.0 == tokenizer.eos_id())
            .unwrap_or(framed.len());
        for token in &mut framed[first_end + 1..] {
            token.0 = tokenizer.pad_id();
        }
        for (id, weight, origin) in framed {
            self.ids.push(id);
            self.weights.push(weight);
            self.origins.push(origin);
        }
    }
}
