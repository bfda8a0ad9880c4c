//! DiT hyper-parameters and the published presets.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The shape of a Wan DiT, as the original `config.json` (`"_class_name": "WanModel"`) spells it.
///
/// Presets follow `wan/configs/*.py` of Wan-Video/Wan2.1 (`9737cba9c1c3`) and Wan2.2
/// (`42bf4cfaa384`); see shared/reference/wan.md §1.1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WanConfig {
    /// Hidden size D.
    pub dim: usize,
    pub ffn_dim: usize,
    /// Width of the sinusoidal time embedding.
    #[serde(default = "default_freq_dim")]
    pub freq_dim: usize,
    /// Latent channels in: 16 for T2V, 36 for I2V (16 noisy + 4 mask + 16 condition).
    pub in_dim: usize,
    pub out_dim: usize,
    pub num_heads: usize,
    pub num_layers: usize,
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// Width of the text encoder's output (4096 for umT5-XXL).
    #[serde(default = "default_text_dim")]
    pub text_dim: usize,
    #[serde(default = "default_patch")]
    pub patch_size: [usize; 3],
}

fn default_freq_dim() -> usize {
    256
}
fn default_eps() -> f64 {
    1e-6
}
fn default_text_dim() -> usize {
    4096
}
fn default_patch() -> [usize; 3] {
    [1, 2, 2]
}

impl WanConfig {
    fn wan(dim: usize, ffn_dim: usize, num_heads: usize, num_layers: usize, in_dim: usize) -> Self {
        WanConfig {
            dim,
            ffn_dim,
            freq_dim: default_freq_dim(),
            in_dim,
            out_dim: 16,
            num_heads,
            num_layers,
            eps: default_eps(),
            text_dim: default_text_dim(),
            patch_size: default_patch(),
        }
    }

    /// Wan2.1 T2V-1.3B (and TurboWan2.1-T2V-1.3B).
    pub fn t2v_1_3b() -> Self {
        Self::wan(1536, 8960, 12, 30, 16)
    }

    /// Wan2.1 T2V-14B, and each expert of Wan2.2 T2V-A14B.
    pub fn t2v_14b() -> Self {
        Self::wan(5120, 13824, 40, 40, 16)
    }

    /// Each expert of Wan2.2 I2V-A14B (36 input channels, no CLIP branch).
    pub fn i2v_a14b() -> Self {
        Self::wan(5120, 13824, 40, 40, 36)
    }

    /// A two-layer DiT with the real head size (128) and RoPE split: the bundled demo model and the
    /// golden-test configuration (tools/golden/wan_dit.py).
    pub fn tiny() -> Self {
        WanConfig {
            text_dim: 64,
            ..Self::wan(256, 384, 2, 2, 16)
        }
    }

    /// Looks a preset up by name.
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "1.3b" | "t2v-1.3b" => Ok(Self::t2v_1_3b()),
            "14b" | "t2v-14b" => Ok(Self::t2v_14b()),
            "i2v-a14b" => Ok(Self::i2v_a14b()),
            "tiny" => Ok(Self::tiny()),
            other => Err(Error::Config(format!(
                "unknown preset `{other}` (expected one of: 1.3b, 14b, i2v-a14b, tiny)"
            ))),
        }
    }

    /// Parses a `config.json` and validates it.
    pub fn from_json(text: &str) -> Result<Self> {
        let config: Self =
            serde_json::from_str(text).map_err(|e| Error::Config(format!("config.json: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    pub fn head_dim(&self) -> usize {
        self.dim / self.num_heads.max(1)
    }

    /// FLOPs of one forward over `tokens` video tokens and `text_tokens` context tokens, counted
    /// as shared/reference/wan.md §2 does (2 per multiply-add; the context's cross-attention keys
    /// and values included although a prompt computes them once; patch embedding and head left
    /// out), so rates compare with the PyTorch peer's.
    pub fn forward_flops(&self, tokens: usize, text_tokens: usize) -> f64 {
        let (l, t) = (tokens as f64, text_tokens as f64);
        let (d, f) = (self.dim as f64, self.ffn_dim as f64);
        let linear = 8.0 * l * d * d + 4.0 * l * d * d + 4.0 * t * d * d + 4.0 * l * d * f;
        let attention = 4.0 * l * l * d + 4.0 * l * t * d;
        self.num_layers as f64 * (linear + attention)
    }

    /// Input features of the patch embedding, ordered `(c, kt, kh, kw)`.
    pub fn patch_features(&self) -> usize {
        self.in_dim * self.patch_size.iter().product::<usize>()
    }

    /// Output features of the head, ordered `(kt, kh, kw, c)`.
    pub fn head_features(&self) -> usize {
        self.out_dim * self.patch_size.iter().product::<usize>()
    }

    /// Every tensor of the original-layout state dict with its shape (T2V, no SLA `proj_l`):
    /// what seeded demo and benchmark weights are generated from.
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (d, f) = (self.dim, self.ffn_dim);
        let [pt, ph, pw] = self.patch_size;
        let mut out: Vec<(String, Vec<usize>)> = Vec::new();
        let mut linear = |name: String, o: usize, i: usize| {
            out.push((format!("{name}.weight"), vec![o, i]));
            out.push((format!("{name}.bias"), vec![o]));
        };
        linear("text_embedding.0".into(), d, self.text_dim);
        linear("text_embedding.2".into(), d, d);
        linear("time_embedding.0".into(), d, self.freq_dim);
        linear("time_embedding.2".into(), d, d);
        linear("time_projection.1".into(), 6 * d, d);
        linear("head.head".into(), self.head_features(), d);
        for i in 0..self.num_layers {
            for attn in ["self_attn", "cross_attn"] {
                for p in ["q", "k", "v", "o"] {
                    linear(format!("blocks.{i}.{attn}.{p}"), d, d);
                }
            }
            linear(format!("blocks.{i}.ffn.0"), f, d);
            linear(format!("blocks.{i}.ffn.2"), d, f);
        }
        out.push((
            "patch_embedding.weight".into(),
            vec![d, self.in_dim, pt, ph, pw],
        ));
        out.push(("patch_embedding.bias".into(), vec![d]));
        out.push(("head.modulation".into(), vec![1, 2, d]));
        for i in 0..self.num_layers {
            out.push((format!("blocks.{i}.modulation"), vec![1, 6, d]));
            for attn in ["self_attn", "cross_attn"] {
                for n in ["norm_q", "norm_k"] {
                    out.push((format!("blocks.{i}.{attn}.{n}.weight"), vec![d]));
                }
            }
            out.push((format!("blocks.{i}.norm3.weight"), vec![d]));
            out.push((format!("blocks.{i}.norm3.bias"), vec![d]));
        }
        out
    }

    /// The SLA `proj_l` of every block (TurboWan checkpoints), `[Dh, Dh]` and `[Dh]`.
    pub fn proj_l_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let hd = self.head_dim();
        (0..self.num_layers)
            .flat_map(|i| {
                let name = format!("blocks.{i}.self_attn.attn_op.local_attn.proj_l");
                [
                    (format!("{name}.weight"), vec![hd, hd]),
                    (format!("{name}.bias"), vec![hd]),
                ]
            })
            .collect()
    }

    pub fn validate(&self) -> Result<()> {
        let fail = |msg: String| Err(Error::Config(msg));
        if self.num_heads == 0 || !self.dim.is_multiple_of(self.num_heads) {
            return fail(format!(
                "dim {} is not a multiple of num_heads {}",
                self.dim, self.num_heads
            ));
        }
        let head_dim = self.head_dim();
        // 3-D RoPE rotates pairs and splits them over three axes, each needing at least one pair.
        if !head_dim.is_multiple_of(2) || head_dim < 6 {
            return fail(format!("head_dim {head_dim} must be even and at least 6"));
        }
        for (name, v) in [
            ("ffn_dim", self.ffn_dim),
            ("freq_dim", self.freq_dim),
            ("in_dim", self.in_dim),
            ("out_dim", self.out_dim),
            ("num_layers", self.num_layers),
            ("text_dim", self.text_dim),
        ] {
            if v == 0 {
                return fail(format!("{name} must be > 0"));
            }
        }
        if !self.freq_dim.is_multiple_of(2) {
            return fail(format!("freq_dim {} must be even", self.freq_dim));
        }
        if self.patch_size.contains(&0) {
            return fail(format!("patch_size {:?} has a zero", self.patch_size));
        }
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return fail(format!("eps {} must be a positive number", self.eps));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_flops_match_the_reference_table() {
        // shared/reference/wan.md §2: 283.0 TF (1.3B 480P), 6,523.4 TF (14B 720P).
        let tf = |c: WanConfig, l| c.forward_flops(l, 512) / 1e12;
        assert!((tf(WanConfig::t2v_1_3b(), 32_760) - 283.0).abs() < 0.5);
        assert!((tf(WanConfig::t2v_14b(), 75_600) - 6523.4).abs() < 0.5);
    }

    /// Parameter counts of wan.md §1.1 (measured from the diffusers models).
    fn params(c: &WanConfig) -> usize {
        let (d, f) = (c.dim, c.ffn_dim);
        let attn = 4 * (d * d + d) + 2 * d;
        let block = 2 * attn + 2 * d + 2 * d * f + f + d + 6 * d;
        let embed = c.patch_features() * d + d;
        let text = c.text_dim * d + d + d * d + d;
        let time = c.freq_dim * d + d + d * d + d + d * 6 * d + 6 * d;
        let head = d * c.head_features() + c.head_features() + 2 * d;
        c.num_layers * block + embed + text + time + head
    }

    #[test]
    fn tensor_list_matches_parameter_count_and_key_count() {
        for c in [WanConfig::t2v_1_3b(), WanConfig::t2v_14b()] {
            let shapes = c.tensor_shapes();
            let total: usize = shapes
                .iter()
                .map(|(_, s)| s.iter().product::<usize>())
                .sum();
            assert_eq!(total, params(&c));
            // wan.md §1.7: 15 non-block tensors + 27 per block.
            assert_eq!(shapes.len(), 15 + 27 * c.num_layers);
        }
    }

    #[test]
    fn presets_match_published_parameter_counts() {
        assert_eq!(params(&WanConfig::t2v_1_3b()), 1_418_996_800);
        assert_eq!(params(&WanConfig::t2v_14b()), 14_288_491_584);
        assert_eq!(params(&WanConfig::i2v_a14b()), 14_288_901_184);
    }

    #[test]
    fn parses_original_config_json() {
        let json = r#"{"_class_name": "WanModel", "_diffusers_version": "0.30.0", "model_type": "t2v",
            "dim": 1536, "eps": 1e-06, "ffn_dim": 8960, "freq_dim": 256, "in_dim": 16, "num_heads": 12,
            "num_layers": 30, "out_dim": 16, "text_len": 512}"#;
        assert_eq!(WanConfig::from_json(json).unwrap(), WanConfig::t2v_1_3b());
    }

    #[test]
    fn rejects_bad_shapes() {
        let bad = WanConfig {
            num_heads: 7,
            ..WanConfig::tiny()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("num_heads")
        );
        assert!(WanConfig::preset("huge").is_err());
    }
}
