//! What the denoiser is conditioned on besides the latents: the text embeddings of a run.

use burn::tensor::Tensor;

/// Text embeddings: the prompt and, for classifier-free guidance, the negative prompt; each
/// `[1 or batch, tokens, dim]`; and which embedding positions are the prompt's own words.
#[derive(Clone, Debug)]
pub struct TextConditioning {
    /// The (positive) prompt's embedding.
    pub positive: Tensor<3>,
    /// The negative prompt's embedding (the empty prompt's for plain guidance).
    pub negative: Tensor<3>,
    /// The positions PAIntA and RASG attend to: the user prompt's tokens and the end-of-text
    /// token of the encoded prompt ([`crate::prompt_token_indices`]).
    pub prompt_tokens: Vec<usize>,
}
