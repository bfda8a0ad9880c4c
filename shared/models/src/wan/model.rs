//! The whole DiT: patch embedding, condition embeddings, blocks, head, unpatchify.

use std::sync::{Mutex, PoisonError};

use rayon::prelude::*;

use turbine_checkpoint::{Error as CkptError, TensorStore};
use turbine_tensor::{Backend, rope::rope_tables};

use super::WanConfig;
use super::attention::{AttentionMode, ContextKv, Qkv, Rope};
use super::block::{Block, Stream};
use super::embeddings::{TextEmbedding, TimeEmbedding};
use super::weights::WanWeights;
use crate::{Error, Result};

/// RoPE base frequency of Wan's 3-D rotary embedding.
const ROPE_THETA: f64 = 10_000.0;

/// A Wan2.1 / Wan2.2 diffusion transformer predicting the flow-matching velocity `v = ε − x₀`.
pub struct WanModel<B: Backend> {
    backend: B,
    config: WanConfig,
    attention: AttentionMode,
    patch_embedding: B::Linear,
    time: TimeEmbedding<B>,
    text: TextEmbedding<B>,
    blocks: Vec<Block<B>>,
    /// `[2, D]`: shift and scale of the output norm; `e` is added per forward.
    head_modulation: B::Tensor,
    head: B::Linear,
    /// The rotary tables of the last token grid: every step of a generation reuses them, and
    /// building them on the host costs more than a block at 480p.
    rope: Mutex<Option<([usize; 3], Rope<B>)>>,
}

/// A prompt prepared for the denoising loop: each block's cross-attention keys and values.
pub struct TextContext<B: Backend> {
    blocks: Vec<ContextKv<B>>,
}

const PROJ_L: &str = "self_attn.attn_op.local_attn.proj_l.weight";

impl<B: Backend + Clone> WanModel<B> {
    /// Builds the model from a checkpoint in any supported layout (see [`super::weights`]).
    pub fn load(
        backend: B,
        config: WanConfig,
        store: &TensorStore,
        attention: AttentionMode,
    ) -> Result<Self> {
        config.validate()?;
        let w = WanWeights::new(store)?;
        let c = &config;
        let d = c.dim;
        // Blocks load in parallel: decoding and converting 14B-class weights is host work that
        // one thread would take tens of seconds over; the uploads queue on the backend's stream.
        // Errors are reported for the lowest failing block, whichever thread finished first.
        let blocks = (0..c.num_layers)
            .into_par_iter()
            .map(|i| Block::load(&backend, &w, c, i))
            .collect::<Vec<_>>()
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        // SLA fine-tuning adds proj_l to every layer; a checkpoint with some but not all is damaged,
        // and zero-filling the gap would run but silently degrade the video.
        if let Some(first) = blocks.iter().position(|b| b.self_attn.has_proj_l())
            && let Some(missing) = blocks.iter().position(|b| !b.self_attn.has_proj_l())
        {
            return Err(CkptError::Missing {
                key: w.key(&format!("blocks.{missing}.{PROJ_L}")),
                hint: format!(
                    " (block {first} has one: every layer of an SLA checkpoint needs proj_l)"
                ),
            }
            .into());
        }
        let head_modulation = w.tensor("head.modulation", &[1, 2, d])?;
        let model = Self {
            patch_embedding: backend.upload_linear(&w.patch_embedding(
                d,
                c.in_dim,
                c.patch_size,
            )?)?,
            time: TimeEmbedding::load(&backend, &w, c)?,
            text: TextEmbedding::load(&backend, &w, c)?,
            blocks,
            head_modulation: backend.reshape(&backend.upload(&head_modulation)?, &[2, d])?,
            head: backend.upload_linear(&w.linear("head.head", c.head_features(), d)?)?,
            rope: Mutex::new(None),
            attention: AttentionMode::Dense,
            config,
            backend,
        };
        model.check_attention(&attention, |i| w.key(&format!("blocks.{i}.{PROJ_L}")))?;
        Ok(Self { attention, ..model })
    }

    fn check_attention(&self, mode: &AttentionMode, key: impl Fn(usize) -> String) -> Result<()> {
        if let Some(params) = mode.sla() {
            params.validate()?;
            if let Some(i) = self.blocks.iter().position(|b| !b.self_attn.has_proj_l()) {
                return Err(CkptError::Missing {
                    key: key(i),
                    hint: " (SLA attention needs the SLA-tuned proj_l of a TurboWan checkpoint; use dense attention for this model)".into(),
                }
                .into());
            }
        }
        Ok(())
    }

    pub fn config(&self) -> &WanConfig {
        &self.config
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn attention(&self) -> AttentionMode {
        self.attention
    }

    /// The checkpoint is SLA-tuned (a TurboWan one): every block has its `proj_l`, so the SLA modes
    /// run. Loading refuses a checkpoint where only some blocks have one.
    pub fn sla_tuned(&self) -> bool {
        self.blocks
            .first()
            .is_some_and(|b| b.self_attn.has_proj_l())
    }

    /// Switches the self-attention mode (e.g. to compare dense and SLA on one set of weights).
    pub fn set_attention(&mut self, mode: AttentionMode) -> Result<()> {
        self.check_attention(&mode, |i| format!("blocks.{i}.{PROJ_L}"))?;
        self.attention = mode;
        Ok(())
    }

    /// Embeds the text encoder's output `[Lctx, text_dim]` and computes every block's keys and
    /// values once for the whole denoising loop.
    pub fn encode_context(&self, context: &B::Tensor) -> Result<TextContext<B>> {
        let b = &self.backend;
        match b.shape(context) {
            [rows, width] if *rows > 0 && *width == self.config.text_dim => {}
            other => {
                return Err(Error::Input(format!(
                    "context must be [rows > 0, {}], got {other:?}",
                    self.config.text_dim
                )));
            }
        }
        let context = self.text.forward(b, context)?;
        let blocks = self
            .blocks
            .iter()
            .map(|block| block.cross_attn.context_kv(b, &context))
            .collect::<Result<_>>()?;
        Ok(TextContext { blocks })
    }

    /// One forward: `latents: [C, F, H, W]` at `timestep` (the value the sinusoid sees, e.g. 988 or
    /// 1000·σ) → velocity `[out_dim, F, H, W]`. `condition` (I2V: mask + image latents, `[in_dim − C,
    /// F, H, W]`) is concatenated to the latents along channels.
    pub fn forward(
        &self,
        latents: &B::Tensor,
        timestep: f64,
        context: &TextContext<B>,
        condition: Option<&B::Tensor>,
    ) -> Result<B::Tensor> {
        self.forward_probed(latents, timestep, context, condition, &mut |_, _| Ok(()))
    }

    /// [`forward`](Self::forward), handing every block's self-attention inputs to `probe` with the
    /// block's index: accuracy harnesses compare attention kernels on a real forward's
    /// activations.
    pub fn forward_probed(
        &self,
        latents: &B::Tensor,
        timestep: f64,
        context: &TextContext<B>,
        condition: Option<&B::Tensor>,
        probe: &mut dyn FnMut(usize, &Qkv<B>) -> Result<()>,
    ) -> Result<B::Tensor> {
        let b = &self.backend;
        let c = &self.config;
        let x = match condition {
            Some(cond) => b.concat(&[latents, cond], 0)?,
            None => latents.clone(),
        };
        let grid = self.check_size(b.shape(&x))?;
        if !timestep.is_finite() {
            return Err(Error::Input(format!(
                "timestep must be finite, got {timestep}"
            )));
        }
        if context.blocks.len() != self.blocks.len() {
            return Err(Error::Input(
                "text context was prepared by another model".into(),
            ));
        }

        let rope = self.rope(grid)?;
        let time = self.time.forward(b, timestep)?;
        let mut stream =
            Stream::new(b.linear(&b.patchify(&x, c.patch_size)?, &self.patch_embedding)?);
        for (i, (block, kv)) in self.blocks.iter().zip(&context.blocks).enumerate() {
            stream = block.forward(
                b,
                stream,
                &time.modulation,
                kv,
                &rope,
                &self.attention,
                &mut |qkv| probe(i, qkv),
            )?;
        }
        let x = stream.resolve(b)?;
        let m = b.add(&self.head_modulation, &time.embedding)?;
        let shift = b.reshape(&b.narrow(&m, 0, 1)?, &[c.dim])?;
        let scale = b.reshape(&b.narrow(&m, 1, 1)?, &[c.dim])?;
        let h = b.layer_norm_modulate(&x, &shift, &scale, c.eps as f32)?;
        let out = b.linear(&h, &self.head)?;
        Ok(b.unpatchify(&out, grid, c.patch_size, c.out_dim)?)
    }

    /// The rotary tables of `grid`, from the cache when the last forward had the same grid.
    fn rope(&self, grid: [usize; 3]) -> Result<Rope<B>> {
        let mut cached = self.rope.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((g, rope)) = cached.as_ref()
            && *g == grid
        {
            return Ok(rope.clone());
        }
        let b = &self.backend;
        let (cos, sin) = rope_tables(grid, self.config.head_dim(), ROPE_THETA)?;
        let rope = Rope {
            cos: b.upload(&cos)?,
            sin: b.upload(&sin)?,
        };
        *cached = Some((grid, rope.clone()));
        Ok(rope)
    }

    /// The token grid of latents of `shape` (`[C, F, H, W]`, a condition's channels included),
    /// refused before any work where the backend's self-attention kernels could not take that
    /// many tokens in the current mode ([`turbine_tensor::Error::TooLarge`]).
    pub fn check_size(&self, shape: &[usize]) -> Result<[usize; 3]> {
        let grid = self.grid(shape)?;
        let sage = matches!(
            self.attention,
            AttentionMode::Sage | AttentionMode::SageSla(_)
        );
        let tokens = grid.iter().product();
        self.backend.check_self_attention_size(
            [tokens, self.config.num_heads, self.config.head_dim()],
            sage,
            self.attention.sla(),
        )?;
        Ok(grid)
    }

    /// The post-patch token grid of a `[C, F, H, W]` input, after checking it.
    fn grid(&self, shape: &[usize]) -> Result<[usize; 3]> {
        let c = &self.config;
        let [ch, f, h, w] = *shape else {
            return Err(Error::Input(format!(
                "latents must be [C, F, H, W], got {shape:?}"
            )));
        };
        if ch != c.in_dim {
            return Err(Error::Input(format!(
                "latents (+ condition) have {ch} channels, the model takes {}",
                c.in_dim
            )));
        }
        let [pt, ph, pw] = c.patch_size;
        if f == 0 || h == 0 || w == 0 || f % pt != 0 || h % ph != 0 || w % pw != 0 {
            return Err(Error::Input(format!(
                "latent size {f}x{h}x{w} must be a non-empty multiple of the patch {pt}x{ph}x{pw}"
            )));
        }
        Ok([f / pt, h / ph, w / pw])
    }
}
