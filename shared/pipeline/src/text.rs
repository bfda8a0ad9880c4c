//! The text stage: prompt → tokens → umT5 → the prompt's context, which the DiT pads
//! ([`crate::DenoiseStage::context`]).

use std::time::Instant;

use turbine_models::umt5::{UmT5Config, UmT5Encoder, UmT5Tokenizer};
use turbine_tensor::Backend;

use crate::{Error, ModelLoad, ModelSource, Result};

/// The tokenizer and umT5 encoder.
pub struct TextStage<B: Backend> {
    tokenizer: UmT5Tokenizer,
    encoder: UmT5Encoder<B>,
    load: ModelLoad,
}

/// An encoded prompt.
pub struct EncodedPrompt<B: Backend> {
    /// `[tokens, d_model]`: the prompt's rows, as upstream's encoder returns them before Wan
    /// pads them with zero rows to `text_len` (which [`crate::DenoiseStage::context`] does).
    pub context: B::Tensor,
    /// Tokens kept, `</s>` included.
    pub tokens: usize,
    /// The prompt was longer than `text_len` tokens and was cut.
    pub truncated: bool,
}

impl<B: Backend> TextStage<B> {
    pub fn load(backend: B, source: &ModelSource) -> Result<Self> {
        let start = Instant::now();
        let assets = source.text()?;
        let encoder = UmT5Encoder::load(backend, assets.config, &assets.store)?;
        let load = ModelLoad::finish(start, encoder.backend(), &assets.store)?;
        if assets.tokenizer.vocab_size() > encoder.config().vocab_size {
            return Err(Error::Assets(format!(
                "the tokenizer has {} ids, the text encoder's table {}",
                assets.tokenizer.vocab_size(),
                encoder.config().vocab_size
            )));
        }
        Ok(Self {
            tokenizer: assets.tokenizer,
            encoder,
            load,
        })
    }

    /// How the encoder (and tokenizer) loaded.
    pub fn load_report(&self) -> ModelLoad {
        self.load
    }

    pub fn config(&self) -> &UmT5Config {
        self.encoder.config()
    }

    pub fn backend(&self) -> &B {
        self.encoder.backend()
    }

    /// Encodes `prompt`; `field` names it in errors. With `allow_empty`, a blank prompt is the
    /// unconditional prompt of classifier-free guidance: diffusers' default `""`, which the
    /// tokenizer turns into `</s>` alone.
    pub fn encode(
        &self,
        field: &'static str,
        prompt: &str,
        allow_empty: bool,
    ) -> Result<EncodedPrompt<B>> {
        let tokens = if allow_empty && prompt.trim().is_empty() {
            self.tokenizer.end_of_text()
        } else {
            self.tokenizer
                .encode(prompt)
                .map_err(|e| Error::invalid(field, e.to_string()))?
        };
        Ok(EncodedPrompt {
            context: self.encoder.encode(&tokens.ids)?,
            tokens: tokens.ids.len(),
            truncated: tokens.truncated(),
        })
    }

    /// Encodes of `</s>` tokens, so the first request pays no one-time costs (kernel compilation,
    /// allocator growth) and a broken model fails before serving: on a GPU at the lengths up to
    /// `text_len` whose GEMMs launch every kernel any prompt length would
    /// ([`Backend::warm_up_gemm_rows`]), so that no request pays a kernel's first launch; and at
    /// one token (the unconditional prompt) unless that was among them.
    pub fn warm_up(&self) -> Result<()> {
        let lengths = self
            .backend()
            .warm_up_gemm_rows(self.config().text_len, |len| self.warm_up_at(len))?;
        if !lengths.contains(&1) {
            self.warm_up_at(1)?;
        }
        Ok(())
    }

    /// One encode at `prompt`'s size: as many tokens as it takes (all `</s>`, not its own), for a
    /// process that serves that one prompt. On a GPU the GEMM kernels change with the row count,
    /// and the first launch of each costs milliseconds (a new length's first encode 12–32 ms more
    /// than its next at umT5-XXL, bench/results/2026-11-29-encoder-asm.md): paid here, not by
    /// the request. A prompt the tokenizer refuses warms up at one token and fails later with
    /// its own error.
    pub fn warm_up_for(&self, prompt: &str) -> Result<()> {
        self.warm_up_at(self.tokenizer.encode(prompt).map_or(1, |t| t.ids.len()))
    }

    /// One encode of `len` `</s>` tokens.
    fn warm_up_at(&self, len: usize) -> Result<()> {
        let eos = self.tokenizer.end_of_text().ids;
        let ids: Vec<u32> = eos.iter().cycle().take(len).copied().collect();
        self.encoder.encode(&ids)?;
        Ok(())
    }
}
