//! What a job needs from the three stage services, as one trait: the gRPC clients implement it
//! for real ([`crate::clients::GrpcStages`]); unit tests implement it in-process.
//!
//! A stage call that is retried replays from its start: the denoiser sends latent frames from 0
//! again and the VAE sends video frames from 0 again. Consumers keep what they already have —
//! [`LatentLog::put`] ignores frames it holds, the job skips video frames it has written — so an
//! implementation never needs to remember what an earlier attempt delivered.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use turbine_proto::v1::{DenoiseSetup, Preview, StepProgress};
use turbine_rpc::tensor::WireTensor;

use crate::error::Result;

/// A prompt's umT5 context `[tokens, d_model]`.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedPrompt {
    pub context: WireTensor,
    /// Tokens of the prompt, `</s>` included.
    pub tokens: u32,
    /// The prompt was cut at the encoder's limit.
    pub truncated: bool,
}

/// Size of the video a job makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoSize {
    pub width: u32,
    pub height: u32,
    pub frames: u32,
}

impl VideoSize {
    /// `1 + (frames − 1) / 4`: the VAE's temporal stride is 4.
    pub fn latent_frames(&self) -> usize {
        (1 + (self.frames - 1) / 4) as usize
    }
}

/// Everything one denoise call sends: the setup at once, the prompts' contexts once they are
/// encoded. A job opens its denoise call while its prompts encode, so that the denoiser draws
/// the initial noise meanwhile.
#[derive(Debug, Clone)]
pub struct DenoiseInput {
    pub video: VideoSize,
    pub setup: DenoiseSetup,
    /// `None` until the prompts are encoded; the sender dropped without a value means they never
    /// will be (the job failed).
    pub prompts: watch::Receiver<Option<Prompts>>,
}

/// A job's encoded prompts.
#[derive(Debug, Clone)]
pub struct Prompts {
    pub context: Arc<EncodedPrompt>,
    /// The negative prompt's context when classifier-free guidance needs it.
    pub negative: Option<Arc<EncodedPrompt>>,
}

impl DenoiseInput {
    /// The prompts once encoded; `None` when they never will be.
    pub async fn prompts(&self) -> Option<Prompts> {
        let mut prompts = self.prompts.clone();
        let encoded = prompts.wait_for(Option::is_some).await.ok()?;
        encoded.clone()
    }
}

/// What the denoiser reports while sampling.
#[derive(Debug, Clone, PartialEq)]
pub enum DenoiseUpdate {
    Step(StepProgress),
    Preview(Preview),
    /// A new attempt on another replica starts sampling from step 0.
    Restarted,
}

/// A run of decoded video frames: u8 RGB planes `[3, n, H, W]` starting at `first_frame`.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedFrames {
    pub first_frame: u32,
    pub frames: WireTensor,
}

pub trait Stages: Send + Sync + 'static {
    /// Encodes one prompt; `allow_empty` encodes an empty prompt as the unconditional `</s>`.
    fn encode(
        &self,
        prompt: &str,
        allow_empty: bool,
    ) -> impl Future<Output = Result<EncodedPrompt>> + Send;

    /// Samples the latents, reporting steps and previews to `updates` and putting each latent
    /// frame `[C, 1, h, w]` into `latents` as it arrives. Dropping the future cancels sampling.
    fn denoise(
        &self,
        input: &DenoiseInput,
        updates: &mpsc::Sender<DenoiseUpdate>,
        latents: &LatentLog,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Decodes the frames of `latents` in order as they arrive, sending video frames to
    /// `frames`. Returns once every latent frame was decoded.
    fn decode(
        &self,
        video: VideoSize,
        latents: &LatentLog,
        frames: &mpsc::Sender<DecodedFrames>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Whether every stage has at least one replica ready to take calls.
    fn ready(&self) -> impl Future<Output = bool> + Send;
}

/// The latent frames of one job, in order, shared between the denoise call that fills it and the
/// decode calls that read it (a retried decode reads it again from frame 0).
#[derive(Debug)]
pub struct LatentLog {
    expected: usize,
    frames: watch::Sender<Vec<Arc<WireTensor>>>,
}

impl LatentLog {
    pub fn new(expected: usize) -> Self {
        Self {
            expected,
            frames: watch::Sender::new(Vec::with_capacity(expected)),
        }
    }

    /// Latent frames the video has.
    pub fn expected(&self) -> usize {
        self.expected
    }

    /// Latent frames received so far.
    pub fn received(&self) -> usize {
        self.frames.borrow().len()
    }

    /// Stores frame `index`; a frame already held (replayed by a retried call) is ignored.
    /// Returns false when `index` would leave a gap or lies past the video's end.
    pub fn put(&self, index: usize, frame: WireTensor) -> bool {
        let mut accepted = true;
        self.frames.send_if_modified(|frames| {
            if index < frames.len() {
                return false;
            }
            if index != frames.len() || index >= self.expected {
                accepted = false;
                return false;
            }
            frames.push(Arc::new(frame));
            true
        });
        accepted
    }

    /// Frame `index`, waiting for it to arrive; `None` past the video's end.
    pub async fn get(&self, index: usize) -> Option<Arc<WireTensor>> {
        if index >= self.expected {
            return None;
        }
        let mut rx = self.frames.subscribe();
        let frames = rx
            .wait_for(|f| f.len() > index)
            .await
            .expect("the sender lives in self");
        Some(frames[index].clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use turbine_proto::v1::Dtype;

    fn frame(v: u8) -> WireTensor {
        WireTensor {
            dtype: Dtype::U8,
            shape: vec![1],
            data: vec![v].into(),
        }
    }

    #[tokio::test]
    async fn the_log_keeps_the_first_copy_and_refuses_gaps() {
        let log = LatentLog::new(2);
        let waiter = log.get(1);
        assert!(log.put(0, frame(1)));
        assert!(
            log.put(0, frame(9)),
            "a replayed frame is accepted and ignored"
        );
        assert!(!log.put(2, frame(3)), "gap");
        assert!(log.put(1, frame(2)));
        assert_eq!(waiter.await.unwrap().data[0], 2);
        assert_eq!(log.get(0).await.unwrap().data[0], 1);
        assert!(log.get(2).await.is_none());
        assert_eq!(log.received(), 2);
    }
}
