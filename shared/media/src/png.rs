//! PNG stills: single frames (a one-frame generation is an image) and per-frame dumps for
//! inspecting a clip.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use ::png::{BitDepth, ColorType, Compression, Encoder};

use crate::error::{Error, Result};
use crate::rgb::{Frame, FrameChunk};

/// Writes `frame` as an 8-bit RGB PNG.
pub fn write_png<W: Write>(sink: W, frame: &Frame<'_>) -> Result<()> {
    let side = |s: usize| u32::try_from(s).ok();
    let (Some(width), Some(height)) = (side(frame.width()), side(frame.height())) else {
        return Err(Error::UnsupportedSize {
            what: "PNG",
            width: frame.width(),
            height: frame.height(),
            limits: "each side at most 2^32 - 1",
        });
    };
    let mut encoder = Encoder::new(sink, width, height);
    encoder.set_color(ColorType::Rgb);
    encoder.set_depth(BitDepth::Eight);
    // Dumps are for inspection; the fast mode is several times quicker than the default for a
    // slightly larger file.
    encoder.set_compression(Compression::Fast);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&frame.to_rgb8())?;
    writer.finish()?;
    Ok(())
}

/// Writes each pushed frame to `dir/frame_NNNNN.png`, numbering across chunks from 0.
#[derive(Debug)]
pub struct PngFrameDump {
    dir: PathBuf,
    frames: usize,
}

impl PngFrameDump {
    /// Creates `dir` (and its parents) if missing.
    pub fn create(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        Ok(Self { dir, frames: 0 })
    }

    pub fn push(&mut self, chunk: &FrameChunk<'_>) -> Result<()> {
        for frame in chunk.frames() {
            let mut file = BufWriter::new(File::create(self.frame_path(self.frames))?);
            write_png(&mut file, &frame)?;
            file.flush()?;
            self.frames += 1;
        }
        Ok(())
    }

    pub fn frames_written(&self) -> usize {
        self.frames
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where frame `index` is (or will be) written.
    pub fn frame_path(&self, index: usize) -> PathBuf {
        self.dir.join(format!("frame_{index:05}.png"))
    }
}
