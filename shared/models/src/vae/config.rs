//! VAE hyper-parameters, the published preset and a tiny one of the same structure.

use crate::{Error, Result};

/// Per-channel statistics of Wan2.1 latents (`WanVAE.__init__`, diffusers' `latents_mean`): the DiT
/// works on `(mu − mean) / std`.
pub const LATENTS_MEAN: [f32; 16] = [
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508, 0.4134, -0.0715, 0.5517,
    -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
];
pub const LATENTS_STD: [f32; 16] = [
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743, 3.2687, 2.1526, 2.8652, 1.5579,
    1.6382, 1.1253, 2.8251, 1.9160,
];

/// The shape of a Wan2.1-style causal video VAE (`_video_vae` of Wan-Video/Wan2.1 `9737cba9c1c3`
/// `wan/modules/vae.py`; diffusers' `AutoencoderKLWan` arguments of the same names). RGB in and
/// out, attention only in the middle blocks (`attn_scales=[]`), no dropout.
#[derive(Debug, Clone, PartialEq)]
pub struct WanVaeConfig {
    /// Latent channels.
    pub z_dim: usize,
    /// Channels of the full-resolution stages.
    pub base_dim: usize,
    /// Channel multiplier per stage, encoder order (the decoder runs them reversed).
    pub dim_mult: Vec<usize>,
    /// Residual blocks per encoder stage; decoder stages have one more.
    pub num_res_blocks: usize,
    /// Whether the downsample after encoder stage `i` also halves time (upstream's
    /// `temperal_downsample`); one entry per stage but the last. The decoder mirrors it.
    pub temporal_downsample: Vec<bool>,
    pub latents_mean: Vec<f32>,
    pub latents_std: Vec<f32>,
}

impl WanVaeConfig {
    /// The Wan2.1 VAE (`Wan2.1_VAE.pth`), also used by Wan2.2 A14B.
    pub fn wan21() -> Self {
        WanVaeConfig {
            z_dim: 16,
            base_dim: 96,
            dim_mult: vec![1, 2, 4, 4],
            num_res_blocks: 2,
            temporal_downsample: vec![false, true, true],
            latents_mean: LATENTS_MEAN.to_vec(),
            latents_std: LATENTS_STD.to_vec(),
        }
    }

    /// Wan2.1's structure at base dim 8 (stage widths 8, 16, 32, 32): the golden-test
    /// configuration (tools/golden/vae.py builds it as `AutoencoderKLWan(base_dim=8)`).
    pub fn tiny() -> Self {
        WanVaeConfig {
            base_dim: 8,
            ..Self::wan21()
        }
    }

    /// Looks a preset up by name.
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "wan2.1" | "wan21" => Ok(Self::wan21()),
            "tiny" => Ok(Self::tiny()),
            other => Err(Error::Config(format!(
                "unknown VAE preset `{other}` (expected one of: wan2.1, tiny)"
            ))),
        }
    }

    /// Frames per latent frame after the first (4 for Wan2.1).
    pub fn temporal_factor(&self) -> usize {
        1 << self.temporal_downsample.iter().filter(|&&t| t).count()
    }

    /// Pixels per latent position along H and W (8 for Wan2.1): every stage but the last halves
    /// them.
    pub fn spatial_factor(&self) -> usize {
        1 << self.temporal_downsample.len()
    }

    /// Video frames decoded from `latent_frames` latents: causal, so the first latent is one frame.
    pub fn video_frames(&self, latent_frames: usize) -> usize {
        match latent_frames {
            0 => 0,
            t => 1 + self.temporal_factor() * (t - 1),
        }
    }

    /// Output channels of encoder stage `i` (stage inputs: `base_dim`, then the previous output).
    pub(super) fn encoder_dim(&self, stage: usize) -> usize {
        self.base_dim * self.dim_mult[stage]
    }

    /// Output channels of decoder stage `i`; its upsample (if any) halves them.
    pub(super) fn decoder_dim(&self, stage: usize) -> usize {
        self.base_dim * self.dim_mult[self.dim_mult.len() - 1 - stage]
    }

    /// Whether decoder stage `i` upsamples time as well as space.
    pub(super) fn decoder_temporal(&self, stage: usize) -> bool {
        self.temporal_downsample[self.temporal_downsample.len() - 1 - stage]
    }

    /// Every tensor of the original-layout state dict with its shape: what seeded demo and
    /// benchmark weights are generated from.
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut s = Shapes(Vec::new());
        let (z, stages) = (self.z_dim, self.dim_mult.len());

        s.conv("encoder.conv1", vec![self.base_dim, 3, 3, 3, 3]);
        let (mut n, mut c) = (0, self.base_dim);
        for stage in 0..stages {
            let o = self.encoder_dim(stage);
            for _ in 0..self.num_res_blocks {
                s.residual(&format!("encoder.downsamples.{n}"), c, o);
                (n, c) = (n + 1, o);
            }
            if stage + 1 < stages {
                s.conv(
                    &format!("encoder.downsamples.{n}.resample.1"),
                    vec![c, c, 3, 3],
                );
                if self.temporal_downsample[stage] {
                    s.conv(
                        &format!("encoder.downsamples.{n}.time_conv"),
                        vec![c, c, 3, 1, 1],
                    );
                }
                n += 1;
            }
        }
        s.middle("encoder", c);
        s.head("encoder", c, 2 * z);
        s.conv("conv1", vec![2 * z, 2 * z, 1, 1, 1]);
        s.conv("conv2", vec![z, z, 1, 1, 1]);

        let mut c = self.decoder_dim(0);
        s.conv("decoder.conv1", vec![c, z, 3, 3, 3]);
        s.middle("decoder", c);
        let mut n = 0;
        for stage in 0..stages {
            let o = self.decoder_dim(stage);
            for _ in 0..=self.num_res_blocks {
                s.residual(&format!("decoder.upsamples.{n}"), c, o);
                (n, c) = (n + 1, o);
            }
            if stage + 1 < stages {
                s.conv(
                    &format!("decoder.upsamples.{n}.resample.1"),
                    vec![c / 2, c, 3, 3],
                );
                if self.decoder_temporal(stage) {
                    s.conv(
                        &format!("decoder.upsamples.{n}.time_conv"),
                        vec![2 * c, c, 3, 1, 1],
                    );
                }
                (n, c) = (n + 1, c / 2);
            }
        }
        s.head("decoder", c, 3);
        s.0
    }

    pub fn validate(&self) -> Result<()> {
        let fail = |msg: String| Err(Error::Config(msg));
        for (name, v) in [
            ("z_dim", self.z_dim),
            ("base_dim", self.base_dim),
            ("num_res_blocks", self.num_res_blocks),
        ] {
            if v == 0 {
                return fail(format!("{name} must be > 0"));
            }
        }
        if self.dim_mult.is_empty() || self.dim_mult.contains(&0) {
            return fail(format!(
                "dim_mult {:?} must be non-empty without zeros",
                self.dim_mult
            ));
        }
        if self.temporal_downsample.len() + 1 != self.dim_mult.len() {
            return fail(format!(
                "temporal_downsample has {} entries; {} stages need {}",
                self.temporal_downsample.len(),
                self.dim_mult.len(),
                self.dim_mult.len() - 1
            ));
        }
        for (name, v) in [
            ("latents_mean", &self.latents_mean),
            ("latents_std", &self.latents_std),
        ] {
            if v.len() != self.z_dim || !v.iter().all(|x| x.is_finite()) {
                return fail(format!(
                    "{name} must hold {} finite values, got {}",
                    self.z_dim,
                    v.len()
                ));
            }
        }
        if self.latents_std.iter().any(|&s| s <= 0.0) {
            return fail("latents_std must be positive".into());
        }
        Ok(())
    }
}

/// The original-layout tensor list under construction.
struct Shapes(Vec<(String, Vec<usize>)>);

impl Shapes {
    fn conv(&mut self, name: &str, weight: Vec<usize>) {
        self.0.push((format!("{name}.bias"), vec![weight[0]]));
        self.0.push((format!("{name}.weight"), weight));
    }

    fn residual(&mut self, name: &str, i: usize, o: usize) {
        self.0
            .push((format!("{name}.residual.0.gamma"), vec![i, 1, 1, 1]));
        self.0
            .push((format!("{name}.residual.3.gamma"), vec![o, 1, 1, 1]));
        self.conv(&format!("{name}.residual.2"), vec![o, i, 3, 3, 3]);
        self.conv(&format!("{name}.residual.6"), vec![o, o, 3, 3, 3]);
        if i != o {
            self.conv(&format!("{name}.shortcut"), vec![o, i, 1, 1, 1]);
        }
    }

    fn middle(&mut self, side: &str, c: usize) {
        self.residual(&format!("{side}.middle.0"), c, c);
        self.0
            .push((format!("{side}.middle.1.norm.gamma"), vec![c, 1, 1]));
        self.conv(&format!("{side}.middle.1.to_qkv"), vec![3 * c, c, 1, 1]);
        self.conv(&format!("{side}.middle.1.proj"), vec![c, c, 1, 1]);
        self.residual(&format!("{side}.middle.2"), c, c);
    }

    fn head(&mut self, side: &str, c: usize, out: usize) {
        self.0
            .push((format!("{side}.head.0.gamma"), vec![c, 1, 1, 1]));
        self.conv(&format!("{side}.head.2"), vec![out, c, 3, 3, 3]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wan21_matches_published_parameter_and_key_counts() {
        let shapes = WanVaeConfig::wan21().tensor_shapes();
        let count = |prefix: &str| -> usize {
            shapes
                .iter()
                .filter(|(n, _)| n.starts_with(prefix))
                .map(|(_, s)| s.iter().product::<usize>())
                .sum()
        };
        // wan.md §5.1 (measured): encoder, decoder, quant convs, total; 194 tensors.
        assert_eq!(count("encoder."), 53_595_872);
        assert_eq!(count("decoder."), 73_295_331);
        assert_eq!(count("conv"), 1_328);
        assert_eq!(shapes.len(), 194);
        let mut names: Vec<_> = shapes.iter().map(|(n, _)| n).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 194);
    }

    #[test]
    fn factors() {
        let c = WanVaeConfig::wan21();
        assert_eq!((c.temporal_factor(), c.spatial_factor()), (4, 8));
        assert_eq!(c.video_frames(21), 81);
        assert_eq!(c.video_frames(1), 1);
        assert_eq!(WanVaeConfig::preset("tiny").unwrap(), WanVaeConfig::tiny());
        assert!(WanVaeConfig::preset("wan2.2").is_err());
    }

    #[test]
    fn rejects_bad_shapes() {
        let cases = [
            (
                WanVaeConfig {
                    temporal_downsample: vec![true],
                    ..WanVaeConfig::tiny()
                },
                "temporal_downsample",
            ),
            (
                WanVaeConfig {
                    latents_std: [vec![0.0], vec![1.0; 15]].concat(),
                    ..WanVaeConfig::tiny()
                },
                "positive",
            ),
            (
                WanVaeConfig {
                    z_dim: 8,
                    ..WanVaeConfig::tiny()
                },
                "latents_mean",
            ),
            (
                WanVaeConfig {
                    dim_mult: vec![],
                    temporal_downsample: vec![],
                    ..WanVaeConfig::tiny()
                },
                "dim_mult",
            ),
        ];
        for (config, needle) in cases {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }
}
