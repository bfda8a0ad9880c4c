//! Step previews: the clean estimate x̂₀ of a denoising step as a small RGB picture, one pixel
//! per latent position, without running the VAE.
//!
//! The 16 → 3 map is linear with a bias, applied to the normalized latents the DiT works in. A
//! least-squares fit of VAE-decoded pixels on latents would need real weights and real videos,
//! which a build does not have, so the coefficients are the ones ComfyUI ships for its Wan2.1
//! latent previews: `Wan21.latent_rgb_factors` and `latent_rgb_factors_bias` in
//! `comfy/latent_formats.py` (comfyanonymous/ComfyUI at commit 040a3243468e), used there the same
//! way — `rgb = bias + Σ_c x_c·F[c]` on `process_in` (normalized) latents, then `[-1, 1]` to 8 bits.
//! The tiny preset's seeded VAE is not Wan's, so its previews show structure only.

use turbine_samplers::Latent;

use crate::rgb::to_u8;
use crate::{Error, Result};

/// Latent channels the map expects (Wan2.1's VAE).
const CHANNELS: usize = 16;

/// `F[c] = [r, g, b]` contribution of latent channel `c`.
const LATENT_RGB: [[f32; 3]; CHANNELS] = [
    [-0.1299, -0.1692, 0.2932],
    [0.0671, 0.0406, 0.0442],
    [0.3568, 0.2548, 0.1747],
    [0.0372, 0.2344, 0.1420],
    [0.0313, 0.0189, -0.0328],
    [0.0296, -0.0956, -0.0665],
    [-0.3477, -0.4059, -0.2925],
    [0.0166, 0.1902, 0.1975],
    [-0.0412, 0.0267, -0.1364],
    [-0.1293, 0.0740, 0.1636],
    [0.0680, 0.3019, 0.1128],
    [0.0032, 0.0581, 0.0639],
    [-0.1251, 0.0927, 0.1699],
    [0.0060, -0.0633, 0.0005],
    [0.3477, 0.2275, 0.2950],
    [0.1984, 0.0913, 0.1861],
];
const LATENT_RGB_BIAS: [f32; 3] = [-0.1835, -0.0868, -0.3360];

/// A PNG picture of a step's estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    pub width: u32,
    pub height: u32,
    pub png: Vec<u8>,
}

/// Renders the middle latent frame of `[16, T, h, w]` as an `w × h` RGB PNG.
pub(crate) fn render_preview(latent: &Latent) -> Result<Preview> {
    let &[CHANNELS, frames, height, width] = latent.shape() else {
        return Err(Error::Assets(format!(
            "previews need [{CHANNELS}, T, h, w] latents (Wan2.1's VAE), got {:?}",
            latent.shape()
        )));
    };
    let plane = height * width;
    let frame = frames / 2;
    let data = latent.data();
    let mut rgb = Vec::with_capacity(3 * plane);
    for i in 0..plane {
        let mut pixel = LATENT_RGB_BIAS;
        for (c, factors) in LATENT_RGB.iter().enumerate() {
            let x = data[(c * frames + frame) * plane + i] as f32;
            for (p, f) in pixel.iter_mut().zip(factors) {
                *p += x * f;
            }
        }
        rgb.extend(pixel.map(to_u8));
    }
    let (width, height) = (side(width)?, side(height)?);
    let mut png = Vec::new();
    let mut encoder = png::Encoder::new(&mut png, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let encoded = encoder
        .write_header()
        .and_then(|mut w| w.write_image_data(&rgb).and_then(|()| w.finish()));
    encoded.map_err(|e| Error::Output(Box::new(e)))?;
    Ok(Preview { width, height, png })
}

fn side(n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::Assets(format!("preview side {n} exceeds u32")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(png_bytes: &[u8]) -> (png::OutputInfo, Vec<u8>) {
        let mut reader = png::Decoder::new(std::io::Cursor::new(png_bytes))
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info, buf)
    }

    #[test]
    fn middle_frame_through_the_factors() {
        // [16, 3, 1, 2]: frame 1 (the middle) has channel 2 = 1 at pixel 0, everything else 0;
        // other frames are large so reading the wrong frame shows.
        let shape = [CHANNELS, 3, 1, 2];
        let mut data = vec![5.0; CHANNELS * 3 * 2];
        for c in 0..CHANNELS {
            data[(c * 3 + 1) * 2] = 0.0;
            data[(c * 3 + 1) * 2 + 1] = 0.0;
        }
        data[(2 * 3 + 1) * 2] = 1.0;
        let preview = render_preview(&Latent::new(shape, data).unwrap()).unwrap();
        assert_eq!((preview.width, preview.height), (2, 1));
        let (info, pixels) = decode(&preview.png);
        assert_eq!((info.width, info.height), (2, 1));
        assert_eq!(info.color_type, png::ColorType::Rgb);
        let expect = |v: [f32; 3]| v.map(to_u8);
        let lit: [f32; 3] = std::array::from_fn(|k| LATENT_RGB_BIAS[k] + LATENT_RGB[2][k]);
        assert_eq!(pixels[..3], expect(lit));
        assert_eq!(pixels[3..], expect(LATENT_RGB_BIAS));
    }

    #[test]
    fn other_channel_counts_are_refused() {
        let latent = Latent::new([4, 1, 1, 1], vec![0.0; 4]).unwrap();
        assert!(render_preview(&latent).is_err());
    }
}
