//! The VAE stage: latent frames to video frames as each arrives, and video to latents.

use std::time::Instant;

use turbine_models::vae::{DecodeSession, WanVae, WanVaeConfig};
use turbine_tensor::{Backend, HostTensor, PendingDownload};

use crate::request::{FRAME_STRIDE, MAX_FRAMES, MAX_SIDE};
use crate::{Error, ModelLoad, ModelSource, Result, VideoShape};

/// The loaded Wan VAE.
pub struct DecodeStage<B: Backend> {
    vae: WanVae<B>,
    load: ModelLoad,
}

/// A decode whose latent frames arrive one at a time: the VAE's causal caches between them.
pub struct FrameDecoder<'a, B: Backend> {
    session: DecodeSession<'a, B>,
    backend: &'a B,
    z_dim: usize,
    /// Largest latent side: [`MAX_SIDE`] pixels.
    max_grid: usize,
    /// `[h, w]` of the first latent frame; later ones must match.
    grid: Option<[usize; 2]>,
}

impl<B: Backend> DecodeStage<B> {
    pub fn load(backend: B, source: &ModelSource) -> Result<Self> {
        let start = Instant::now();
        let (config, store) = source.vae()?;
        let vae = WanVae::load(backend, config, &store)?;
        let load = ModelLoad::finish(start, vae.backend(), &store)?;
        Ok(Self { vae, load })
    }

    /// How the VAE loaded.
    pub fn load_report(&self) -> ModelLoad {
        self.load
    }

    pub fn config(&self) -> &WanVaeConfig {
        self.vae.config()
    }

    pub fn backend(&self) -> &B {
        self.vae.backend()
    }

    pub fn session(&self) -> FrameDecoder<'_, B> {
        FrameDecoder {
            session: self.vae.decode_session(),
            backend: self.vae.backend(),
            z_dim: self.vae.config().z_dim,
            max_grid: MAX_SIDE as usize / self.vae.config().spatial_factor(),
            grid: None,
        }
    }

    /// Encodes `video: [3, 1 + 4k, H, W]` in [−1, 1] (H, W multiples of the VAE's 8) into
    /// normalized latents `[z_dim, 1 + k, H/8, W/8]`, the posterior mean.
    pub fn encode(&self, video: &HostTensor) -> Result<HostTensor> {
        let sf = self.vae.config().spatial_factor();
        let frames_ok = |f: usize| f >= 1 && (f - 1).is_multiple_of(FRAME_STRIDE as usize);
        let side_ok = |s: usize| s > 0 && s.is_multiple_of(sf) && s <= MAX_SIDE as usize;
        match video.shape[..] {
            [3, f, h, w]
                if frames_ok(f) && f <= MAX_FRAMES as usize && side_ok(h) && side_ok(w) => {}
            _ => {
                return Err(Error::invalid(
                    "video",
                    format!(
                        "shape {:?} must be [3, 4k+1 <= {MAX_FRAMES}, H, W] with H and W positive multiples of {sf}, at most {MAX_SIDE}",
                        video.shape
                    ),
                ));
            }
        }
        let b = self.vae.backend();
        Ok(b.download(&self.vae.encode(&b.upload(video)?)?)?)
    }

    /// Decodes and encodes once, so a broken model fails before serving: with `shape`, the
    /// first two latent frames of a video that size (a one-frame chunk, then a four-frame one
    /// behind cached frames: every convolution the decode runs) and its first frame, so the
    /// first request of that size pays no one-time costs (cuDNN's plans, the memory pool's
    /// blocks); without one, the smallest inputs.
    pub fn warm_up(&self, shape: Option<&VideoShape>) -> Result<()> {
        let [h, w] = self.warm_up_decode(shape)?;
        let sf = self.vae.config().spatial_factor();
        self.encode(&HostTensor::zeros([3, 1, h * sf, w * sf]))
            .map(drop)
    }

    /// [`Self::warm_up`]'s decode alone, for a caller that never encodes (text to video); returns
    /// the latent's `[height, width]`.
    pub fn warm_up_decode(&self, shape: Option<&VideoShape>) -> Result<[usize; 2]> {
        let z = self.vae.config().z_dim;
        let sf = self.vae.config().spatial_factor();
        let [h, w] = shape.map_or([1, 1], |s| {
            [s.height() as usize / sf, s.width() as usize / sf]
        });
        let latent_frames = if shape.is_some_and(|s| s.frames() > 1) {
            2
        } else {
            1
        };
        let mut session = self.session();
        for _ in 0..latent_frames {
            session.push(&HostTensor::zeros([z, 1, h, w]))?;
        }
        Ok([h, w])
    }
}

/// Video frames on their way to the host ([`FrameDecoder::push_async`]).
#[derive(Debug)]
pub struct PendingFrames(PendingDownload);

impl PendingFrames {
    /// Waits for the frames `[3, n, 8h, 8w]`.
    pub fn wait(self) -> Result<HostTensor> {
        Ok(self.0.wait()?)
    }
}

impl<B: Backend> FrameDecoder<'_, B> {
    /// Decodes the next latent frame `[z_dim, 1, h, w]` into video frames `[3, n, 8h, 8w]` in
    /// [−1, 1]: n = 1 for the first latent frame, 4 for each later one.
    pub fn push(&mut self, latent_frame: &HostTensor) -> Result<HostTensor> {
        self.push_async(latent_frame)?.wait()
    }

    /// [`FrameDecoder::push`] returning once the decode and the download of its frames are
    /// queued: pushing the next latent frame before waiting for these keeps the device decoding
    /// while the host takes this chunk and hands it on. Frames come out in push order whatever
    /// order the handles are waited in.
    pub fn push_async(&mut self, latent_frame: &HostTensor) -> Result<PendingFrames> {
        let max = self.max_grid;
        let grid = match latent_frame.shape[..] {
            [z, 1, h, w] if z == self.z_dim && (1..=max).contains(&h) && (1..=max).contains(&w) => {
                [h, w]
            }
            _ => {
                return Err(Error::invalid(
                    "latent_frame",
                    format!(
                        "shape {:?} must be [{}, 1, h, w] with h and w in 1..={max}",
                        latent_frame.shape, self.z_dim
                    ),
                ));
            }
        };
        if let Some(first) = self.grid
            && first != grid
        {
            return Err(Error::invalid(
                "latent_frame",
                format!("{grid:?} differs from the first frame's {first:?}"),
            ));
        }
        self.grid = Some(grid);
        let b = self.backend;
        let frames = self.session.push(&b.upload(latent_frame)?)?;
        Ok(PendingFrames(b.download_async(&frames)?))
    }
}

/// Latents `[C, T, h, w]` as their T latent frames `[C, 1, h, w]`, in order, each gathered as it is
/// taken: the decoder starts on the first while the others wait in `latents` (gathering all 21
/// of a 480p video first took 3-5 ms).
pub fn latent_frames(
    latents: &HostTensor,
) -> Result<impl Iterator<Item = Result<HostTensor>> + '_> {
    let [c, t, h, w] = latents.shape[..] else {
        return Err(Error::invalid(
            "latents",
            format!("shape {:?} must be [C, T, h, w]", latents.shape),
        ));
    };
    let data = latents.f32_elements();
    let plane = h * w;
    Ok((0..t).map(move |i| {
        let mut frame = Vec::with_capacity(c * plane);
        for ch in 0..c {
            frame.extend_from_slice(&data[(ch * t + i) * plane..][..plane]);
        }
        Ok(HostTensor::from_f32([c, 1, h, w], frame)?)
    }))
}
