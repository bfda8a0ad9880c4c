//! Encoder hyper-parameters and the presets.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The shape of a umT5 encoder, with the field names of the Hugging Face `config.json`
/// (`UMT5Config`), so `google/umt5-xxl/config.json` parses as is.
///
/// Wan's `umt5_xxl()` (`wan/modules/t5.py` of Wan-Video/Wan2.1 `9737cba9c1c3`) and
/// `google/umt5-xxl` describe the same encoder; see shared/reference/wan.md §4.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UmT5Config {
    pub vocab_size: usize,
    pub d_model: usize,
    /// Width of one attention head.
    pub d_kv: usize,
    pub d_ff: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    /// Relative-position buckets, both directions together.
    #[serde(rename = "relative_attention_num_buckets", default = "default_buckets")]
    pub num_buckets: usize,
    /// Distance from which all relative positions share the last bucket of their direction.
    #[serde(
        rename = "relative_attention_max_distance",
        default = "default_max_distance"
    )]
    pub max_distance: usize,
    #[serde(rename = "layer_norm_epsilon", default = "default_eps")]
    pub eps: f64,
    /// Only the gated tanh-GELU FFN of umT5 is implemented; the field exists so that a T5 v1.0
    /// (`"relu"`) config is refused instead of silently run with the wrong FFN.
    #[serde(default = "default_ffn")]
    pub feed_forward_proj: String,
    /// Token budget of a prompt including `</s>`: the rows of the longest context, which Wan
    /// pads every shorter one to before its DiT.
    #[serde(default = "default_text_len")]
    pub text_len: usize,
}

/// The token embedding's name in the original layout.
const EMBEDDING: &str = "token_embedding.weight";

fn default_buckets() -> usize {
    32
}
fn default_max_distance() -> usize {
    128
}
fn default_eps() -> f64 {
    1e-6
}
fn default_ffn() -> String {
    "gated-gelu".into()
}
fn default_text_len() -> usize {
    512
}

impl UmT5Config {
    /// umT5-XXL's encoder, the text encoder of every Wan2.1 / Wan2.2 model.
    pub fn xxl() -> Self {
        UmT5Config {
            vocab_size: 256_384,
            d_model: 4096,
            d_kv: 64,
            d_ff: 10_240,
            num_layers: 24,
            num_heads: 64,
            num_buckets: default_buckets(),
            max_distance: default_max_distance(),
            eps: default_eps(),
            feed_forward_proj: default_ffn(),
            text_len: default_text_len(),
        }
    }

    /// A two-layer encoder whose output width is the tiny DiT's `text_dim` (64) and whose vocabulary
    /// is the test tokenizer's: the golden-test configuration (tools/golden/umt5.py).
    pub fn tiny() -> Self {
        UmT5Config {
            vocab_size: 512,
            d_model: 64,
            d_kv: 16,
            d_ff: 128,
            num_layers: 2,
            num_heads: 4,
            ..Self::xxl()
        }
    }

    /// Looks a preset up by name.
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "xxl" | "umt5-xxl" => Ok(Self::xxl()),
            "tiny" => Ok(Self::tiny()),
            other => Err(Error::Config(format!(
                "unknown umT5 preset `{other}` (expected one of: xxl, tiny)"
            ))),
        }
    }

    /// Parses a Hugging Face `config.json` and validates it.
    pub fn from_json(text: &str) -> Result<Self> {
        let config: Self =
            serde_json::from_str(text).map_err(|e| Error::Config(format!("config.json: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// Width of the concatenated heads (equal to `d_model` in umT5, but not required to be).
    pub fn inner_dim(&self) -> usize {
        self.num_heads * self.d_kv
    }

    /// Parameters the encoder keeps on its backend: every tensor but the token embedding, which
    /// stays in host memory (its rows are gathered there). What placing umT5 on a GPU costs.
    pub fn backend_parameters(&self) -> usize {
        self.tensor_shapes()
            .iter()
            .filter(|(name, _)| name != EMBEDDING)
            .map(|(_, shape)| shape.iter().product::<usize>())
            .sum()
    }

    /// Every tensor of the original-layout state dict with its shape: what seeded demo and
    /// benchmark weights are generated from.
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (d, inner, f) = (self.d_model, self.inner_dim(), self.d_ff);
        let mut out = vec![(EMBEDDING.to_string(), vec![self.vocab_size, d])];
        for i in 0..self.num_layers {
            let p = |n: &str| format!("blocks.{i}.{n}");
            out.push((p("norm1.weight"), vec![d]));
            for m in ["q", "k", "v"] {
                out.push((p(&format!("attn.{m}.weight")), vec![inner, d]));
            }
            out.push((p("attn.o.weight"), vec![d, inner]));
            out.push((
                p("pos_embedding.embedding.weight"),
                vec![self.num_buckets, self.num_heads],
            ));
            out.push((p("norm2.weight"), vec![d]));
            out.push((p("ffn.gate.0.weight"), vec![f, d]));
            out.push((p("ffn.fc1.weight"), vec![f, d]));
            out.push((p("ffn.fc2.weight"), vec![d, f]));
        }
        out.push(("norm.weight".to_string(), vec![d]));
        out
    }

    pub fn validate(&self) -> Result<()> {
        let fail = |msg: String| Err(Error::Config(msg));
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("d_model", self.d_model),
            ("d_kv", self.d_kv),
            ("d_ff", self.d_ff),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
            ("text_len", self.text_len),
        ] {
            if v == 0 {
                return fail(format!("umT5 {name} must be > 0"));
            }
        }
        // Each direction has num_buckets/2 buckets, half of them exact: at least one exact bucket,
        // and a log range that starts below max_distance.
        let exact = self.num_buckets / 4;
        if !self.num_buckets.is_multiple_of(2) || exact == 0 || self.max_distance <= exact {
            return fail(format!(
                "umT5 relative attention needs an even num_buckets >= 4 and max_distance > \
                 num_buckets/4, got {} buckets, max distance {}",
                self.num_buckets, self.max_distance
            ));
        }
        if self.feed_forward_proj != "gated-gelu" {
            return fail(format!(
                "umT5 feed_forward_proj `{}` is not supported (only gated-gelu)",
                self.feed_forward_proj
            ));
        }
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return fail(format!("umT5 eps {} must be a positive number", self.eps));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxl_matches_published_parameter_count() {
        // wan.md §4: 5,680,910,336 parameters, in the original state dict and in UMT5EncoderModel.
        let total: usize = UmT5Config::xxl()
            .tensor_shapes()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum();
        assert_eq!(total, 5_680_910_336);
        // Less the 256,384 x 4,096 token embedding, which the encoder keeps on the host: 8.63 GiB
        // in bf16 (the GPU encoder was measured holding 8.66 GiB with its activations).
        assert_eq!(
            UmT5Config::xxl().backend_parameters(),
            5_680_910_336 - 256_384 * 4096
        );
    }

    #[test]
    fn parses_hugging_face_config_json() {
        // google/umt5-xxl config.json, trimmed of fields the encoder does not use.
        let json = r#"{"architectures": ["MT5ForConditionalGeneration"], "d_ff": 10240, "d_kv": 64,
            "d_model": 4096, "decoder_start_token_id": 0, "dropout_rate": 0.1, "eos_token_id": 1,
            "feed_forward_proj": "gated-gelu", "layer_norm_epsilon": 1e-06, "model_type": "umt5",
            "num_decoder_layers": 24, "num_heads": 64, "num_layers": 24, "pad_token_id": 0,
            "relative_attention_max_distance": 128, "relative_attention_num_buckets": 32,
            "tie_word_embeddings": false, "vocab_size": 256384}"#;
        assert_eq!(UmT5Config::from_json(json).unwrap(), UmT5Config::xxl());
    }

    #[test]
    fn rejects_bad_configs() {
        let relu = r#"{"vocab_size": 32128, "d_model": 512, "d_kv": 64, "d_ff": 2048,
            "num_layers": 6, "num_heads": 8, "feed_forward_proj": "relu"}"#;
        let err = UmT5Config::from_json(relu).unwrap_err().to_string();
        assert!(err.contains("relu"), "{err}");
        let odd = UmT5Config {
            num_buckets: 3,
            ..UmT5Config::tiny()
        };
        assert!(odd.validate().unwrap_err().to_string().contains("buckets"));
        assert!(UmT5Config::preset("huge").is_err());
        assert_eq!(UmT5Config::preset("xxl").unwrap(), UmT5Config::xxl());
    }
}
