//! Animated GIF previews: small, universally viewable, 256 colours per frame.

use std::io::Write;

use ::gif::{Encoder, Frame as GifFrame, Repeat};

use crate::error::{Error, Result};
use crate::rgb::FrameChunk;

/// Preview settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GifConfig {
    /// Frames per second, in [1, 50]: delays are whole centiseconds, and browsers replace delays
    /// under 2 cs with 10 cs.
    pub fps: f64,
    /// Integer box-filter downscale of each side (1 = full size); a 832×480 clip at 4 gives a
    /// 208×120 preview.
    pub downscale: usize,
    /// NeuQuant sampling speed, 1 (best palette, slowest) to 30.
    pub quantizer_speed: i32,
}

impl Default for GifConfig {
    fn default() -> Self {
        Self {
            fps: 16.0,
            downscale: 1,
            quantizer_speed: 10,
        }
    }
}

/// Writes frames as a looping GIF, one [`FrameChunk`] at a time. Each frame gets its own
/// palette.
pub struct GifWriter<W: Write> {
    encoder: Encoder<W>,
    config: GifConfig,
    width: usize,
    height: usize,
    frames: u64,
}

impl<W: Write> GifWriter<W> {
    /// `width` and `height` are the input frame size; the GIF is that divided by
    /// `config.downscale`, rounded down. Writes the GIF header to `sink` at once.
    pub fn new(sink: W, width: usize, height: usize, config: GifConfig) -> Result<Self> {
        if !(1.0..=50.0).contains(&config.fps) {
            return Err(Error::invalid("fps", config.fps, "a number in [1, 50]"));
        }
        if config.downscale == 0 {
            return Err(Error::invalid("downscale", 0, "a factor of at least 1"));
        }
        if !(1..=30).contains(&config.quantizer_speed) {
            return Err(Error::invalid(
                "quantizer_speed",
                config.quantizer_speed,
                "an integer in 1..=30",
            ));
        }
        let (out_w, out_h) = (width / config.downscale, height / config.downscale);
        let side = |s: usize| u16::try_from(s).ok().filter(|&s| s > 0);
        let (Some(gif_w), Some(gif_h)) = (side(out_w), side(out_h)) else {
            return Err(Error::UnsupportedSize {
                what: "GIF (after downscaling)",
                width: out_w,
                height: out_h,
                limits: "each side 1..=65535",
            });
        };
        let mut encoder = Encoder::new(sink, gif_w, gif_h, &[])?;
        encoder.set_repeat(Repeat::Infinite)?;
        Ok(Self {
            encoder,
            config,
            width,
            height,
            frames: 0,
        })
    }

    /// Quantizes and writes every frame of `chunk`. The chunk's size must be the writer's.
    pub fn push(&mut self, chunk: &FrameChunk<'_>) -> Result<()> {
        if (chunk.width(), chunk.height()) != (self.width, self.height) {
            return Err(Error::SizeMismatch {
                width: self.width,
                height: self.height,
                got_width: chunk.width(),
                got_height: chunk.height(),
            });
        }
        let factor = self.config.downscale;
        let (w, h) = (self.width / factor, self.height / factor);
        for frame in chunk.frames() {
            let rgb = downscale(&frame.to_rgb8(), self.width, factor);
            // Sizes were checked against u16 in `new`.
            let mut gif_frame =
                GifFrame::from_rgb_speed(w as u16, h as u16, &rgb, self.config.quantizer_speed);
            gif_frame.delay = self.delay(self.frames);
            self.encoder.write_frame(&gif_frame)?;
            self.frames += 1;
        }
        Ok(())
    }

    pub fn frames_written(&self) -> u64 {
        self.frames
    }

    /// Writes the trailer, flushes and returns the sink.
    pub fn finish(self) -> Result<W> {
        if self.frames == 0 {
            return Err(Error::NoFrames);
        }
        let mut sink = self.encoder.into_inner()?;
        sink.flush()?;
        Ok(sink)
    }

    /// Delay of frame `index` in centiseconds. Rounding each frame's start time instead of the
    /// frame period keeps the total in step with the clock: 16 fps gives 6, 7, 6, 6, … cs.
    fn delay(&self, index: u64) -> u16 {
        let start = |i: u64| (i as f64 * 100.0 / self.config.fps).round();
        (start(index + 1) - start(index)) as u16
    }
}

/// Averages `factor × factor` blocks of an interleaved RGB8 image `width` pixels wide, dropping
/// edge pixels that do not fill a block.
fn downscale(rgb: &[u8], width: usize, factor: usize) -> Vec<u8> {
    if factor == 1 {
        return rgb.to_vec();
    }
    let height = rgb.len() / (3 * width);
    let (out_w, out_h) = (width / factor, height / factor);
    let area = (factor * factor) as u32;
    let mut out = Vec::with_capacity(out_w * out_h * 3);
    for oy in 0..out_h {
        for ox in 0..out_w {
            let mut sum = [0u32; 3];
            for y in oy * factor..(oy + 1) * factor {
                let row = &rgb[(y * width + ox * factor) * 3..][..factor * 3];
                for px in row.chunks_exact(3) {
                    for (s, &c) in sum.iter_mut().zip(px) {
                        *s += u32::from(c);
                    }
                }
            }
            out.extend(sum.map(|s| ((s + area / 2) / area) as u8));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downscale_averages_blocks_and_drops_the_ragged_edge() {
        // 5×2 grey image, values 0..10; factor 2 keeps the two full 2×2 blocks.
        let rgb: Vec<u8> = (0..10u8).flat_map(|v| [v * 10; 3]).collect();
        // Block 0: pixels 0, 1, 5, 6 → (0 + 10 + 50 + 60) / 4 = 30; block 1: 2, 3, 7, 8 → 50.
        assert_eq!(downscale(&rgb, 5, 2), [30, 30, 30, 50, 50, 50]);
    }

    #[test]
    fn delays_follow_the_clock() {
        let gif = GifWriter::new(Vec::new(), 16, 16, GifConfig::default()).unwrap();
        let delays: Vec<u16> = (0..16).map(|i| gif.delay(i)).collect();
        assert_eq!(delays.iter().map(|&d| u32::from(d)).sum::<u32>(), 100);
        assert_eq!(&delays[..4], [6, 7, 6, 6]);
    }

    #[test]
    fn bad_settings_are_errors() {
        let config = |fps, downscale, quantizer_speed| GifConfig {
            fps,
            downscale,
            quantizer_speed,
        };
        for bad in [config(0.0, 1, 10), config(16.0, 0, 10), config(16.0, 1, 31)] {
            assert!(matches!(
                GifWriter::new(Vec::new(), 16, 16, bad),
                Err(Error::InvalidParameter { .. })
            ));
        }
        assert!(matches!(
            GifWriter::new(Vec::new(), 3, 16, config(16.0, 4, 10)),
            Err(Error::UnsupportedSize { .. })
        ));
    }
}
