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

/// Seeds of the tiny preset's three models, fixed so every machine renders the same demo.
const TINY_SEEDS: [u64; 3] = [0x7e57_0001, 0x7e57_0002, 0x7e57_0003];

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

/// Everything needed to build the models, read and checked.
pub(crate) struct LoadedAssets {
    pub dit_config: WanConfig,
    pub dit: TensorStore,
    pub text_config: UmT5Config,
    pub text: TensorStore,
    pub tokenizer: UmT5Tokenizer,
    pub vae_config: WanVaeConfig,
    pub vae: TensorStore,
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

impl ModelSource {
    pub(crate) fn load(&self) -> Result<LoadedAssets> {
        match self {
            ModelSource::Tiny => {
                let (dit_config, text_config, vae_config) =
                    (WanConfig::tiny(), UmT5Config::tiny(), WanVaeConfig::tiny());
                let [dit_seed, text_seed, vae_seed] = TINY_SEEDS;
                Ok(LoadedAssets {
                    dit: seeded_store(&dit_config.tensor_shapes(), dit_seed)?,
                    text: seeded_store(&text_config.tensor_shapes(), text_seed)?,
                    vae: seeded_store(&vae_config.tensor_shapes(), vae_seed)?,
                    tokenizer: UmT5Tokenizer::from_bytes(TINY_TOKENIZER, text_config.text_len)?,
                    dit_config,
                    text_config,
                    vae_config,
                })
            }
            ModelSource::Files(files) => {
                let dit = open("DiT", &files.dit)?;
                let dit_config = match (&files.dit_config, &files.dit_preset) {
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
                let text_config = UmT5Config::xxl();
                if !files.tokenizer.exists() {
                    return Err(Error::Assets(format!(
                        "tokenizer: {} does not exist",
                        files.tokenizer.display()
                    )));
                }
                Ok(LoadedAssets {
                    dit,
                    text: open("text encoder", &files.text_encoder)?,
                    vae: open("VAE", &files.vae)?,
                    tokenizer: UmT5Tokenizer::from_file(&files.tokenizer, text_config.text_len)?,
                    dit_config,
                    text_config,
                    vae_config: WanVaeConfig::wan21(),
                })
            }
        }
    }
}
