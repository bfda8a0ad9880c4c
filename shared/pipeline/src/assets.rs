//! Where the three models come from: the bundled tiny preset (seeded weights built in memory) or
//! real Wan / TurboWan files on disk.

use std::path::{Path, PathBuf};

use turbine_checkpoint::TensorStore;
use turbine_models::seeded::seeded_store;
use turbine_models::umt5::{UmT5Config, UmT5Tokenizer};
use turbine_models::vae::WanVaeConfig;
use turbine_models::wan::WanConfig;

use crate::{Error, Result};

/// The tokenizer of the tiny preset: the small SentencePiece Unigram model that
/// tools/golden/umt5.py trains for the tokenizer golden test.
const TINY_TOKENIZER: &[u8] = include_bytes!("../../../tests/fixtures/umt5/tokenizer.json");

// Seeds of the tiny preset's three models, fixed so every machine (and every stage service)
// builds the same weights.
const TINY_DIT_SEED: u64 = 0x7e57_0001;
const TINY_TEXT_SEED: u64 = 0x7e57_0002;
const TINY_VAE_SEED: u64 = 0x7e57_0003;

/// Files of a Wan / TurboWan model folder. Defaults follow the upstream folder layout
/// (wan.md §1.1) after `turbine convert` has turned the `.pth` files into safetensors.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelFiles {
    /// A `.safetensors` file, a sharded `*.index.json`, or a folder of shards.
    pub dit: PathBuf,
    /// `config.json` of the DiT; when absent, `dit_preset` names the shape.
    pub dit_config: Option<PathBuf>,
    pub dit_preset: Option<String>,
    pub text_encoder: PathBuf,
    pub tokenizer: PathBuf,
    pub vae: PathBuf,
}

impl ModelFiles {
    /// The conventional files of a model folder: `config.json` +
    /// `diffusion_pytorch_model*.safetensors` (or the folder's shards), the converted
    /// `models_t5_umt5-xxl-enc-bf16.safetensors`, `google/umt5-xxl/tokenizer.json` and the
    /// converted `Wan2.1_VAE.safetensors`.
    pub fn in_dir(dir: &Path) -> Self {
        let index = dir.join("diffusion_pytorch_model.safetensors.index.json");
        let single = dir.join("diffusion_pytorch_model.safetensors");
        let dit = if index.exists() {
            index
        } else if single.exists() {
            single
        } else {
            dir.to_path_buf()
        };
        let config = dir.join("config.json");
        ModelFiles {
            dit,
            dit_config: config.exists().then_some(config),
            dit_preset: None,
            text_encoder: dir.join("models_t5_umt5-xxl-enc-bf16.safetensors"),
            tokenizer: dir.join("google").join("umt5-xxl").join("tokenizer.json"),
            vae: dir.join("Wan2.1_VAE.safetensors"),
        }
    }
}

/// The model set a pipeline runs.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    /// Seeded random weights at test scale: shows the pipeline end to end in seconds on any CPU;
    /// the video is structured noise, not an image of the prompt.
    Tiny,
    Files(ModelFiles),
}

fn open(what: &str, path: &Path) -> Result<TensorStore> {
    if !path.exists() {
        return Err(Error::Assets(format!(
            "{what}: {} does not exist (convert .pth files with `turbine convert`)",
            path.display()
        )));
    }
    Ok(TensorStore::open(path)?)
}

/// What the text stage is built from.
pub(crate) struct TextAssets {
    pub config: UmT5Config,
    pub store: TensorStore,
    pub tokenizer: UmT5Tokenizer,
}

/// Each stage reads only its own files, so a stage service needs no more than its model on disk.
impl ModelSource {
    /// Whether the DiT checkpoint holds TurboDiffusion `-quant` weights (`{linear}.int8_weight`
    /// with 128×128 tile scales): read from its tensor index, no weights loaded.
    pub fn dit_holds_int8(&self) -> Result<bool> {
        match self {
            ModelSource::Tiny => Ok(false),
            ModelSource::Files(files) => Ok(open("DiT", &files.dit)?
                .names()
                .any(|name| name.ends_with(".int8_weight"))),
        }
    }

    /// The text encoder's shape: the tiny preset's, or umT5-XXL for every Wan model.
    pub fn text_config(&self) -> UmT5Config {
        match self {
            ModelSource::Tiny => UmT5Config::tiny(),
            ModelSource::Files(_) => UmT5Config::xxl(),
        }
    }

    pub(crate) fn text(&self) -> Result<TextAssets> {
        let config = self.text_config();
        match self {
            ModelSource::Tiny => Ok(TextAssets {
                store: seeded_store(&config.tensor_shapes(), TINY_TEXT_SEED)?,
                tokenizer: UmT5Tokenizer::from_bytes(TINY_TOKENIZER, config.text_len)?,
                config,
            }),
            ModelSource::Files(files) => {
                if !files.tokenizer.exists() {
                    return Err(Error::Assets(format!(
                        "tokenizer: {} does not exist",
                        files.tokenizer.display()
                    )));
                }
                Ok(TextAssets {
                    store: open("text encoder", &files.text_encoder)?,
                    tokenizer: UmT5Tokenizer::from_file(&files.tokenizer, config.text_len)?,
                    config,
                })
            }
        }
    }

    pub(crate) fn dit(&self) -> Result<(WanConfig, TensorStore)> {
        match self {
            ModelSource::Tiny => {
                let config = WanConfig::tiny();
                let store = seeded_store(&config.tensor_shapes(), TINY_DIT_SEED)?;
                Ok((config, store))
            }
            ModelSource::Files(files) => {
                let store = open("DiT", &files.dit)?;
                let config = match (&files.dit_config, &files.dit_preset) {
                    (_, Some(preset)) => WanConfig::preset(preset)?,
                    (Some(path), None) => {
                        let text = std::fs::read_to_string(path).map_err(|e| {
                            Error::Assets(format!("DiT config {}: {e}", path.display()))
                        })?;
                        WanConfig::from_json(&text)?
                    }
                    (None, None) => {
                        return Err(Error::Assets(format!(
                            "no config.json next to {} and no DiT preset given",
                            files.dit.display()
                        )));
                    }
                };
                Ok((config, store))
            }
        }
    }

    pub(crate) fn vae(&self) -> Result<(WanVaeConfig, TensorStore)> {
        match self {
            ModelSource::Tiny => {
                let config = WanVaeConfig::tiny();
                let store = seeded_store(&config.tensor_shapes(), TINY_VAE_SEED)?;
                Ok((config, store))
            }
            ModelSource::Files(files) => Ok((WanVaeConfig::wan21(), open("VAE", &files.vae)?)),
        }
    }
}
