//! H.264 encoding of a job's frames on a blocking thread, while the VAE decodes the next ones.

use std::path::{Path, PathBuf};
use std::time::Instant;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{Span, debug_span};
use turbine_media::{FrameChunk, Mp4Config, Mp4Info, Mp4Writer};
use turbine_rpc::tensor::WireTensor;

use crate::error::{Error, Result};
use crate::stages::VideoSize;

/// What the writer produced.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    pub info: Mp4Info,
    /// Time spent converting and encoding: the part of the video stage that is not hidden behind
    /// the VAE.
    pub busy_s: f64,
}

/// Frames in, an MP4 file at `path` out. Dropping the writer before every frame arrived (a
/// cancelled or failed job) deletes the partial file.
#[derive(Debug)]
pub struct VideoWriter {
    frames: mpsc::Sender<WireTensor>,
    thread: JoinHandle<Result<Written>>,
}

impl VideoWriter {
    pub fn spawn(path: PathBuf, video: VideoSize, fps: f64) -> Self {
        // Two chunks in flight: the VAE can run ahead by one decode while the encoder works.
        let (tx, rx) = mpsc::channel(2);
        let span = Span::current();
        let thread = tokio::task::spawn_blocking(move || {
            let result = span.in_scope(|| write(&path, video, fps, rx));
            if result.is_err() {
                // Best effort: the file may not exist yet.
                let _ = std::fs::remove_file(&path);
            }
            result
        });
        Self { frames: tx, thread }
    }

    /// Queues u8 RGB planes `[3, n, H, W]`, the next frames of the video. After an error the
    /// writer is finished and must be dropped.
    pub async fn push(&mut self, frames: WireTensor) -> Result<()> {
        if self.frames.send(frames).await.is_ok() {
            return Ok(());
        }
        // The thread stopped early: its result says why.
        match (&mut self.thread).await {
            Ok(Err(e)) => Err(e),
            Ok(Ok(_)) => Err(thread_error("the encoder finished before the last frame")),
            Err(e) => Err(thread_error(e)),
        }
    }

    /// Waits for the MP4 to be complete on disk.
    pub async fn finish(self) -> Result<Written> {
        drop(self.frames);
        self.thread.await.map_err(thread_error)?
    }
}

fn thread_error(e: impl std::fmt::Display) -> Error {
    Error::io("video encoding", std::io::Error::other(e.to_string()))
}

fn write(
    path: &Path,
    video: VideoSize,
    fps: f64,
    mut rx: mpsc::Receiver<WireTensor>,
) -> Result<Written> {
    let config = Mp4Config {
        fps,
        frames: Some(u64::from(video.frames)),
        ..Mp4Config::default()
    };
    let (width, height) = (video.width as usize, video.height as usize);
    let mut writer = Mp4Writer::create(path, width, height, config)?;
    let mut busy_s = 0.0;
    while let Some(frames) = rx.blocking_recv() {
        let start = Instant::now();
        let [c, n, h, w] = frames.shape[..] else {
            return Err(thread_error(format!("frames of shape {:?}", frames.shape)));
        };
        let _span = debug_span!("encode_frames", first_frame = writer.frames_written()).entered();
        // The VAE service sends the 8-bit codes the encoder would quantize its floats to, so
        // they go in as they are and the MP4 matches the embedded pipeline's byte for byte.
        writer.push(&FrameChunk::new(&frames.data[..], [c, n, h, w])?)?;
        busy_s += start.elapsed().as_secs_f64();
    }
    if writer.frames_written() != u64::from(video.frames) {
        return Err(thread_error(format!(
            "stopped after {} of {} frames",
            writer.frames_written(),
            video.frames
        )));
    }
    let start = Instant::now();
    let info = debug_span!("finish_mp4").in_scope(|| writer.finish())?;
    busy_s += start.elapsed().as_secs_f64();
    Ok(Written { info, busy_s })
}
