//! Automatic1111's attention syntax (its `prompt_parser.parse_prompt_attention`): `(text)`
//! multiplies the weight of `text` by 1.1, `[text]` divides it by 1.1, `(text:1.3)` multiplies
//! it by 1.3, brackets nest, `\(` `\)` `\[` `\]` `\\` are literal characters, and `BREAK` ends a
//! 75-token chunk. Unclosed brackets weight the text up to the end; unmatched closing ones are
//! text. Weights are computed in f64 in the reference's order, so equal runs merge exactly
//! where the reference merges them (which decides what is tokenized together).

use std::sync::LazyLock;

use regex::Regex;

use crate::error::{ModelsError, Result};

/// A piece of a parsed prompt.
#[derive(Clone, Debug, PartialEq)]
pub enum Segment {
    /// Text with the weight its tokens' embeddings are multiplied by.
    Text {
        /// The text, brackets and escapes removed.
        text: String,
        /// The product of the enclosing brackets' multipliers (1.0 outside brackets).
        weight: f64,
    },
    /// `BREAK`: the text after it starts a new 75-token chunk.
    Break,
}

/// The reference's tokens of the syntax, in its order of alternatives.
static ATTENTION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\\\(|\\\)|\\\[|\\\]|\\\\|\\|\(|\[|:([+-]?[.\d]+)\)|\)|\]|[^\\()\[\]:]+|:")
        .expect("valid attention pattern")
});

/// `BREAK` as a whole word, with the whitespace around it.
static BREAK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\s*\bBREAK\b\s*").expect("valid BREAK pattern"));

const ROUND: f64 = 1.1;

/// The weighted segments of `prompt`, adjacent texts of equal weight merged; an empty prompt is
/// one empty text of weight 1. A weight that is not a number (`(cat:1.2.3)`) is an
/// [`ModelsError::Incompatible`] naming it (the reference raises there too).
pub fn parse_weighted(prompt: &str) -> Result<Vec<Segment>> {
    // (text, weight), with BREAK as weight -1 until the end, as the reference keeps it.
    let mut res: Vec<(String, f64)> = Vec::new();
    let (mut round, mut square) = (Vec::new(), Vec::new());
    let scale = |res: &mut Vec<(String, f64)>, from: usize, by: f64| {
        res[from..].iter_mut().for_each(|(_, w)| *w *= by);
    };
    for m in ATTENTION.captures_iter(prompt) {
        let token = m.get(0).map_or("", |t| t.as_str());
        let weight = m.get(1).map(|w| w.as_str());
        if let Some(literal) = token.strip_prefix('\\') {
            res.push((literal.to_string(), 1.0));
        } else if token == "(" {
            round.push(res.len());
        } else if token == "[" {
            square.push(res.len());
        } else if let (Some(weight), Some(from)) = (weight, round.last().copied()) {
            round.pop();
            let by = weight
                .parse::<f64>()
                .map_err(|_| ModelsError::Incompatible {
                    what: format!("the prompt {prompt:?}"),
                    reason: format!("the weight `{weight}` of `{token}` is not a number"),
                })?;
            scale(&mut res, from, by);
        } else if let (")", Some(from)) = (token, round.last().copied()) {
            round.pop();
            scale(&mut res, from, ROUND);
        } else if let ("]", Some(from)) = (token, square.last().copied()) {
            square.pop();
            scale(&mut res, from, 1.0 / ROUND);
        } else {
            for (i, part) in BREAK.split(token).enumerate() {
                if i > 0 {
                    res.push(("BREAK".into(), -1.0));
                }
                res.push((part.to_string(), 1.0));
            }
        }
    }
    for from in round {
        scale(&mut res, from, ROUND);
    }
    for from in square {
        scale(&mut res, from, 1.0 / ROUND);
    }
    if res.is_empty() {
        res.push((String::new(), 1.0));
    }
    let mut merged: Vec<(String, f64)> = Vec::with_capacity(res.len());
    for (text, weight) in res {
        match merged.last_mut() {
            Some((last, w)) if *w == weight => last.push_str(&text),
            _ => merged.push((text, weight)),
        }
    }
    Ok(merged
        .into_iter()
        .map(|(text, weight)| match (text.as_str(), weight) {
            ("BREAK", -1.0) => Segment::Break,
            _ => Segment::Text { text, weight },
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(prompt: &str) -> Vec<(String, f64)> {
        parse_weighted(prompt)
            .unwrap()
            .into_iter()
            .map(|s| match s {
                Segment::Text { text, weight } => (text, weight),
                Segment::Break => ("BREAK".into(), -1.0),
            })
            .collect()
    }

    fn pairs(expected: &[(&str, f64)]) -> Vec<(String, f64)> {
        expected.iter().map(|(t, w)| (t.to_string(), *w)).collect()
    }

    /// The examples of the reference's own docstring, with its printed weights.
    #[test]
    fn the_reference_docstring_examples_parse_as_documented() {
        assert_eq!(texts("normal text"), pairs(&[("normal text", 1.0)]));
        assert_eq!(
            texts("an (important) word"),
            pairs(&[("an ", 1.0), ("important", 1.1), (" word", 1.0)])
        );
        assert_eq!(texts("(unbalanced"), pairs(&[("unbalanced", 1.1)]));
        assert_eq!(texts(r"\(literal\]"), pairs(&[("(literal]", 1.0)]));
        assert_eq!(
            texts("(unnecessary)(parens)"),
            pairs(&[("unnecessaryparens", 1.1)])
        );
        assert_eq!(
            texts("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky)))."),
            pairs(&[
                ("a ", 1.0),
                ("house", 1.5730000000000004),
                (" ", 1.1),
                ("on", 1.0),
                (" a ", 1.1),
                ("hill", 0.55),
                (", sun, ", 1.1),
                ("sky", 1.4641000000000006),
                (".", 1.1),
            ])
        );
    }

    #[test]
    fn break_splits_and_empty_prompts_are_one_empty_text() {
        assert_eq!(
            texts("a cat BREAK a dog"),
            pairs(&[("a cat", 1.0), ("BREAK", -1.0), ("a dog", 1.0)])
        );
        assert_eq!(texts(""), pairs(&[("", 1.0)]));
        assert_eq!(texts("BREAKFAST"), pairs(&[("BREAKFAST", 1.0)]));
    }

    #[test]
    fn a_weight_that_is_not_a_number_is_an_error() {
        let err = parse_weighted("(cat:1.2.3)").unwrap_err().to_string();
        assert!(err.contains("1.2.3"), "{err}");
    }
}
