pub type Result<T> = std::result::Result<T, Error>;

/// Everything writing frames can fail with. Input problems (shape, size, frame rate, an empty
/// video) are reported before anything reaches the codecs, so a codec error means the codec itself
/// refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // Input.
    #[error("frames have shape {shape:?}; expected [3, frames, height, width] with nonzero sizes")]
    Shape { shape: [usize; 4] },
    #[error("{len} values do not fill shape {shape:?}")]
    ElementCount { len: usize, shape: [usize; 4] },
    #[error("{width}x{height} frames cannot be H.264 4:2:0 encoded: width and height must be even")]
    OddDimensions { width: usize, height: usize },
    #[error("{width}x{height} is outside the {what} limits: {limits}")]
    UnsupportedSize {
        what: &'static str,
        width: usize,
        height: usize,
        limits: &'static str,
    },
    #[error("frames are {got_width}x{got_height}, the output was opened for {width}x{height}")]
    SizeMismatch {
        width: usize,
        height: usize,
        got_width: usize,
        got_height: usize,
    },
    #[error("invalid {name} = {value}: {expected}")]
    InvalidParameter {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("no frames were written; a video needs at least one")]
    NoFrames,
    #[error("the output was opened for {declared} frames and got more")]
    TooManyFrames { declared: u64 },

    // Codecs and sinks.
    #[error("H.264 encoder: {0}")]
    Encoder(#[from] openh264::Error),
    #[error("H.264 encoder failed on frame {frame}: {source}")]
    EncodeFrame { frame: u64, source: openh264::Error },
    #[error("H.264 encoder returned no picture for frame {frame} (frame type {frame_type:?})")]
    EmptyFrame {
        frame: u64,
        frame_type: openh264::encoder::FrameType,
    },
    #[error(
        "the H.264 segment from frame {frame} has other SPS/PPS than the first segment; an MP4 track holds one set"
    )]
    ParameterSetsDiffer { frame: u64 },
    #[error("the H.264 encoder thread for the frames from {first_frame} ended: {reason}")]
    EncoderThread { first_frame: u64, reason: String },
    #[error("MP4 muxer: {0}")]
    Muxer(#[from] muxide::api::MuxerError),
    #[error("GIF encoder: {0}")]
    Gif(#[from] gif::EncodingError),
    #[error("PNG encoder: {0}")]
    Png(#[from] png::EncodingError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    pub(crate) fn invalid(
        name: &'static str,
        value: impl std::fmt::Display,
        expected: &'static str,
    ) -> Self {
        Error::InvalidParameter {
            name,
            value: value.to_string(),
            expected,
        }
    }
}
