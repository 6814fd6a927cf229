//! Inpainting only the area around the hole ("only masked" in Automatic1111, diffusers'
//! `padding_mask_crop`, ComfyUI's crop-and-stitch): a box around the hole, with padding and
//! widened to the processing size's aspect, is resized to that size, inpainted and resized back
//! into the untouched original.

use hd_painter_core::{Filter, Image, Mask, Raster};

use crate::error::Result;

/// Where and at what size [`Inpainter::inpaint`](crate::Inpainter::inpaint) works when it
/// crops to the hole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropSettings {
    /// Pixels added around the hole's bounding box on every side (diffusers'
    /// `padding_mask_crop`), before the box is widened to `size`'s aspect.
    pub padding: u32,
    /// The `(width, height)` the box is resized to and inpainted at: the model's native size
    /// (512 x 512 for SD 1.5 and 2 inpainting, diffusers' default), or any other.
    pub size: (u32, u32),
    /// One box per hole (8-connected region of non-zero pixels), boxes that overlap merged,
    /// each inpainted on its own; `false` (the default, diffusers'): one box around every hole.
    pub each_hole: bool,
}

impl Default for CropSettings {
    /// 32 px of padding, inpainted at 512 x 512.
    fn default() -> Self {
        Self {
            padding: 32,
            size: (512, 512),
            each_hole: false,
        }
    }
}

/// A box `[x1, x2) x [y1, y2)` in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropBox {
    /// Left edge (inclusive).
    pub x1: u32,
    /// Top edge (inclusive).
    pub y1: u32,
    /// Right edge (exclusive).
    pub x2: u32,
    /// Bottom edge (exclusive).
    pub y2: u32,
}

impl CropBox {
    /// Width and height.
    pub fn size(&self) -> (u32, u32) {
        (self.x2 - self.x1, self.y2 - self.y1)
    }
}

/// The box diffusers' `VaeImageProcessor.get_crop_region(mask, width, height, pad)` finds: the
/// bounding box of every non-zero pixel, `padding` added on each side and clipped to the image,
/// then widened (or heightened) about its centre to the aspect of `size` and shifted back inside
/// the image (clipped where the image is too small). `None` for a mask without hole.
///
/// ```
/// use hd_painter_core::Mask;
/// use hd_painter_sampling::{CropBox, crop_region};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // A 10 x 4 hole at (50, 20) in a 200 x 100 image, 8 px of padding, a square model size.
/// let hole = Mask::from_luma8(200, 100, (0..200 * 100)
///     .map(|i| if (50..60).contains(&(i % 200)) && (20..24).contains(&(i / 200)) { 255 } else { 0 })
///     .collect())?;
/// let b = crop_region(&hole, 8, (512, 512)).unwrap();
/// assert_eq!(b, CropBox { x1: 42, y1: 9, x2: 68, y2: 35 });
/// assert_eq!(b.size(), (26, 26));
/// # Ok(())
/// # }
/// ```
pub fn crop_region(hole: &Mask, padding: u32, size: (u32, u32)) -> Option<CropBox> {
    let (w, h) = (hole.width() as i64, hole.height() as i64);
    let r = hole.raster();
    let col = |x: i64| (0..h).any(|y| r.get(x as usize, y as usize, 0) != 0);
    let row = |y: i64| (0..w).any(|x| r.get(x as usize, y as usize, 0) != 0);
    let left = (0..w).find(|&x| col(x))?;
    let right = (0..w).rev().find(|&x| col(x))? + 1;
    let top = (0..h).find(|&y| row(y))?;
    let bottom = (0..h).rev().find(|&y| row(y))? + 1;
    let pad = i64::from(padding);
    let (mut x1, mut y1) = ((left - pad).max(0), (top - pad).max(0));
    let (mut x2, mut y2) = ((right + pad).min(w), (bottom + pad).min(h));
    let ratio_crop = (x2 - x1) as f64 / (y2 - y1) as f64;
    let ratio_processing = f64::from(size.0) / f64::from(size.1);
    // Grows one axis about the centre to the processing aspect, then shifts it back inside.
    let widen = |lo: &mut i64, hi: &mut i64, desired: f64, limit: i64| {
        let diff = (desired - (*hi - *lo) as f64) as i64;
        *lo -= diff.div_euclid(2);
        *hi += diff - diff.div_euclid(2);
        if *hi >= limit {
            let over = *hi - limit;
            *hi -= over;
            *lo -= over;
        }
        if *lo < 0 {
            *hi -= *lo;
            *lo = 0;
        }
        *hi = (*hi).min(limit);
    };
    if ratio_crop > ratio_processing {
        widen(&mut y1, &mut y2, (x2 - x1) as f64 / ratio_processing, h);
    } else {
        widen(&mut x1, &mut x2, (y2 - y1) as f64 * ratio_processing, w);
    }
    Some(CropBox {
        x1: x1 as u32,
        y1: y1 as u32,
        x2: x2 as u32,
        y2: y2 as u32,
    })
}

/// The boxes [`Inpainter::inpaint`](crate::Inpainter::inpaint) works on for `hole` (any
/// non-zero pixel): one [`crop_region`] around all of it, or with `each_hole` one per
/// 8-connected region, regions whose boxes overlap grouped until no two boxes overlap, in
/// order of their first pixel (row by row).
pub fn crop_regions(hole: &Mask, settings: &CropSettings) -> Vec<CropBox> {
    let (padding, size) = (settings.padding, settings.size);
    if !settings.each_hole {
        return crop_region(hole, padding, size).into_iter().collect();
    }
    let (w, h) = (hole.width() as usize, hole.height() as usize);
    let mut groups: Vec<Vec<usize>> = regions(hole.raster().as_slice(), w, h);
    let group_box = |pixels: &[usize]| {
        let mut v = vec![0u8; w * h];
        for &p in pixels {
            v[p] = 255;
        }
        let m = Mask::from_luma8(w as u32, h as u32, v).expect("same size");
        crop_region(&m, padding, size).expect("a region is not empty")
    };
    let overlap =
        |a: &CropBox, b: &CropBox| a.x1 < b.x2 && b.x1 < a.x2 && a.y1 < b.y2 && b.y1 < a.y2;
    loop {
        let boxes: Vec<CropBox> = groups.iter().map(|g| group_box(g)).collect();
        let pair = (0..boxes.len())
            .flat_map(|i| (i + 1..boxes.len()).map(move |j| (i, j)))
            .find(|&(i, j)| overlap(&boxes[i], &boxes[j]));
        match pair {
            Some((i, j)) => {
                let merged = groups.remove(j);
                groups[i].extend(merged);
            }
            None => return boxes,
        }
    }
}

/// The 8-connected regions of non-zero values, each a list of pixel indices, in order of their
/// first pixel.
fn regions(values: &[u8], w: usize, h: usize) -> Vec<Vec<usize>> {
    let mut seen = vec![false; values.len()];
    let mut out = Vec::new();
    for start in 0..values.len() {
        if values[start] == 0 || seen[start] {
            continue;
        }
        seen[start] = true;
        let (mut region, mut stack) = (Vec::new(), vec![start]);
        while let Some(p) = stack.pop() {
            region.push(p);
            let (x, y) = ((p % w) as i64, (p / w) as i64);
            for (dx, dy) in [
                (-1, -1),
                (0, -1),
                (1, -1),
                (-1, 0),
                (1, 0),
                (-1, 1),
                (0, 1),
                (1, 1),
            ] {
                let (nx, ny) = (x + dx, y + dy);
                if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                    continue;
                }
                let q = ny as usize * w + nx as usize;
                if values[q] != 0 && !seen[q] {
                    seen[q] = true;
                    stack.push(q);
                }
            }
        }
        out.push(region);
    }
    out
}

/// The image and mask cropped to `b` and resized (bicubic) to `size`.
pub(crate) fn crop_inputs(
    image: &Image,
    mask: &Mask,
    b: CropBox,
    size: (u32, u32),
) -> Result<(Image, Mask)> {
    let (w, h) = b.size();
    let image = image.crop(b.x1, b.y1, w, h)?;
    let mask = mask.crop(b.x1, b.y1, w, h)?;
    if (w, h) == size {
        return Ok((image, mask));
    }
    Ok((
        image.resize(size.0, size.1, Filter::Bicubic)?,
        mask.resize(size.0, size.1, Filter::Bicubic)?,
    ))
}

/// `generated` (the crop's result) resized back (bicubic) to `b`'s size and placed into a copy
/// of `original`: outside the box the original exactly.
pub fn stitch(original: &Image, generated: &Image, b: CropBox) -> Result<Image> {
    let (w, h) = b.size();
    let back = if (generated.width(), generated.height()) == (w, h) {
        generated.clone()
    } else {
        generated.resize(w, h, Filter::Bicubic)?
    };
    let mut out = original.raster().as_slice().to_vec();
    let (row, box_row) = (original.width() as usize * 3, w as usize * 3);
    for (y, src) in back.raster().as_slice().chunks_exact(box_row).enumerate() {
        let start = (b.y1 as usize + y) * row + b.x1 as usize * 3;
        out[start..start + box_row].copy_from_slice(src);
    }
    let out = Raster::from_vec(original.width(), original.height(), 3, out)?;
    Ok(Image::from_raster(out)?)
}
