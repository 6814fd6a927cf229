//! RASG, HD-Painter's reweighting attention score guidance: each DDIM step adds the normalised
//! gradient, with respect to x_t, of how well the prompt's cross-attention matches the hole.

use burn::tensor::{FloatDType, Tensor};
use hd_painter_models::{AttentionKind, AttentionProcessor, AttentionSite};

use crate::error::{Result, SamplingError};
use crate::focus::{PromptFocus, conditional_rows};
use crate::guidance::{Guidance, Guided, ModelCall, StepTerm};
use crate::schedule::NoiseSchedule;
use crate::strategy::LatentStrategy;

/// The sigma RASG scales its gradient with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RasgSigma {
    /// The official code's: DDIM's formula with the *per-step* `a = 1 - beta`,
    /// `sqrt((1 - a[t']) / (1 - a[t]) (1 - a[t] / a[t']))` (about 0.01 - 0.02 on SD's schedule).
    #[default]
    Official,
    /// The paper's: DDIM's sigma with the cumulative `a_bar` ([`crate::ddim_sigma`]).
    Paper,
}

/// RASG's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RasgSettings {
    /// The gradient's scale relative to sigma: 0.1 (the official CLI and demo), 0.25 (the
    /// paper's evaluation).
    pub eta: f64,
    /// Which sigma.
    pub sigma: RasgSigma,
}

impl Default for RasgSettings {
    /// The official CLI's: eta 0.1, the official sigma.
    fn default() -> Self {
        Self {
            eta: 0.1,
            sigma: RasgSigma::Official,
        }
    }
}

impl RasgSettings {
    /// `eta * sigma_t` for the step `t -> t_prev`; 0 for the last step (`t_prev < 0`), whose
    /// sample HD-Painter does not use (the official code wraps around to `a[999]` there and
    /// gets NaN).
    pub fn scale(&self, schedule: &NoiseSchedule, t: usize, t_prev: isize) -> f64 {
        if t_prev < 0 {
            return 0.0;
        }
        let sigma = match self.sigma {
            RasgSigma::Paper => crate::ddim::ddim_sigma(schedule, t, t_prev),
            RasgSigma::Official => {
                let a = 1.0 - schedule.beta(t);
                let a_prev = 1.0 - schedule.beta(t_prev as usize);
                ((1.0 - a_prev) / (1.0 - a) * (1.0 - a / a_prev)).sqrt()
            }
        };
        self.eta * sigma
    }
}

/// RASG for one run: its settings and what the prompt should attend to.
#[derive(Clone, Debug)]
pub struct Rasg {
    /// eta and sigma.
    pub settings: RasgSettings,
    /// The prompt's tokens and the hole.
    pub focus: PromptFocus,
}

/// The score maps' grid: latent / 4 (SD's 16 x 16 at 512 px).
const SCORE_REDUCTION: usize = 4;

impl Rasg {
    /// The guided model output at `call.t` and RASG's gradient `g / std(g)` (per image) from
    /// the same forward pass, run on the autodiff device with the weights frozen. The gradient
    /// is `None` when the hole has no pixel at the score grid (nothing to guide towards; the
    /// step is then plain DDIM).
    pub fn output_and_gradient(
        &self,
        call: &ModelCall<'_>,
        strategy: &dyn LatentStrategy,
        latents: Tensor<4>,
        processor: &mut dyn AttentionProcessor,
    ) -> Result<(Tensor<4>, Option<Tensor<4>>)> {
        if call.residuals.is_some() {
            return Err(SamplingError::InvalidInput(
                "RASG differentiates the UNet alone; it does not compose with BrushNet".into(),
            ));
        }
        let [n, c, h, w] = latents.dims();
        let [lh, lw] = self.focus.latent();
        if [lh, lw] != [h, w] {
            return Err(SamplingError::InvalidInput(format!(
                "RASG focus for a {lh}x{lw} latent, sampling a {h}x{w} one"
            )));
        }
        let grid = [h / SCORE_REDUCTION, w / SCORE_REDUCTION];
        let Some(holes) = self.focus.hole_tokens(grid) else {
            return Err(SamplingError::InvalidInput(format!(
                "RASG's score grid is the latent/4 one; a {h}x{w} latent does not divide by 4"
            )));
        };
        if holes == 0 {
            let out = call.guided(
                call.input(strategy, latents),
                strategy.class_label(),
                processor,
            )?;
            return Ok((out, None));
        }
        let x = latents.autodiff().require_grad();
        let guided = call.guidance_scale != 1.0;
        let mut recorder = ScoreRecorder::new(processor, &self.focus, guided);
        let input = call.input(strategy, x.clone());
        let out = call.guided(input, strategy.class_label(), &mut recorder)?;
        let maps = recorder.mean_logits().ok_or_else(|| {
            SamplingError::InvalidInput(format!(
                "RASG needs cross-attention at the latent/4 grid {grid:?}; this UNet has none"
            ))
        })?;
        let hole = self
            .focus
            .hole_at(grid, &maps.device())
            .expect("the grid was checked above");
        let grads = score(maps, hole, &self.focus).backward();
        let g = x
            .grad(&grads)
            .ok_or_else(|| SamplingError::InvalidInput("RASG: no gradient reached x_t".into()))?;
        Ok((out.inner(), Some(normalise(g.inner(), [n, c * h * w]))))
    }
}

impl Guidance for Rasg {
    /// Classifier-free guidance with RASG's term: `eta sigma_t g` ([`RasgSettings::scale`]).
    fn predict(
        &self,
        call: &ModelCall<'_>,
        strategy: &dyn LatentStrategy,
        latents: Tensor<4>,
        processor: &mut dyn AttentionProcessor,
    ) -> Result<Guided> {
        let Some((t, t_prev)) = call.ddim else {
            return Err(SamplingError::InvalidInput(
                "RASG guides DDIM's update; the run's scheduler is not DDIM".into(),
            ));
        };
        let (output, gradient) = self.output_and_gradient(call, strategy, latents, processor)?;
        let term = gradient.map(|direction| StepTerm {
            scale: self.settings.scale(call.schedule, t, t_prev),
            direction,
        });
        Ok(Guided { output, term })
    }

    fn has_terms(&self) -> bool {
        true
    }
}

/// `g / std(g)` per image (unbiased, not centred on the image's own mean: `std` as torch's
/// `Tensor.std()`); an image whose gradient is constant gets zeros.
fn normalise(g: Tensor<4>, [n, len]: [usize; 2]) -> Tensor<4> {
    let dims = g.dims();
    let flat = g.reshape([n, len]);
    let std = flat.clone().var(1).sqrt();
    let usable = std.clone().greater_elem(0.0).float();
    (flat * usable / std.clamp_min(f32::MIN_POSITIVE)).reshape(dims)
}

/// The official `scores.bce`: `-sum_k mean_pixels BCEWithLogits(A_k - 1, M)` over the prompt's
/// tokens `k`, summed over images. `maps` `[images, pixels, text tokens]`, `hole` `[pixels]`.
/// Ascending it (RASG adds `+ eta sigma g`) pulls the prompt's attention into the hole and out of
/// the known region.
fn score(maps: Tensor<3>, hole: Tensor<1>, focus: &PromptFocus) -> Tensor<1> {
    let [_, pixels, _] = maps.dims();
    let a = focus.prompt_columns(maps) - 1.0;
    let m = hole.reshape([1, pixels, 1]);
    // Stable BCE with logits: max(a, 0) - a m + log(1 + exp(-|a|)).
    let bce = a.clone().clamp_min(0.0) - a.clone() * m + a.abs().neg().exp().log1p();
    bce.mean_dim(1).sum().neg()
}

/// Passes every attention to the inner processor and keeps the pre-softmax cross-attention
/// logits at the score grid (conditional half, mean over heads, summed over layers); tells the
/// UNet to stop recording gradients after the up block that holds the last of them.
struct ScoreRecorder<'a> {
    inner: &'a mut dyn AttentionProcessor,
    focus: &'a PromptFocus,
    guided: bool,
    sum: Option<Tensor<3>>,
    layers: usize,
    recorded_in_block: bool,
    stopped: bool,
}

impl<'a> ScoreRecorder<'a> {
    fn new(inner: &'a mut dyn AttentionProcessor, focus: &'a PromptFocus, guided: bool) -> Self {
        Self {
            inner,
            focus,
            guided,
            sum: None,
            layers: 0,
            recorded_in_block: false,
            stopped: false,
        }
    }

    /// The mean over layers, `[images, pixels, text tokens]`.
    fn mean_logits(self) -> Option<Tensor<3>> {
        let layers = self.layers as f64;
        self.sum.map(|s| s / layers)
    }
}

impl AttentionProcessor for ScoreRecorder<'_> {
    fn attend(
        &mut self,
        site: &AttentionSite<'_>,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
    ) -> Tensor<4> {
        if site.kind == AttentionKind::CrossAttention
            && self.focus.reduction(site.height, site.width) == Some(SCORE_REDUCTION)
        {
            let [b, heads, n, d] = q.dims();
            let tokens = k.dims()[2];
            let rows = conditional_rows(b, self.guided);
            let images = rows.len();
            let qc = q.clone().slice([rows.clone(), 0..heads, 0..n, 0..d]);
            let kc = k.clone().slice([rows, 0..heads, 0..tokens, 0..d]);
            // The score is computed in f32 whatever the UNet's weights are.
            let logits = (qc.matmul(kc.swap_dims(2, 3)) / (d as f64).sqrt())
                .mean_dim(1)
                .reshape([images, n, tokens])
                .cast(FloatDType::F32);
            self.sum = Some(match self.sum.take() {
                Some(s) => s + logits,
                None => logits,
            });
            self.layers += 1;
            self.recorded_in_block = true;
        }
        self.inner.attend(site, q, k, v)
    }

    fn stop_gradient_after(&mut self, block: &str) -> bool {
        let last_scores = !self.stopped && self.recorded_in_block && block.starts_with("up_blocks");
        self.recorded_in_block = false;
        self.stopped |= last_scores;
        let inner = self.inner.stop_gradient_after(block);
        last_scores || inner
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::TensorData;

    use super::*;

    #[test]
    fn the_gradient_is_divided_by_each_images_unbiased_std() {
        let device = hd_painter_core::BackendKind::default().device().unwrap();
        let g = vec![1.0, 2.0, 3.0, 4.0, 7.0, 7.0, 7.0, 7.0];
        let g = Tensor::<4>::from_data(TensorData::new(g, [2, 1, 2, 2]), &device);
        let got: Vec<f32> = normalise(g, [2, 4])
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        // std([1, 2, 3, 4], unbiased) = sqrt(5 / 3); a constant image gets zeros.
        let std = (5.0f32 / 3.0).sqrt();
        let want = [
            1.0 / std,
            2.0 / std,
            3.0 / std,
            4.0 / std,
            0.0,
            0.0,
            0.0,
            0.0,
        ];
        for (got, want) in got.iter().zip(want) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
    }

    #[test]
    fn the_score_is_minus_the_prompt_tokens_bce_and_rises_with_attention_in_the_hole() {
        let device = hd_painter_core::BackendKind::default().device().unwrap();
        let mask = hd_painter_core::Mask::from_luma8(16, 16, vec![255; 256]).unwrap();
        let focus = PromptFocus::new(vec![1, 2], &mask, [2, 2]).unwrap();
        // 4 pixels x 3 tokens; token 0 is not the prompt's and must not count.
        let maps = [
            0.3, 2.0, -1.0, //
            9.0, 0.5, 1.5, //
            -4.0, -0.2, 3.0, //
            1.0, 1.0, 0.0,
        ];
        let hole: [f32; 4] = [1.0, 0.0, 1.0, 0.0];
        let eval = |maps: &[f32]| -> f32 {
            let t = Tensor::<3>::from_data(TensorData::new(maps.to_vec(), [1, 4, 3]), &device);
            let h = Tensor::<1>::from_data(TensorData::new(hole.to_vec(), [4]), &device);
            score(t, h, &focus).into_scalar()
        };
        // BCE with logits x = A - 1 against the hole: -(m ln s(x) + (1 - m) ln(1 - s(x))).
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        let want: f64 = [1, 2]
            .iter()
            .map(|&k| {
                let bce = |p: usize| {
                    let (x, m) = (f64::from(maps[3 * p + k]) - 1.0, f64::from(hole[p]));
                    -(m * sigmoid(x).ln() + (1.0 - m) * (1.0 - sigmoid(x)).ln())
                };
                (0..4).map(bce).sum::<f64>() / 4.0
            })
            .sum::<f64>();
        let got = eval(&maps);
        assert!((f64::from(got) + want).abs() < 1e-5, "{got} vs {}", -want);
        // Ascending the score pulls a prompt token's attention into the hole, out of the rest.
        let bumped = |i: usize| {
            let mut m = maps;
            m[i] += 0.5;
            eval(&m)
        };
        assert!(
            bumped(3 + 1) < got,
            "a known pixel's prompt logit up: score down"
        );
        assert!(bumped(1) > got, "a hole pixel's prompt logit up: score up");
        assert_eq!(bumped(3), got, "a token outside the prompt does not count");
    }

    #[test]
    fn the_official_sigma_uses_the_per_step_alphas_and_the_last_step_none() {
        let schedule = NoiseSchedule::stable_diffusion();
        let settings = RasgSettings::default();
        let (a, a_prev) = (1.0 - schedule.beta(979), 1.0 - schedule.beta(959));
        let sigma = ((1.0 - a_prev) / (1.0 - a) * (1.0 - a / a_prev)).sqrt();
        assert!((settings.scale(&schedule, 979, 959) - 0.1 * sigma).abs() < 1e-15);
        assert_eq!(settings.scale(&schedule, 19, -1), 0.0);
        let paper = RasgSettings {
            sigma: RasgSigma::Paper,
            ..settings
        };
        let want = 0.1 * crate::ddim::ddim_sigma(&schedule, 979, 959);
        assert!((paper.scale(&schedule, 979, 959) - want).abs() < 1e-15);
    }
}
