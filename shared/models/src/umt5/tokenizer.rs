//! umT5's SentencePiece Unigram tokenizer, read from a Hugging Face `tokenizer.json` (shipped as
//! `google/umt5-xxl/tokenizer.json` in every Wan checkpoint folder) by the pure-Rust `tokenizers`
//! crate, with Wan's prompt cleaning, `</s>` and truncation (wan.md §4).

use std::path::Path;

use tokenizers::Tokenizer;

use super::clean::clean_prompt;
use crate::{Error, Result};

const EOS: &str = "</s>";

pub struct UmT5Tokenizer {
    tokenizer: Tokenizer,
    eos: u32,
    max_len: usize,
}

/// A tokenized prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    /// The ids, ending in `</s>`, at most `max_len` of them, unpadded. Their count is Wan's
    /// `seq_len`: the rows of the encoder output that carry the prompt.
    pub ids: Vec<u32>,
    /// How many ids the whole prompt would take (with `</s>`); more than `ids.len()` when the
    /// prompt was truncated.
    pub untruncated_len: usize,
}

impl Tokens {
    pub fn truncated(&self) -> bool {
        self.untruncated_len > self.ids.len()
    }
}

impl UmT5Tokenizer {
    /// Loads `tokenizer.json`. Prompts are cut to `max_len` ids including `</s>` (Wan: 512,
    /// [`super::UmT5Config::text_len`]).
    pub fn from_file(path: impl AsRef<Path>, max_len: usize) -> Result<Self> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        Self::new(Tokenizer::from_file(path), &origin, max_len)
    }

    /// [`UmT5Tokenizer::from_file`] over the bytes of a `tokenizer.json` (bundled tokenizers).
    pub fn from_bytes(json: &[u8], max_len: usize) -> Result<Self> {
        Self::new(Tokenizer::from_bytes(json), "<bundled>", max_len)
    }

    fn new(loaded: tokenizers::Result<Tokenizer>, origin: &str, max_len: usize) -> Result<Self> {
        let fail = |msg: String| Error::Config(format!("tokenizer {origin}: {msg}"));
        if max_len == 0 {
            return Err(fail("max_len must leave room for `</s>`".into()));
        }
        let mut tokenizer = loaded.map_err(|e| fail(e.to_string()))?;
        // `</s>` and truncation are applied by `encode`, identically for every conversion of the
        // SentencePiece model: some append `</s>` in a post-processor and others do not, and a
        // file may carry its own truncation or padding settings.
        tokenizer
            .with_truncation(None)
            .map_err(|e| fail(e.to_string()))?;
        tokenizer.with_padding(None);
        let eos = tokenizer
            .token_to_id(EOS)
            .ok_or_else(|| fail(format!("no `{EOS}` token")))?;
        Ok(Self {
            tokenizer,
            eos,
            max_len,
        })
    }

    /// The tokens of the empty prompt, `</s>` alone: the unconditional branch of classifier-free
    /// guidance with diffusers' default negative prompt `""`.
    pub fn end_of_text(&self) -> Tokens {
        Tokens {
            ids: vec![self.eos],
            untruncated_len: 1,
        }
    }

    /// Number of ids the tokenizer can produce (at most the encoder's `vocab_size`: umT5-XXL's
    /// embedding table is padded past its tokenizer's vocabulary).
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Cleans and tokenizes a prompt: no BOS, cut to `max_len − 1` pieces, then `</s>`, as
    /// `T5TokenizerFast(..., max_length=512, truncation=True)` does. A prompt with nothing left
    /// after cleaning is an error.
    pub fn encode(&self, prompt: &str) -> Result<Tokens> {
        let text = clean_prompt(prompt);
        if text.is_empty() {
            return Err(Error::Input(
                "the prompt is empty (after whitespace and HTML cleaning)".into(),
            ));
        }
        let encoding = self
            .tokenizer
            .encode_fast(text.as_str(), false)
            .map_err(|e| Error::Input(format!("tokenizing the prompt: {e}")))?;
        let mut ids = encoding.get_ids().to_vec();
        let untruncated_len = ids.len() + 1;
        ids.truncate(self.max_len - 1);
        ids.push(self.eos);
        Ok(Tokens {
            ids,
            untruncated_len,
        })
    }
}
