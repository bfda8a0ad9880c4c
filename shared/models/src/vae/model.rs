//! The whole VAE: chunked encoding, and decoding one latent frame at a time.

use turbine_checkpoint::TensorStore;
use turbine_tensor::{Backend, HostTensor};

use super::WanVaeConfig;
use super::causal_conv::{Conv, FeatCache};
use super::decoder::Decoder;
use super::encoder::Encoder;
use super::weights::{Loader, VaeWeights};
use crate::{Error, Result};

/// Video channels (RGB in [−1, 1]).
const RGB: usize = 3;

/// `[C, F, H, W]` (the API's layout) → `[F, H, W, C]` (the layers').
const TO_CHANNELS_LAST: [usize; 4] = [1, 2, 3, 0];
/// `[F, H, W, C]` → `[C, F, H, W]`.
const TO_CHANNEL_FIRST: [usize; 4] = [3, 0, 1, 2];

/// A Wan2.1 causal video VAE. Latents on both sides are normalized per channel, `(mu − mean) /
/// std`, the space the DiT works in.
pub struct WanVae<B: Backend> {
    backend: B,
    config: WanVaeConfig,
    encoder: Encoder<B>,
    decoder: Decoder<B>,
    /// Upstream's `conv1`: encoder output → (mu, log-variance).
    quant: Conv<B>,
    /// Upstream's `conv2`: the decoder's first, per-position convolution.
    post_quant: Conv<B>,
    /// `(std, mean)`: `z·std + mean` undoes the normalization before decoding.
    denormalize: (B::Tensor, B::Tensor),
    /// `(1/std, −mean/std)`: `(mu − mean)/std` after encoding.
    normalize: (B::Tensor, B::Tensor),
}

impl<B: Backend> WanVae<B> {
    /// Builds the VAE from a checkpoint in either layout (see [`super::weights`]).
    pub fn load(backend: B, config: WanVaeConfig, store: &TensorStore) -> Result<Self> {
        config.validate()?;
        let w = VaeWeights::new(store, &config)?;
        let z = config.z_dim;
        // Each side numbers its cache slots from 0: encoding and decoding keep separate caches.
        let encoder = Encoder::load(&mut Loader::new(&backend, &w), &config)?;
        let decoder = Decoder::load(&mut Loader::new(&backend, &w), &config)?;
        let l = Loader::new(&backend, &w);
        let quant = Conv::pointwise(&l, "conv1", &[2 * z, 2 * z, 1, 1, 1])?;
        let post_quant = Conv::pointwise(&l, "conv2", &[z, z, 1, 1, 1])?;
        let channel = |v: Vec<f32>| -> Result<B::Tensor> {
            Ok(backend.upload(&HostTensor::from_f32([z], v)?)?)
        };
        let (mean, std) = (&config.latents_mean, &config.latents_std);
        let denormalize = (channel(std.clone())?, channel(mean.clone())?);
        let normalize = (
            channel(std.iter().map(|s| 1.0 / s).collect())?,
            channel(mean.iter().zip(std).map(|(m, s)| -m / s).collect())?,
        );
        Ok(WanVae {
            encoder,
            decoder,
            quant,
            post_quant,
            denormalize,
            normalize,
            config,
            backend,
        })
    }

    pub fn config(&self) -> &WanVaeConfig {
        &self.config
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Encodes `video: [3, F, H, W]` in [−1, 1] (F = 1 + 4k, H and W multiples of 8) into the
    /// normalized posterior mean `[z_dim, 1 + k, H/8, W/8]` — the mode, not a sample. Frames go
    /// through the encoder in upstream's causal chunks `[0]`, `[1, 5)`, `[5, 9)`, …
    pub fn encode(&self, video: &B::Tensor) -> Result<B::Tensor> {
        let b = &self.backend;
        let frames = self.check_video(b.shape(video))?;
        let video = b.permute(video, &TO_CHANNELS_LAST)?;
        let tf = self.config.temporal_factor();
        let chunks = std::iter::once((0, 1)).chain((1..frames).step_by(tf).map(|s| (s, tf)));
        let mut cache = FeatCache::new(self.encoder.slots);
        let mut out = Vec::new();
        for (start, len) in chunks {
            let chunk = b.slice(&video, 0, start, len)?;
            out.push(self.encoder.forward(b, &chunk, &mut cache)?);
        }
        let stats = self
            .quant
            .forward(b, &b.concat(&out.iter().collect::<Vec<_>>(), 0)?)?;
        let mu = b.slice(&stats, 3, 0, self.config.z_dim)?;
        let mu = b.channel_affine(&mu, &self.normalize.0, &self.normalize.1)?;
        Ok(b.permute(&mu, &TO_CHANNEL_FIRST)?)
    }

    /// Decodes normalized latents `[z_dim, T, h, w]` into the video `[3, 1 + 4(T−1), 8h, 8w]` in
    /// [−1, 1]: [`WanVae::decode_stream`] collected.
    pub fn decode(&self, latents: &B::Tensor) -> Result<B::Tensor> {
        let frames = self.decode_stream(latents)?.collect::<Result<Vec<_>>>()?;
        Ok(self.backend.concat(&frames.iter().collect::<Vec<_>>(), 1)?)
    }

    /// Decodes normalized latents `[z_dim, T, h, w]` one latent frame at a time, yielding video
    /// frames `[3, n, 8h, 8w]` in order as they are ready: n = 1 for the first latent frame, 4 for
    /// each later one. Memory stays that of one 4-frame chunk plus the causal caches.
    pub fn decode_stream<'a>(
        &'a self,
        latents: &B::Tensor,
    ) -> Result<impl Iterator<Item = Result<B::Tensor>> + 'a> {
        let b = &self.backend;
        let [_, t, _, _] = self.check_latents(b.shape(latents))?;
        let latents = latents.clone();
        let mut session = self.decode_session();
        Ok((0..t).map(move |i| session.push(&b.slice(&latents, 1, i, 1)?)))
    }

    /// A decode of latents that arrive one frame at a time.
    pub fn decode_session(&self) -> DecodeSession<'_, B> {
        DecodeSession {
            vae: self,
            cache: FeatCache::new(self.decoder.slots),
            grid: None,
            failed: false,
        }
    }

    fn check_latents(&self, shape: &[usize]) -> Result<[usize; 4]> {
        match *shape {
            [c, t, h, w] if c == self.config.z_dim && t > 0 && h > 0 && w > 0 => Ok([c, t, h, w]),
            _ => Err(Error::Input(format!(
                "latents must be [{}, T, h, w] with T, h, w > 0, got {shape:?}",
                self.config.z_dim
            ))),
        }
    }

    /// The frame count of a video to encode, after checking its shape.
    fn check_video(&self, shape: &[usize]) -> Result<usize> {
        let &[RGB, f, h, w] = shape else {
            return Err(Error::Input(format!(
                "video must be [{RGB}, F, H, W], got {shape:?}"
            )));
        };
        let (tf, sf) = (self.config.temporal_factor(), self.config.spatial_factor());
        if f == 0 || (f - 1) % tf != 0 {
            return Err(Error::Input(format!(
                "video has {f} frames; the causal VAE encodes 1 + {tf}k frames"
            )));
        }
        if h == 0 || w == 0 || h % sf != 0 || w % sf != 0 {
            return Err(Error::Input(format!(
                "video is {h}x{w}; H and W must be positive multiples of {sf}"
            )));
        }
        Ok(f)
    }
}

/// An in-progress decode: the causal caches of every latent frame pushed so far.
pub struct DecodeSession<'a, B: Backend> {
    vae: &'a WanVae<B>,
    cache: FeatCache<B>,
    /// Latent `[h, w]` of the first frame; the caches hold activations of that size.
    grid: Option<[usize; 2]>,
    /// Set when a push failed part-way: the caches may then hold a mix of two chunks.
    failed: bool,
}

impl<B: Backend> DecodeSession<'_, B> {
    /// Decodes the next normalized latent frame `[z_dim, 1, h, w]` into video frames
    /// `[3, n, 8h, 8w]` in [−1, 1]: n = 1 for the first frame of the video, 4 after.
    pub fn push(&mut self, latent: &B::Tensor) -> Result<B::Tensor> {
        let vae = self.vae;
        let b = &vae.backend;
        let [_, t, h, w] = vae.check_latents(b.shape(latent))?;
        if t != 1 {
            return Err(Error::Input(format!(
                "a decode session takes one latent frame at a time, got {t}"
            )));
        }
        if let Some(grid) = self.grid
            && grid != [h, w]
        {
            return Err(Error::Input(format!(
                "latent frame is {h}x{w}, but this session decodes {}x{}",
                grid[0], grid[1]
            )));
        }
        if self.failed {
            return Err(Error::Input(
                "an earlier frame of this decode session failed; start a new session".into(),
            ));
        }
        let first = self.grid.is_none();
        let z = b.permute(latent, &TO_CHANNELS_LAST)?;
        let z = b.channel_affine(&z, &vae.denormalize.0, &vae.denormalize.1)?;
        let out = vae
            .post_quant
            .forward(b, &z)
            .and_then(|z| vae.decoder.forward(b, &z, &mut self.cache, first))
            .and_then(|x| Ok(b.permute(&b.clamp(&x, -1.0, 1.0)?, &TO_CHANNEL_FIRST)?));
        match out {
            Ok(_) => self.grid = Some([h, w]),
            Err(_) => self.failed = true,
        }
        out
    }
}
