//! PAIntA, HD-Painter's prompt-aware introverted attention, as an attention processor: the
//! self-attention of the hole attends less to known regions that do not match the prompt.

use burn::tensor::activation::softmax;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Tensor, TensorData};
use hd_painter_models::{
    AttentionKind, AttentionProcessor, AttentionSite, DEFAULT_SCORE_BUDGET,
    TransformerBlockContext, chunked_attention,
};

use crate::focus::{PromptFocus, conditional_rows};

/// The official smoothing of the prompt similarity: Attend-and-Excite's 3x3 "Gaussian" with
/// sigma 0.5 in its `exp(-((x - mean) / (2 sigma))^2)` form, i.e. the outer product of
/// `[0.211942, 0.576117, 0.211942]`, zero-padded.
fn smoothing_taps() -> [f32; 3] {
    const SIGMA: f32 = 0.5;
    // The neighbours sit one pixel from the centre.
    let side = (-(1.0 / (2.0 * SIGMA)).powi(2)).exp();
    let sum = 1.0 + 2.0 * side;
    [side / sum, 1.0 / sum, side / sum]
}

/// `s` `[images, 1, h, w]` convolved with the outer product of [`smoothing_taps`], zero-padded,
/// in `s`'s dtype (f16 / bf16 weights make every PAIntA tensor theirs).
fn smooth(s: Tensor<4>) -> Tensor<4> {
    let taps = smoothing_taps();
    let kernel: Vec<f32> = taps
        .iter()
        .flat_map(|a| taps.iter().map(move |b| a * b))
        .collect();
    let kernel =
        Tensor::<4>::from_data(TensorData::new(kernel, [1, 1, 3, 3]), &s.device()).cast(s.dtype());
    conv2d(s, kernel, None, ConvOptions::new([1, 1], [1, 1], [1, 1], 1))
}

/// `clip((s - median) / max, 0, 1)` per row of `[images, n]`, the median torch's (the lower of
/// the two middle values).
fn above_median(s: Tensor<2>) -> Tensor<2> {
    let [images, n] = s.dims();
    let middle = (n - 1) / 2;
    let median = s.clone().sort(1).slice([0..images, middle..middle + 1]);
    let max = s.clone().max_dim(1);
    ((s - median) / max).clamp(0.0, 1.0)
}

/// PAIntA, HD-Painter's prompt-aware introverted attention. At the self-attentions of the
/// transformer blocks on the latent/2 and latent/4 grids (SD's `down_blocks.1`,
/// `down_blocks.2`, `up_blocks.1`, `up_blocks.2`) and while `t > 500`, the logits of a hole query `i` and a known key `j` are
/// multiplied by the prompt similarity `s_j` of the key, computed from the block's own
/// cross-attention of the conditional half; both guidance halves use the same `s`. Every other
/// attention, and the unmodified self-attention PAIntA starts from, is the inner processor's.
pub struct Painta<'a> {
    inner: &'a mut dyn AttentionProcessor,
    focus: PromptFocus,
    guided: bool,
    /// Grid reductions (latent size / grid size) where PAIntA replaces self-attention.
    pub reductions: Vec<usize>,
    /// PAIntA runs while the timestep is above this (500 in the reference).
    pub until_timestep: f32,
    /// Score-matrix elements PAIntA's rescaled attention computes at once (the inner processor
    /// keeps its own budget).
    pub score_budget: usize,
    scales: Option<Vec<PaintaScale>>,
}

/// The prompt similarity `s` that PAIntA computed at one layer (recorded on request).
#[derive(Clone, Debug)]
pub struct PaintaScale {
    /// The self-attention's checkpoint path.
    pub path: String,
    /// The timestep of the call.
    pub timestep: f32,
    /// `s` per conditional image: `[images, height * width]`, in `[0, 1]`.
    pub scale: Tensor<2>,
}

impl<'a> Painta<'a> {
    /// PAIntA with the reference settings around `inner` (e.g. [`DefaultAttention`]).
    /// `guided`: whether the UNet batch is a classifier-free-guidance pair
    /// `[negative..., positive...]` (then `s` comes from the second half) or the conditional
    /// images alone.
    ///
    /// [`DefaultAttention`]: hd_painter_models::DefaultAttention
    pub fn new(focus: PromptFocus, guided: bool, inner: &'a mut dyn AttentionProcessor) -> Self {
        Self {
            inner,
            focus,
            guided,
            reductions: vec![2, 4],
            until_timestep: 500.0,
            score_budget: DEFAULT_SCORE_BUDGET,
            scales: None,
        }
    }

    /// Keeps every `s` it computes, for inspection ([`take_scales`](Self::take_scales)).
    pub fn recording_scales(mut self) -> Self {
        self.scales = Some(Vec::new());
        self
    }

    /// The `s` maps recorded since the last call, in call order.
    pub fn take_scales(&mut self) -> Vec<PaintaScale> {
        self.scales.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The focus it measures the prompt against.
    pub fn focus(&self) -> &PromptFocus {
        &self.focus
    }

    /// Whether PAIntA replaces this attention; the block it needs comes with it.
    fn block_of<'s>(&self, site: &AttentionSite<'s>) -> Option<&'s dyn TransformerBlockContext> {
        let t = site.timesteps.first().copied().unwrap_or(0.0);
        let on_grid = self
            .focus
            .reduction(site.height, site.width)
            .is_some_and(|r| self.reductions.contains(&r));
        (site.kind == AttentionKind::SelfAttention && on_grid && t > self.until_timestep)
            .then_some(site.block)
            .flatten()
    }

    /// `s`: the conditional half's cross-attention probabilities (block's own `attn2` on
    /// `norm2(x + y)`, mean over heads) summed over the prompt's tokens, smoothed, then
    /// `clip((s - median) / max, 0, 1)` per image. `[conditional images, tokens]`.
    fn prompt_similarity(
        &self,
        block: &dyn TransformerBlockContext,
        y: Tensor<3>,
        [h, w]: [usize; 2],
    ) -> Tensor<2> {
        let [b, n, c] = y.dims();
        let rows = conditional_rows(b, self.guided);
        let images = rows.len();
        let x = block.input().slice([rows.clone(), 0..n, 0..c]);
        let q = block.cross_queries(x + y.slice([rows.clone(), 0..n, 0..c]));
        let k = block.cross_keys();
        let [_, heads, tokens, d] = k.dims();
        let k = k.slice([rows, 0..heads, 0..tokens, 0..d]);
        let probs = softmax(q.matmul(k.swap_dims(2, 3)) / (d as f64).sqrt(), 3);
        let s = self
            .focus
            .prompt_columns(probs.mean_dim(1).reshape([images, n, tokens]))
            .sum_dim(2)
            .reshape([images, 1, h, w]);
        above_median(smooth(s).reshape([images, n]))
    }

    /// `softmax(S') v` with `S'_ij = s_j S_ij` for a hole query `i` and a known key `j`. Since the
    /// hole is 0 / 1, a hole query's logits are its plain logits against the keys scaled by
    /// `c_j = 1 - (1 - s_j)(1 - hole_j)`, so its rows are exact attention over `c ⊙ k` (the
    /// native kernel where it runs, with its own backward under RASG, and no score matrix kept),
    /// and a known query's rows are `plain`'s.
    fn rescaled_attention(
        &self,
        plain: Tensor<4>,
        [q, k, v]: [Tensor<4>; 3],
        s: Tensor<2>,
        hole: Tensor<1>,
    ) -> Tensor<4> {
        let [b, _, n, _] = q.dims();
        let n_k = k.dims()[2];
        let known = hole.clone().neg() + 1.0;
        let s_rows = if self.guided && s.dims()[0] * 2 == b {
            Tensor::cat(vec![s.clone(), s], 0)
        } else {
            s
        };
        // (1 - s_j)(1 - hole_j): how much a key's logits shrink for a hole query.
        let shrink = (s_rows.neg() + 1.0) * known.clone().reshape([1, n_k]);
        let key_scale = (shrink.neg() + 1.0).reshape([b, 1, n_k, 1]);
        let rescaled = chunked_attention(q, k * key_scale, v, self.score_budget);
        // Self-attention: the queries are the keys' tokens, so `known` marks the known queries.
        rescaled * hole.reshape([1, 1, n, 1]) + plain * known.reshape([1, 1, n, 1])
    }
}

impl AttentionProcessor for Painta<'_> {
    fn attend(
        &mut self,
        site: &AttentionSite<'_>,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
    ) -> Tensor<4> {
        let Some(block) = self.block_of(site) else {
            return self.inner.attend(site, q, k, v);
        };
        let plain = self.inner.attend(site, q.clone(), k.clone(), v.clone());
        let grid = [site.height, site.width];
        // Without both hole queries and known keys nothing is rescaled.
        let tokens = site.height * site.width;
        if !self
            .focus
            .hole_tokens(grid)
            .is_some_and(|h| h > 0 && h < tokens)
        {
            return plain;
        }
        let Some(hole) = self.focus.hole_at(grid, &q.device()) else {
            return plain;
        };
        let hole = hole.cast(q.dtype());
        let s = self.prompt_similarity(block, block.project_self_output(plain.clone()), grid);
        if let Some(scales) = self.scales.as_mut() {
            scales.push(PaintaScale {
                path: site.path.to_owned(),
                timestep: site.timesteps.first().copied().unwrap_or(0.0),
                scale: s.clone(),
            });
        }
        self.rescaled_attention(plain, [q, k, v], s, hole)
    }

    fn stop_gradient_after(&mut self, block: &str) -> bool {
        self.inner.stop_gradient_after(block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn the_smoothing_is_attend_and_excites_normalised_gaussian() {
        let taps = smoothing_taps();
        assert!((taps.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        for (got, want) in taps.iter().zip([0.211942, 0.576117, 0.211942]) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
        let device = hd_painter_core::BackendKind::default().device().unwrap();
        let mut delta = vec![0f32; 25];
        delta[12] = 1.0;
        let s = Tensor::<4>::from_data(TensorData::new(delta, [1, 1, 5, 5]), &device);
        let got = values(smooth(s));
        assert!(
            (got.iter().sum::<f32>() - 1.0).abs() < 1e-6,
            "mass kept away from the border"
        );
        assert!((got[12] - taps[1] * taps[1]).abs() < 1e-7);
        assert!(
            (got[6] - taps[0] * taps[0]).abs() < 1e-7,
            "a diagonal neighbour"
        );
        assert_eq!(got[0], 0.0, "two pixels away");
    }

    #[test]
    fn the_median_is_the_lower_middle_value() {
        let device = hd_painter_core::BackendKind::default().device().unwrap();
        let rows = vec![1.0, 4.0, 2.0, 3.0, 5.0, 5.0, 5.0, 10.0];
        let s = Tensor::<2>::from_data(TensorData::new(rows, [2, 4]), &device);
        // Medians 2 and 5 (torch's lower middle), maxima 4 and 10.
        let want = [0.0, 0.5, 0.0, 0.25, 0.0, 0.0, 0.0, 0.5];
        for (got, want) in values(above_median(s)).iter().zip(want) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
    }
}
