//! A generation request, validated into typed values before any model runs.

use turbine_models::wan::AttentionMode;
use turbine_samplers::{DrawnAhead, SamplerConfig};

use crate::{Error, Result};

/// Spatial stride of the Wan2.1 VAE times the DiT's 2×2 patch: pixel sizes must be multiples.
pub const SIZE_MULTIPLE: u32 = 16;
/// Temporal stride of the VAE: a video is `1 + 4k` frames (`1 + k` latent frames).
pub const FRAME_STRIDE: u32 = 4;
/// Largest side accepted: 4096 px is 256 latent rows, far past any Wan training size, and keeps
/// a mistyped size from asking for terabytes.
pub const MAX_SIDE: u32 = 4096;
/// Longest video accepted (256 latent frames).
pub const MAX_FRAMES: u32 = 1 + FRAME_STRIDE * 255;

/// Size and length of a video in pixels and frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoShape {
    width: u32,
    height: u32,
    frames: u32,
}

impl VideoShape {
    pub fn new(width: u32, height: u32, frames: u32) -> Result<Self> {
        for (field, v) in [("width", width), ("height", height)] {
            if v == 0 || !v.is_multiple_of(SIZE_MULTIPLE) || v > MAX_SIDE {
                return Err(Error::invalid(
                    field,
                    format!(
                        "{v} must be a positive multiple of {SIZE_MULTIPLE}, at most {MAX_SIDE}"
                    ),
                ));
            }
        }
        if frames == 0 || !(frames - 1).is_multiple_of(FRAME_STRIDE) || frames > MAX_FRAMES {
            return Err(Error::invalid(
                "frames",
                format!("{frames} must be 4k+1 (1, 5, 9, ..., 81, ...), at most {MAX_FRAMES}"),
            ));
        }
        Ok(Self {
            width,
            height,
            frames,
        })
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// `[channels, 1 + (F−1)/4, H/8, W/8]`.
    pub fn latent_shape(&self, channels: usize) -> [usize; 4] {
        [
            channels,
            (1 + (self.frames - 1) / FRAME_STRIDE) as usize,
            (self.height / 8) as usize,
            (self.width / 8) as usize,
        ]
    }
}

/// Everything one text-to-video generation needs besides the models.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    pub prompt: String,
    /// The unconditional prompt of classifier-free guidance; unused by rCM (guidance is distilled
    /// in) and by guidance 1.
    pub negative_prompt: String,
    pub shape: VideoShape,
    pub seed: u64,
    pub sampler: SamplerConfig,
    pub attention: AttentionMode,
}

impl GenerateRequest {
    /// Whether the sampler evaluates the negative prompt.
    pub fn uses_negative_prompt(&self) -> bool {
        matches!(self.sampler, SamplerConfig::Flow(c) if c.guidance() != 1.0)
    }

    /// The noise of the request's seed for a DiT of `latent_channels`, its initial latent drawn
    /// from now on on a thread of its own, so that the work before sampling overlaps the draw.
    pub fn noise(&self, latent_channels: usize) -> DrawnAhead {
        DrawnAhead::new(self.seed, &self.shape.latent_shape(latent_channels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_validated_and_mapped_to_latents() {
        let s = VideoShape::new(832, 480, 81).unwrap();
        assert_eq!(s.latent_shape(16), [16, 21, 60, 104]);
        for (w, h, f, field) in [
            (830, 480, 81, "width"),
            (832, 0, 81, "height"),
            (832, 480, 80, "frames"),
            (832, 480, 0, "frames"),
            (8192, 480, 81, "width"),
        ] {
            match VideoShape::new(w, h, f) {
                Err(Error::InvalidRequest { field: got, .. }) => assert_eq!(got, field),
                other => panic!("{w}x{h}x{f}: {other:?}"),
            }
        }
    }
}
