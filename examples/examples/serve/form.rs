//! A run's upload: the `multipart/form-data` body of `POST /api/runs`, checked and decoded.

use axum::extract::Multipart;
use axum::extract::multipart::MultipartError;
use hd_painter::{Image, Mask, MaskOptions, SchedulerKind};
use hd_painter_examples::MethodName;
use serde::{Deserialize, Serialize};

use crate::api::{ApiError, Offer};

/// A run's settings: the `settings` field, JSON. Unknown keys are refused; absent ones take the
/// method's defaults (HD-Painter's reference run, or BrushNet's with a branch).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Settings {
    /// What to paint in the hole.
    pub(crate) prompt: String,
    /// The negative prompt (the method's default when absent).
    pub(crate) negative_prompt: Option<String>,
    /// The method (the one the models fit when absent).
    pub(crate) method: Option<MethodName>,
    /// The first seed (random when absent, and reported).
    pub(crate) seed: Option<u64>,
    /// Images to make, one seed each.
    #[serde(default = "one")]
    pub(crate) num_images: usize,
    /// Sampling steps.
    pub(crate) steps: Option<usize>,
    /// Classifier-free guidance scale.
    pub(crate) guidance: Option<f64>,
    /// A scheduler's short name (`ddim`, `dpm++2m`, ...).
    pub(crate) scheduler: Option<String>,
    /// Karras sigmas for the scheduler.
    #[serde(default)]
    pub(crate) karras: bool,
    /// Inpaint only a box around the hole with this padding in pixels, at `crop_size`.
    pub(crate) crop_to_mask: Option<u32>,
    /// The `[width, height]` the crop is inpainted at (512 x 512 when absent).
    pub(crate) crop_size: Option<(u32, u32)>,
    /// Gaussian blur radius of the mask.
    #[serde(default)]
    pub(crate) mask_blur: f32,
    /// Pixels to grow the hole by (negative shrinks it).
    #[serde(default)]
    pub(crate) grow: i32,
    /// Blend the result through the mask's grey levels.
    #[serde(default)]
    pub(crate) soft_mask: bool,
    /// Run HD-Painter's SR stage after the first (needs the server's `--sr-model`).
    #[serde(default)]
    pub(crate) sr: bool,
    /// A preview of the predicted image every this many steps (0: none; the server's default
    /// when absent).
    pub(crate) preview_every: Option<usize>,
}

fn one() -> usize {
    1
}

/// The most images one run makes.
pub(crate) const MAX_IMAGES: usize = 4;

/// The most steps one run takes.
pub(crate) const MAX_STEPS: usize = 1000;

/// A checked upload, ready for the worker.
#[derive(Debug)]
pub(crate) struct Submission {
    pub(crate) image: Image,
    pub(crate) mask: Mask,
    pub(crate) settings: Settings,
    pub(crate) scheduler: Option<SchedulerKind>,
}

/// What the server accepts.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct Limits {
    /// The largest width or height of the image and the mask.
    pub(crate) max_side: u32,
    /// The largest request body.
    pub(crate) max_upload_bytes: usize,
}

/// The three fields, as uploaded: the files with their names.
#[derive(Default)]
pub(crate) struct Fields {
    image: Option<(String, Vec<u8>)>,
    mask: Option<(String, Vec<u8>)>,
    settings: Option<String>,
}

/// Reads the form's fields: `image` and `mask` (PNG, JPEG or WebP files; the mask white where
/// the image is to be filled, at the image's size) and `settings` (JSON, see [`Settings`]).
pub(crate) async fn read(mut form: Multipart) -> Result<Fields, ApiError> {
    let mut fields = Fields::default();
    while let Some(field) = form.next_field().await.map_err(upload_error)? {
        let name = field.name().unwrap_or_default().to_string();
        let file = field.file_name().unwrap_or(&name).to_string();
        let bytes = field.bytes().await.map_err(upload_error)?.to_vec();
        let twice = || ApiError::bad_request(format!("the form has two {name} fields"));
        match name.as_str() {
            "image" if fields.image.is_none() => fields.image = Some((file, bytes)),
            "mask" if fields.mask.is_none() => fields.mask = Some((file, bytes)),
            "settings" if fields.settings.is_none() => {
                let text = String::from_utf8(bytes)
                    .map_err(|_| ApiError::bad_request("the settings field is not UTF-8 text"))?;
                fields.settings = Some(text);
            }
            "image" | "mask" | "settings" => return Err(twice()),
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown form field {other:?}; expected image, mask and settings"
                )));
            }
        }
    }
    Ok(fields)
}

/// An upload error: 413 past the body limit, 400 otherwise, with multer's message.
fn upload_error(e: MultipartError) -> ApiError {
    ApiError::new(
        e.status(),
        format!("cannot read the upload: {}", e.body_text()),
    )
}

impl Fields {
    /// Decodes and checks everything before the run is queued: the settings against the
    /// methods the models fit, the files against the limits, the mask against the image.
    pub(crate) fn check(self, offer: &Offer) -> Result<Submission, ApiError> {
        let limits = offer.limits;
        let missing = |what: &str| ApiError::bad_request(format!("the form has no {what} field"));
        let settings = self.settings.ok_or_else(|| missing("settings"))?;
        let settings: Settings = serde_json::from_str(&settings)
            .map_err(|e| ApiError::bad_request(format!("settings: {e}")))?;
        let scheduler = check_settings(&settings, offer)?;
        let (image_name, image) = self.image.ok_or_else(|| missing("image"))?;
        let (mask_name, mask) = self.mask.ok_or_else(|| missing("mask"))?;
        let image = Image::decode(&image, &image_name, limits.max_side)?;
        let options = MaskOptions {
            max_side: limits.max_side,
            ..MaskOptions::default()
        };
        let mask = Mask::decode_with(&mask, &mask_name, options)?;
        mask.ensure_matches(&image, &format!("mask {mask_name} vs image {image_name}"))?;
        if mask.threshold(0).is_empty() {
            return Err(ApiError::bad_request(format!(
                "the mask {mask_name} marks no hole (it is black everywhere): paint the region \
                 to fill in white"
            )));
        }
        Ok(Submission {
            image,
            mask,
            settings,
            scheduler,
        })
    }
}

/// Checks the settings the library would only refuse once the run has the models, and parses
/// the scheduler's name.
fn check_settings(settings: &Settings, offer: &Offer) -> Result<Option<SchedulerKind>, ApiError> {
    let bad = |message: String| Err(ApiError::bad_request(message));
    let methods = &offer.methods;
    if settings.prompt.trim().is_empty() {
        return bad("the prompt is empty: say what to paint in the masked region".into());
    }
    if let Some(method) = settings.method
        && !methods.contains(&method)
    {
        let names: Vec<&str> = methods.iter().map(|m| m.name()).collect();
        return bad(format!(
            "method {} does not fit the loaded models; these do: {}",
            method.name(),
            names.join(", ")
        ));
    }
    if settings.sr && !offer.sr {
        return bad("sr: the server was started without --sr-model".into());
    }
    if !(1..=MAX_IMAGES).contains(&settings.num_images) {
        return bad(format!(
            "num_images = {}: expected 1 to {MAX_IMAGES}",
            settings.num_images
        ));
    }
    if let Some(steps) = settings.steps
        && !(1..=MAX_STEPS).contains(&steps)
    {
        return bad(format!("steps = {steps}: expected 1 to {MAX_STEPS}"));
    }
    if let Some(g) = settings.guidance
        && !(g.is_finite() && (0.0..=100.0).contains(&g))
    {
        return bad(format!("guidance = {g}: expected 0 to 100"));
    }
    if !(settings.mask_blur.is_finite() && (0.0..=256.0).contains(&settings.mask_blur)) {
        return bad(format!(
            "mask_blur = {}: expected 0 to 256",
            settings.mask_blur
        ));
    }
    // Edits larger than the image only cost time: a bound keeps a request from asking for it.
    let max = offer.limits.max_side;
    if settings.grow.unsigned_abs() > max {
        return bad(format!(
            "grow = {}: expected -{max} to {max}",
            settings.grow
        ));
    }
    if let Some(padding) = settings.crop_to_mask
        && padding > max
    {
        return bad(format!("crop_to_mask = {padding}: expected 0 to {max}"));
    }
    if let Some((w, h)) = settings.crop_size
        && (!(8..=max).contains(&w) || !(8..=max).contains(&h))
    {
        return bad(format!(
            "crop_size = [{w}, {h}]: expected sides of 8 to {max} px"
        ));
    }
    settings
        .scheduler
        .as_deref()
        .map(SchedulerKind::named)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("scheduler: {e}")))
}
