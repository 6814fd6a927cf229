//! The settings of a run checked at once, before any model is called: a step count of zero, a
//! guidance scale that is not a number or a strength outside `(0, 1]` would otherwise surface
//! only after the encoder ran (or as non-finite latents at step 1), or silently return the input.

use hd_painter_core::CoreError;

use crate::error::Result;
use crate::pipeline::{InpaintOptions, Method};
use crate::prefill::PreFill;
use crate::schedulers::SchedulerKind;

/// A typed error for `name` = `value` outside `expected`.
fn invalid(name: &'static str, value: impl ToString, expected: &'static str) -> CoreError {
    CoreError::InvalidParameter {
        name,
        value: value.to_string(),
        expected,
    }
}

/// `value` when `ok`, else the error naming it.
fn require(ok: bool, name: &'static str, value: f64, expected: &'static str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(invalid(name, value, expected).into())
    }
}

fn finite(name: &'static str, value: f64) -> Result<()> {
    require(value.is_finite(), name, value, "a finite number")
}

fn non_negative(name: &'static str, value: f64) -> Result<()> {
    require(
        value.is_finite() && value >= 0.0,
        name,
        value,
        "a finite number >= 0",
    )
}

fn at_least_one(name: &'static str, value: usize) -> Result<()> {
    if value >= 1 {
        Ok(())
    } else {
        Err(invalid(name, value, "at least 1").into())
    }
}

impl InpaintOptions {
    /// Checks every setting the method uses, each a [`CoreError::InvalidParameter`] naming the
    /// setting, the value and what is allowed: steps at least 1 (RePaint's jumps too), finite
    /// guidance scales, etas finite and `>= 0`, `strength` in `(0, 1]`, `denoising_end` in
    /// `(0, 1)` and not with RePaint, BrushNet's scale
    /// finite and its control window within `[0, 1]`, at least one seed, a crop-to-mask size of
    /// at least 8 x 8, a Telea or Navier-Stokes pre-fill radius of 1 to 100, RASG only with
    /// Stable Inpainting or Blended and DDIM, scheduler options that fit the scheduler.
    /// [`Inpainter::inpaint`](crate::Inpainter::inpaint) calls it first; callers can call it
    /// before loading anything.
    pub fn validate(&self) -> Result<()> {
        if self.seeds.is_empty() {
            return Err(invalid("seeds", "[]", "one seed per output image").into());
        }
        require(
            self.strength > 0.0 && self.strength <= 1.0,
            "strength",
            self.strength,
            "a number in (0, 1]",
        )?;
        if let Some(end) = self.denoising_end {
            require(
                end > 0.0 && end < 1.0,
                "denoising_end",
                end,
                "a fraction in (0, 1)",
            )?;
            if let Method::Repaint(_) = self.method {
                let expected = "a method on the sampler's grid (RePaint walks its own schedule)";
                return Err(invalid("denoising_end", "with RePaint", expected).into());
            }
        }
        if let Some(rasg) = self.hd_painter.and_then(|h| h.rasg) {
            non_negative("RASG eta", rasg.eta)?;
            let expected = "Stable Inpainting or Blended: RASG guides DDIM steps and \
                            differentiates the UNet alone";
            match self.method {
                Method::Repaint(_) => return Err(invalid("RASG", "with RePaint", expected).into()),
                Method::BrushNet(_) => {
                    return Err(invalid("RASG", "with BrushNet", expected).into());
                }
                Method::StableInpainting | Method::Blended => {}
            }
            if !matches!(self.sampler.scheduler.kind, SchedulerKind::Ddim { .. }) {
                let expected = "DDIMScheduler (RASG's term is defined on DDIM's update; PAIntA alone works with any)";
                let found = self.sampler.scheduler.kind.class_name();
                return Err(invalid("RASG scheduler", found, expected).into());
            }
        }
        if self.soft_mask {
            let fits = matches!(self.method, Method::Blended | Method::StableInpainting);
            if !fits || self.hd_painter.is_some() || self.strength != 1.0 {
                let value = format!(
                    "{} with strength {}{}",
                    self.method.name(),
                    self.strength,
                    if self.hd_painter.is_some() {
                        " and HD-Painter's parts"
                    } else {
                        ""
                    }
                );
                return Err(invalid(
                    "soft mask",
                    value,
                    "Blended or Stable Inpainting at strength 1, without HD-Painter's parts",
                )
                .into());
            }
        }
        if let Some(PreFill::Telea { radius } | PreFill::NavierStokes { radius }) = self.pre_fill
            && !(1..=100).contains(&radius)
        {
            return Err(invalid("pre-fill radius", radius, "1 to 100 pixels").into());
        }
        let blur = f64::from(self.mask_edit.blur);
        non_negative("mask blur radius", blur)?;
        if let Some(crop) = self.crop_to_mask {
            let (w, h) = crop.size;
            if w < 8 || h < 8 {
                let value = format!("{w}x{h}");
                return Err(invalid("crop-to-mask size", value, "at least 8x8 px").into());
            }
        }
        match &self.method {
            Method::Repaint(r) => {
                at_least_one("RePaint steps", r.steps)?;
                at_least_one("RePaint jump_length", r.jump_length)?;
                at_least_one("RePaint jump_n_sample", r.jump_n_sample)?;
                finite("RePaint guidance scale", r.guidance_scale)?;
                return non_negative("RePaint eta", r.eta);
            }
            Method::BrushNet(b) => {
                finite("BrushNet conditioning scale", b.conditioning_scale)?;
                require(
                    (0.0..=1.0).contains(&b.control_start),
                    "BrushNet control start",
                    b.control_start,
                    "a fraction in [0, 1], at most the control end",
                )?;
                require(
                    (b.control_start..=1.0).contains(&b.control_end),
                    "BrushNet control end",
                    b.control_end,
                    "a fraction in [0, 1], at least the control start",
                )?;
            }
            Method::StableInpainting | Method::Blended => {}
        }
        at_least_one("steps", self.sampler.steps)?;
        finite("guidance scale", self.sampler.guidance_scale)?;
        self.sampler.scheduler.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BrushNetSettings, HdPainter, RasgSettings, RepaintSettings, SamplingError};

    fn name_of(options: &InpaintOptions) -> Option<&'static str> {
        match options.validate() {
            Ok(()) => None,
            Err(SamplingError::Models(hd_painter_models::ModelsError::Core(
                CoreError::InvalidParameter { name, .. },
            ))) => Some(name),
            Err(other) => panic!("{other}"),
        }
    }

    #[test]
    fn the_presets_are_valid() {
        for options in [
            InpaintOptions::default(),
            InpaintOptions::hd_painter(HdPainter::full()),
            InpaintOptions::brushnet(BrushNetSettings::default()),
            InpaintOptions {
                method: Method::Repaint(RepaintSettings::default()),
                ..InpaintOptions::default()
            },
        ] {
            assert_eq!(name_of(&options), None, "{options:?}");
        }
    }

    #[test]
    fn each_bad_setting_is_named() {
        let base = InpaintOptions::default;
        let mut cases: Vec<(InpaintOptions, &str)> = Vec::new();
        let mut o = base();
        o.sampler.steps = 0;
        cases.push((o, "steps"));
        let mut o = base();
        o.sampler.guidance_scale = f64::NAN;
        cases.push((o, "guidance scale"));
        let mut o = base();
        o.sampler.scheduler.kind = crate::SchedulerKind::Ddim { eta: -0.5 };
        cases.push((o, "DDIM eta"));
        for strength in [0.0, 1.5, f64::NAN] {
            let mut o = base();
            o.strength = strength;
            cases.push((o, "strength"));
        }
        let mut o = base();
        o.seeds.clear();
        cases.push((o, "seeds"));
        for fill in [
            PreFill::Telea { radius: 0 },
            PreFill::NavierStokes { radius: 101 },
        ] {
            let mut o = base();
            o.pre_fill = Some(fill);
            cases.push((o, "pre-fill radius"));
        }
        let mut o = InpaintOptions::hd_painter(HdPainter {
            painta: true,
            rasg: Some(RasgSettings {
                eta: f64::INFINITY,
                ..RasgSettings::default()
            }),
        });
        o.sampler.steps = 3;
        cases.push((o, "RASG eta"));
        let repaint = |r: RepaintSettings| InpaintOptions {
            method: Method::Repaint(r),
            ..base()
        };
        let r = RepaintSettings::default;
        cases.push((
            repaint(RepaintSettings { steps: 0, ..r() }),
            "RePaint steps",
        ));
        cases.push((
            repaint(RepaintSettings {
                jump_length: 0,
                ..r()
            }),
            "RePaint jump_length",
        ));
        let brushnet = |b: BrushNetSettings| InpaintOptions::brushnet(b);
        let b = BrushNetSettings::default;
        cases.push((
            brushnet(BrushNetSettings {
                conditioning_scale: f64::NAN,
                ..b()
            }),
            "BrushNet conditioning scale",
        ));
        cases.push((
            brushnet(BrushNetSettings {
                control_start: 0.8,
                control_end: 0.2,
                ..b()
            }),
            "BrushNet control end",
        ));
        for (options, name) in cases {
            assert_eq!(name_of(&options), Some(name), "{options:?}");
        }
    }
}
