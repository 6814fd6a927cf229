//! Automatic1111's prompt syntax: attention weights (`(word:1.3)`, `(word)`, `[word]`,
//! escapes, `BREAK`) and prompts of any length in 77-token chunks, encoded as its
//! `FrozenCLIPEmbedderWithCustomWords` encodes them (see
//! [`StableDiffusionModels::encode_weighted`](crate::StableDiffusionModels::encode_weighted)).

mod chunks;
mod parse;

pub use chunks::{CHUNK_TOKENS, TokenOrigin, WeightedTokens};
pub use parse::{Segment, parse_weighted};
