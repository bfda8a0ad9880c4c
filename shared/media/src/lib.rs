//! Turbine's video output: the VAE's f32 frames to RGB8 and YUV 4:2:0, H.264 MP4 files
//! (OpenH264 + muxide), GIF previews and PNG frame dumps.
//!
//! Frames arrive as [`FrameChunk`]s in the VAE layout `[3, frames, height, width]`, values in
//! [-1, 1] (or their 8-bit codes, as the stage services send them), a few frames per chunk;
//! every writer takes them one chunk at a time.
//!
//! H.264 licensing: OpenH264 is compiled from source here, so Cisco's patent coverage (which
//! applies only to its prebuilt binary) does not apply; distributing binaries needs legal review.

mod error;
mod gif;
mod h264;
mod mp4;
mod png;
mod rgb;

pub use self::gif::{GifConfig, GifWriter};
pub use self::mp4::{
    MAX_BITS_PER_PIXEL, MAX_LONG_SIDE, MAX_SHORT_SIDE, MIN_SIDE, Mp4Config, Mp4Info, Mp4Writer,
    auto_bitrate,
};
pub use self::png::{PngFrameDump, write_png};
pub use error::{Error, Result};
pub use rgb::{Frame, FrameChunk, Sample, Yuv420, to_u8};
