//! H.264 in MP4: OpenH264 (built from source) encodes, muxide muxes.
//!
//! OpenH264 produces Constrained Baseline only (no B-frames), so samples are muxed in decode
//! order with PTS = DTS = `index / fps`. muxide keeps every encoded sample in memory and writes the
//! whole file at [`Mp4Writer::finish`] with `moov` first (fast start), which is why the sink only
//! needs [`Write`]; the memory held is the encoded size (a few hundred KB for a Wan clip).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::raw::c_int;
use std::path::Path;
use std::time::Duration;

use muxide::api::{Muxer, MuxerBuilder, VideoCodec};
use openh264::OpenH264API;
use openh264::encoder::{
    BitRate, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, RateControlMode,
    VuiConfig,
};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::rgb::{FrameChunk, Yuv420};

/// Smallest width and height OpenH264 encodes (`EncodeFrameInternal` rejects anything under 16).
pub const MIN_SIDE: usize = 16;
/// OpenH264's limit for the longer side; the shorter one is limited to [`MAX_SHORT_SIDE`].
pub const MAX_LONG_SIDE: usize = 3840;
pub const MAX_SHORT_SIDE: usize = 2160;

/// Encoding settings. The defaults suit Wan output: 16 fps (Wan 2.1's rate), quality-first rate
/// control at [`auto_bitrate`], a seek point every 32 frames (2 s at 16 fps).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mp4Config {
    /// Frames per second, in [1, 60]: OpenH264's rate control clamps to that range.
    pub fps: f64,
    /// Target bitrate, at most [`MAX_BITS_PER_PIXEL`] per frame; `None` derives it from the frame
    /// size and rate ([`auto_bitrate`]).
    pub bitrate_bps: Option<u32>,
    /// An IDR frame (seek point) every this many frames; 0 means only the first frame.
    pub keyframe_interval: u32,
}

impl Default for Mp4Config {
    fn default() -> Self {
        Self {
            fps: 16.0,
            bitrate_bps: None,
            keyframe_interval: 32,
        }
    }
}

/// The default target: 0.25 bit per pixel per frame (1.6 Mbit/s at 832×480, 16 fps), generous
/// for 480p because Baseline profile lacks CABAC, B-frames and 8×8 transforms; at least
/// 200 kbit/s so tiny previews are not starved by per-frame overhead, and never above
/// [`MAX_BITS_PER_PIXEL`].
pub fn auto_bitrate(width: usize, height: usize, fps: f64) -> u32 {
    let pixel_rate = (width * height) as f64 * fps;
    (0.25 * pixel_rate)
        .max(200_000.0)
        .min(MAX_BITS_PER_PIXEL * pixel_rate) as u32
}

/// Bitrate ceiling in bits per pixel per frame. OpenH264 sizes its bitstream buffers from the raw
/// frame (1.5 bytes per pixel, doubled per slice: `iSliceBufferSize` in `encoder_ext.cpp`); with
/// targets of 8 (832×480) to 12 (64×48) bits per pixel its rate control lowered QP until a frame
/// of noise overflowed them and encoding failed. 4 leaves a 2× margin and is far beyond any
/// visible gain.
pub const MAX_BITS_PER_PIXEL: f64 = 4.0;

/// What [`Mp4Writer::finish`] wrote.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mp4Info {
    pub frames: u64,
    pub width: usize,
    pub height: usize,
    pub fps: f64,
    /// `frames / fps`, the play time of the clip. The MP4 track says the same for two or more
    /// frames; muxide gives a one-frame file a single-tick track duration.
    pub duration: Duration,
    /// Bytes written to the sink.
    pub bytes: u64,
}

/// Encodes frames to H.264 and muxes them into an MP4, one [`FrameChunk`] at a time so that
/// encoding can run while the VAE decodes the next chunk.
///
/// Frames must have even sides between [`MIN_SIDE`] and [`MAX_LONG_SIDE`] ×
/// [`MAX_SHORT_SIDE`]; Wan sizes are multiples of 16 and all qualify. Nothing reaches the sink
/// before [`finish`](Self::finish); dropping the writer without finishing writes nothing. After
/// an encoder or muxer error the writer is in an unknown state and should be dropped.
pub struct Mp4Writer<W: Write> {
    encoder: Encoder,
    muxer: Muxer<W>,
    width: usize,
    height: usize,
    fps: f64,
    frames: u64,
    annexb: Vec<u8>,
}

impl Mp4Writer<BufWriter<File>> {
    /// Creates (or truncates) the file at `path`, after validating the settings.
    pub fn create(
        path: impl AsRef<Path>,
        width: usize,
        height: usize,
        config: Mp4Config,
    ) -> Result<Self> {
        validate(width, height, &config)?;
        let file = BufWriter::new(File::create(path)?);
        Self::new(file, width, height, config)
    }
}

impl<W: Write> Mp4Writer<W> {
    pub fn new(sink: W, width: usize, height: usize, config: Mp4Config) -> Result<Self> {
        validate(width, height, &config)?;
        let bitrate = config
            .bitrate_bps
            .unwrap_or_else(|| auto_bitrate(width, height, config.fps));
        let encoder_config = EncoderConfig::new()
            .bitrate(BitRate::from_bps(bitrate))
            .max_frame_rate(FrameRate::from_hz(config.fps as f32))
            .rate_control_mode(RateControlMode::Quality)
            // A skipped frame has no bitstream, and an MP4 sample cannot be empty.
            .skip_frames(false)
            .intra_frame_period(IntraFramePeriod::from_num_frames(config.keyframe_interval))
            .vui(VuiConfig::bt709());
        let mut encoder = Encoder::with_api_config(OpenH264API::from_source(), encoder_config)?;
        quiet_warnings(&mut encoder)?;
        let muxer = MuxerBuilder::new(sink)
            .video(VideoCodec::H264, width as u32, height as u32, config.fps)
            .build()?;
        Ok(Self {
            encoder,
            muxer,
            width,
            height,
            fps: config.fps,
            frames: 0,
            annexb: Vec::new(),
        })
    }

    /// Encodes every frame of `chunk`. The chunk's size must be the writer's. The frames are
    /// converted to YUV in parallel (a third of the CPU time per frame at 480p) and encoded in
    /// order.
    pub fn push(&mut self, chunk: &FrameChunk<'_>) -> Result<()> {
        self.check_size(chunk.width(), chunk.height())?;
        let frames: Vec<_> = chunk.frames().collect();
        let pictures = frames
            .par_iter()
            .map(|frame| frame.to_yuv420())
            .collect::<Result<Vec<_>>>()?;
        for picture in &pictures {
            self.push_yuv(picture)?;
        }
        Ok(())
    }

    /// Encodes one frame already converted to YUV (e.g. on another thread).
    pub fn push_yuv(&mut self, picture: &Yuv420) -> Result<()> {
        self.check_size(picture.width(), picture.height())?;
        let bitstream = self.encoder.encode(picture)?;
        let frame_type = bitstream.frame_type();
        self.annexb.clear();
        bitstream.write_vec(&mut self.annexb);
        if self.annexb.is_empty() {
            return Err(Error::EmptyFrame {
                frame: self.frames,
                frame_type,
            });
        }
        // Only IDR frames are sync samples: a non-IDR I frame does not stop later frames from
        // referencing pictures before it.
        let keyframe = frame_type == FrameType::IDR;
        let pts = self.frames as f64 / self.fps;
        self.muxer.write_video(pts, &self.annexb, keyframe)?;
        self.frames += 1;
        Ok(())
    }

    pub fn frames_written(&self) -> u64 {
        self.frames
    }

    fn check_size(&self, width: usize, height: usize) -> Result<()> {
        if (width, height) == (self.width, self.height) {
            return Ok(());
        }
        Err(Error::SizeMismatch {
            width: self.width,
            height: self.height,
            got_width: width,
            got_height: height,
        })
    }

    /// Writes the MP4 and flushes the sink.
    pub fn finish(self) -> Result<Mp4Info> {
        self.finish_into_sink().map(|(info, _)| info)
    }

    /// Like [`finish`](Self::finish), also handing back the sink (e.g. a `Vec<u8>`).
    pub fn finish_into_sink(mut self) -> Result<(Mp4Info, W)> {
        if self.frames == 0 {
            return Err(Error::NoFrames);
        }
        let stats = self.muxer.finish_in_place_with_stats()?;
        let mut sink = self.muxer.into_writer();
        sink.flush()?;
        let info = Mp4Info {
            frames: self.frames,
            width: self.width,
            height: self.height,
            fps: self.fps,
            duration: Duration::from_secs_f64(self.frames as f64 / self.fps),
            bytes: stats.bytes_written,
        };
        Ok((info, sink))
    }
}

/// OpenH264 logs to stderr at warning level until it is initialised, which happens at the first
/// frame, and it warns there that the bitrate is soft without frame skipping: deliberate here.
/// Errors still print, since the returned error codes alone do not say what was wrong; after
/// initialisation the `openh264` crate silences the log entirely.
fn quiet_warnings(encoder: &mut Encoder) -> Result<()> {
    let mut level: c_int = openh264_sys2::WELS_LOG_ERROR;
    // SAFETY: the trace level is not an encoding parameter the crate relies on (`raw_api`'s
    // contract), it is one of the options OpenH264 accepts before initialisation
    // (`CWelsH264SVCEncoder::SetOption`), and OpenH264 reads one int through the pointer during
    // the call.
    let rc = unsafe {
        encoder.raw_api().set_option(
            openh264_sys2::ENCODER_OPTION_TRACE_LEVEL,
            (&raw mut level).cast(),
        )
    };
    if rc != 0 {
        let msg = format!("setting the trace level failed with code {rc}");
        return Err(openh264::Error::msg_string(msg).into());
    }
    Ok(())
}

fn validate(width: usize, height: usize, config: &Mp4Config) -> Result<()> {
    let (long, short) = (width.max(height), width.min(height));
    if short < MIN_SIDE || long > MAX_LONG_SIDE || short > MAX_SHORT_SIDE {
        return Err(Error::UnsupportedSize {
            what: "H.264 encoder",
            width,
            height,
            limits: "each side at least 16, at most 3840x2160 or 2160x3840",
        });
    }
    if !width.is_multiple_of(2) || !height.is_multiple_of(2) {
        return Err(Error::OddDimensions { width, height });
    }
    if !(1.0..=60.0).contains(&config.fps) {
        return Err(Error::invalid("fps", config.fps, "a number in [1, 60]"));
    }
    if let Some(bps) = config.bitrate_bps {
        let max = MAX_BITS_PER_PIXEL * (width * height) as f64 * config.fps;
        if bps == 0 || f64::from(bps) > max {
            return Err(Error::invalid(
                "bitrate_bps",
                bps,
                "positive and at most 4 bits per pixel per frame",
            ));
        }
    }
    Ok(())
}
