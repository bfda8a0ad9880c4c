//! H.264 in MP4: OpenH264 (built from source) encodes, one encoder per run of frames between
//! seek points on threads of its own ([`crate::h264`]), and muxide muxes.
//!
//! OpenH264 produces Constrained Baseline only (no B-frames), so samples are muxed in decode
//! order with PTS = DTS = `index / fps`. muxide keeps every encoded sample in memory and writes the
//! whole file at [`Mp4Writer::finish`] with `moov` first (fast start), which is why the sink only
//! needs [`Write`]; the memory held is the encoded size (a few hundred KB for a Wan clip), so the
//! samples can reach it in runs as the encoder threads finish them.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::num::{NonZeroU64, NonZeroUsize};
use std::path::Path;
use std::thread;
use std::time::Duration;

use muxide::api::{Muxer, MuxerBuilder, VideoCodec};
use openh264::encoder::{
    BitRate, Complexity, EncoderConfig, FrameRate, IntraFramePeriod, RateControlMode, VuiConfig,
};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::h264::{Cuts, EncodedFrame, SegmentedEncoder};
use crate::rgb::{FrameChunk, Sample, Yuv420};

/// Smallest width and height OpenH264 encodes (`EncodeFrameInternal` rejects anything under 16).
pub const MIN_SIDE: usize = 16;
/// OpenH264's limit for the longer side; the shorter one is limited to [`MAX_SHORT_SIDE`].
pub const MAX_LONG_SIDE: usize = 3840;
pub const MAX_SHORT_SIDE: usize = 2160;

/// Encoding settings. The defaults suit Wan output: 16 fps (Wan 2.1's rate), quality-first rate
/// control at [`auto_bitrate`], a seek point every 16 frames (1 s at 16 fps).
///
/// The runs between seek points encode at once, so the interval bounds how fast a clip encodes:
/// 81 frames are 6 runs at 16 and 3 at 32, and when frames arrive faster than one encoder takes
/// them, the clip is done about one run's encoding after its last full run starts: 16 frames'
/// rather than 32 (0.43 s rather than 0.86 s at 480p on the H100 host, 27 ms a frame at medium
/// complexity). Against 32, 16 changed file sizes by -3.5% to +17% at luma PSNR within 0.25 dB
/// (`h264_bench`: 81 frames of 832×480, a moving gradient under noise of ±0 to ±0.25).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mp4Config {
    /// Frames per second, in [1, 60]: OpenH264's rate control clamps to that range.
    pub fps: f64,
    /// Target bitrate, at most [`MAX_BITS_PER_PIXEL`] per frame; `None` derives it from the frame
    /// size and rate ([`auto_bitrate`]).
    pub bitrate_bps: Option<u32>,
    /// An IDR frame (seek point) every this many frames; 0 means only the first frame.
    ///
    /// Each run of this many frames is encoded by an encoder of its own, concurrently with the
    /// others, after warming up on the 2 frames before it. 0 and 1 leave one encoder for the
    /// whole video: with 0 there is nothing to cut, and IDR frames from separate encoders cannot
    /// follow one another directly (their `idr_pic_id`s would be equal).
    pub keyframe_interval: u32,
    /// How many runs between seek points are encoded at once (one more warms up), each holding
    /// up to 16 frames that wait for its encoder; `None` is one per core
    /// ([`std::thread::available_parallelism`]). The file does not depend on it.
    pub threads: Option<NonZeroUsize>,
    /// The clip's length, when the caller knows it before the first frame (a generation request
    /// fixes it). The clip's last stretch (its last 16 to 31 frames at an interval of 16, or all
    /// of a shorter clip) is then cut into shorter runs, halving — 81 frames end in runs of 9, 4,
    /// 2 and 2 from frame 64 — so that their encoders finish soon after the last frame arrives
    /// rather than one whole run's encoding later. More frames than declared are refused
    /// ([`Error::TooManyFrames`]); fewer still make a valid file (a generation that stopped
    /// early).
    pub frames: Option<u64>,
}

impl Default for Mp4Config {
    fn default() -> Self {
        Self {
            fps: 16.0,
            bitrate_bps: None,
            keyframe_interval: 16,
            threads: None,
            frames: None,
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
/// Frames are encoded on background threads: a push returns once its frames are queued, unless
/// the encoders are [`Mp4Config::threads`] runs behind or a run's queue is full, and an encoder
/// error surfaces from a later push or from [`finish`](Self::finish), naming the frame.
///
/// Frames must have even sides between [`MIN_SIDE`] and [`MAX_LONG_SIDE`] ×
/// [`MAX_SHORT_SIDE`]; Wan sizes are multiples of 16 and all qualify. Nothing reaches the sink
/// before [`finish`](Self::finish); dropping the writer without finishing writes nothing and
/// stops its encoders. After an encoder or muxer error the writer is in an unknown state and
/// should be dropped.
pub struct Mp4Writer<W: Write> {
    encoder: SegmentedEncoder,
    track: Track<W>,
    width: usize,
    height: usize,
    /// Frames queued for encoding.
    frames: u64,
}

/// The muxer and the samples given to it so far: encoded frames, which the encoder hands back in
/// order.
struct Track<W: Write> {
    muxer: Muxer<W>,
    fps: f64,
    samples: u64,
}

impl<W: Write> Track<W> {
    fn write(&mut self, frames: Vec<EncodedFrame>) -> Result<()> {
        for frame in frames {
            let pts = self.samples as f64 / self.fps;
            self.muxer.write_video(pts, &frame.annexb, frame.idr)?;
            self.samples += 1;
        }
        Ok(())
    }
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
            // OpenH264's fast mode: at 832x480 on the H100 host 1.2-1.4x the frames a second of
            // its default (medium) for 0.3-1.6 % fewer bytes at 0.01-0.04 dB less luma PSNR, and
            // half the wait for the clip's last frames (bench/results/2026-11-27-quant-load.md).
            .complexity(Complexity::Low)
            // A skipped frame has no bitstream, and an MP4 sample cannot be empty.
            .skip_frames(false)
            .intra_frame_period(IntraFramePeriod::from_num_frames(config.keyframe_interval))
            .vui(VuiConfig::bt709());
        let segment_len =
            NonZeroU64::new(u64::from(config.keyframe_interval)).filter(|len| len.get() >= 2);
        let threads = config
            .threads
            .or_else(|| thread::available_parallelism().ok())
            .unwrap_or(NonZeroUsize::MIN);
        let cuts = segment_len.map(|len| Cuts::new(len, config.frames));
        let encoder = SegmentedEncoder::new(encoder_config, cuts, config.frames, threads)?;
        let muxer = MuxerBuilder::new(sink)
            .video(VideoCodec::H264, width as u32, height as u32, config.fps)
            .build()?;
        Ok(Self {
            encoder,
            track: Track {
                muxer,
                fps: config.fps,
                samples: 0,
            },
            width,
            height,
            frames: 0,
        })
    }

    /// Queues every frame of `chunk` for encoding. The chunk's size must be the writer's. The
    /// frames are converted to YUV in parallel on the calling thread.
    pub fn push<S: Sample>(&mut self, chunk: &FrameChunk<'_, S>) -> Result<()> {
        self.check_size(chunk.width(), chunk.height())?;
        let frames: Vec<_> = chunk.frames().collect();
        let pictures = frames
            .par_iter()
            .map(|frame| frame.to_yuv420())
            .collect::<Result<Vec<_>>>()?;
        for picture in pictures {
            self.queue(picture)?;
        }
        Ok(())
    }

    /// Queues one frame already converted to YUV (e.g. on another thread); the encoder thread
    /// takes it over.
    pub fn push_yuv(&mut self, picture: Yuv420) -> Result<()> {
        self.check_size(picture.width(), picture.height())?;
        self.queue(picture)
    }

    /// Frames pushed so far, encoded or still queued.
    pub fn frames_written(&self) -> u64 {
        self.frames
    }

    fn queue(&mut self, picture: Yuv420) -> Result<()> {
        let ready = self.encoder.push(picture)?;
        self.frames += 1;
        self.track.write(ready)
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
    pub fn finish_into_sink(self) -> Result<(Mp4Info, W)> {
        if self.frames == 0 {
            return Err(Error::NoFrames);
        }
        let Self {
            encoder,
            mut track,
            width,
            height,
            frames,
        } = self;
        track.write(encoder.finish()?)?;
        debug_assert_eq!(
            track.samples, frames,
            "every queued frame comes back encoded"
        );
        let stats = track.muxer.finish_in_place_with_stats()?;
        let mut sink = track.muxer.into_writer();
        sink.flush()?;
        let info = Mp4Info {
            frames,
            width,
            height,
            fps: track.fps,
            duration: Duration::from_secs_f64(frames as f64 / track.fps),
            bytes: stats.bytes_written,
        };
        Ok((info, sink))
    }
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
    if config.frames == Some(0) {
        return Err(Error::invalid("frames", 0, "at least 1 when given"));
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
