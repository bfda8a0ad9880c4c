//! Reading the Wan VAE's tensors from a checkpoint in either layout it ships in.
//!
//! The model asks for tensors by their original name (`decoder.upsamples.4.residual.2.weight`, as
//! `Wan2.1_VAE.pth` and its `turbine convert` safetensors spell them); this module detects the
//! checkpoint's layout — original, or diffusers' `AutoencoderKLWan` (shared/reference/wan.md
//! §5.1) — and maps the name to it, and [`Checkpoint`] checks shape and dtype and names the stored
//! key in every error. A common key prefix (`vae.`) is detected and stripped.

use turbine_checkpoint::TensorStore;
use turbine_tensor::backend::fold_time_filter;
use turbine_tensor::{Backend, HostTensor};

use super::WanVaeConfig;
use crate::Result;
use crate::weights::{Checkpoint, rename_prefix};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `Wan2.1_VAE.pth` names.
    Original,
    Diffusers,
}

/// A VAE checkpoint seen through the original names.
pub type VaeWeights<'a> = Checkpoint<'a, Layout>;

/// Keys that exist exactly once in every VAE checkpoint of each layout, used to detect it.
const ORIGINAL_MARKER: &str = "decoder.conv1.weight";
const DIFFUSERS_MARKER: &str = "decoder.conv_in.weight";

impl<'a> VaeWeights<'a> {
    /// The diffusers names depend on `config`'s number of residual blocks per stage.
    pub fn new(store: &'a TensorStore, config: &WanVaeConfig) -> Result<Self> {
        let config = config.clone();
        Checkpoint::detect(
            store,
            &[
                (ORIGINAL_MARKER, Layout::Original),
                (DIFFUSERS_MARKER, Layout::Diffusers),
            ],
            "Wan VAE",
            move |layout, name| match layout {
                Layout::Original => name.to_string(),
                Layout::Diffusers => to_diffusers(&config, name),
            },
        )
    }
}

/// Builds modules from a checkpoint: places shape-checked tensors on the backend and numbers the
/// causal convolutions' cache slots in call order.
pub(super) struct Loader<'a, B: Backend> {
    pub backend: &'a B,
    weights: &'a VaeWeights<'a>,
    slots: usize,
}

impl<'a, B: Backend> Loader<'a, B> {
    pub fn new(backend: &'a B, weights: &'a VaeWeights<'a>) -> Self {
        Loader {
            backend,
            weights,
            slots: 0,
        }
    }

    /// `{name}.weight` of the stored `shape` (`[Cout, Cin, kt, kh, kw]`, or `[Cout, Cin, kh, kw]`
    /// for a Conv2d) as the channels-last filter `[Cout, kt, kh, kw, Cin]` of
    /// [`Backend::conv3d`], and `{name}.bias`.
    pub fn conv(&self, name: &str, shape: &[usize]) -> Result<(B::Tensor, B::Tensor)> {
        let (w, bias) = self.host_conv(name, shape)?;
        self.upload_conv(&w, &bias)
    }

    /// `{name}.weight` of the stored `shape` and `{name}.bias`, on the host as stored.
    pub fn host_conv(&self, name: &str, shape: &[usize]) -> Result<(HostTensor, HostTensor)> {
        Ok((
            self.weights.tensor(&format!("{name}.weight"), shape)?,
            self.weights.tensor(&format!("{name}.bias"), &shape[..1])?,
        ))
    }

    /// A filter in the stored layout (see [`Loader::conv`]) and its bias, on the backend.
    pub fn upload_conv(&self, w: &HostTensor, bias: &HostTensor) -> Result<(B::Tensor, B::Tensor)> {
        let b = self.backend;
        let w5 = match w.shape[..] {
            [o, i, kh, kw] => vec![o, i, 1, kh, kw],
            _ => w.shape.clone(),
        };
        let w = b.permute(&b.reshape(&b.upload_param(w)?, &w5)?, &[0, 2, 3, 4, 1])?;
        Ok((w, b.upload_param(bias)?))
    }

    /// [`Loader::conv`] of a `[Cout, Cin, kt, kh, kw]` filter, its input channels zero-padded to
    /// `width` ≥ Cin for an input stored that wide ([`turbine_tensor::ConvInput::Width`]).
    pub fn conv_wide(
        &self,
        name: &str,
        shape: &[usize; 5],
        width: usize,
    ) -> Result<(B::Tensor, B::Tensor)> {
        let (w, bias) = self.conv(name, shape)?;
        let Some(extra) = width.checked_sub(shape[1]).filter(|&e| e > 0) else {
            return Ok((w, bias));
        };
        let b = self.backend;
        let pad = [shape[0], shape[2], shape[3], shape[4], extra];
        let w = b.concat(&[&w, &b.upload_param(&HostTensor::zeros(pad))?], 4)?;
        Ok((w, bias))
    }

    /// [`Loader::conv`] of a `[Cout, Cin, kt, kh, kw]` filter with its time taps folded into
    /// its input channels, `[Cout, 1, kh, kw, kt·Cin]` (channel `dt·Cin + c`), for an input laid
    /// out by [`Backend::causal_rms_norm_silu_folded`].
    pub fn conv_time_folded(
        &self,
        name: &str,
        shape: &[usize; 5],
    ) -> Result<(B::Tensor, B::Tensor)> {
        let (w, bias) = self.conv(name, shape)?;
        Ok((fold_time_filter(self.backend, &w)?, bias))
    }

    /// An RMS-norm `gamma` of the stored `[C, 1, 1, 1]` (video) or `[C, 1, 1]` (image) shape, as `[C]`.
    pub fn gamma(&self, name: &str, channels: usize, image: bool) -> Result<B::Tensor> {
        let shape: &[usize] = if image {
            &[channels, 1, 1]
        } else {
            &[channels, 1, 1, 1]
        };
        let g = self.backend.upload(&self.weights.tensor(name, shape)?)?;
        Ok(self.backend.reshape(&g, &[channels])?)
    }

    /// The next cache slot.
    pub fn slot(&mut self) -> usize {
        self.slots += 1;
        self.slots - 1
    }

    /// Slots handed out so far: the cache size of what was loaded.
    pub fn slots(&self) -> usize {
        self.slots
    }
}

/// Renames inside a residual block, original → diffusers, matched as prefixes; the resample
/// sub-module names (`resample.1`, `time_conv`) are the same in both layouts.
const RESIDUAL_RENAMES: &[(&str, &str)] = &[
    ("residual.0.", "norm1."),
    ("residual.2.", "conv1."),
    ("residual.3.", "norm2."),
    ("residual.6.", "conv2."),
    ("shortcut.", "conv_shortcut."),
];

fn residual(inner: &str) -> String {
    rename_prefix(inner, RESIDUAL_RENAMES)
}

/// The diffusers key of an original Wan VAE key (wan.md §5.1). The decoder's flat
/// `upsamples.{k}` list becomes `up_blocks.{stage}.{resnets.j | upsamplers.0}`, so the mapping
/// depends on the number of residual blocks per stage.
pub fn to_diffusers(config: &WanVaeConfig, name: &str) -> String {
    let mapped = match name.split_once('.') {
        Some(("conv1", rest)) => Some(format!("quant_conv.{rest}")),
        Some(("conv2", rest)) => Some(format!("post_quant_conv.{rest}")),
        Some((side @ ("encoder" | "decoder"), rest)) => {
            side_to_diffusers(config, rest).map(|r| format!("{side}.{r}"))
        }
        _ => None,
    };
    mapped.unwrap_or_else(|| name.to_string())
}

fn side_to_diffusers(config: &WanVaeConfig, rest: &str) -> Option<String> {
    if let Some(r) = rest.strip_prefix("conv1.") {
        return Some(format!("conv_in.{r}"));
    }
    if let Some(r) = rest.strip_prefix("head.0.") {
        return Some(format!("norm_out.{r}"));
    }
    if let Some(r) = rest.strip_prefix("head.2.") {
        return Some(format!("conv_out.{r}"));
    }
    let (group, rest) = rest.split_once('.')?;
    let (index, inner) = rest.split_once('.')?;
    match (group, index) {
        ("middle", "1") => Some(format!("mid_block.attentions.0.{inner}")),
        ("middle", "0") => Some(format!("mid_block.resnets.0.{}", residual(inner))),
        ("middle", "2") => Some(format!("mid_block.resnets.1.{}", residual(inner))),
        ("downsamples", n) => Some(format!("down_blocks.{n}.{}", residual(inner))),
        ("upsamples", k) => {
            let k: usize = k.parse().ok()?;
            // Each decoder stage: num_res_blocks + 1 residual blocks, then its upsample.
            let per_stage = config.num_res_blocks + 2;
            let (stage, j) = (k / per_stage, k % per_stage);
            Some(if j < per_stage - 1 {
                format!("up_blocks.{stage}.resnets.{j}.{}", residual(inner))
            } else {
                format!("up_blocks.{stage}.upsamplers.0.{inner}")
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diffusers_names() {
        let c = WanVaeConfig::wan21();
        for (original, diffusers) in [
            ("encoder.conv1.weight", "encoder.conv_in.weight"),
            (
                "encoder.downsamples.3.residual.0.gamma",
                "encoder.down_blocks.3.norm1.gamma",
            ),
            (
                "encoder.downsamples.3.shortcut.bias",
                "encoder.down_blocks.3.conv_shortcut.bias",
            ),
            (
                "encoder.downsamples.5.time_conv.weight",
                "encoder.down_blocks.5.time_conv.weight",
            ),
            (
                "encoder.downsamples.2.resample.1.bias",
                "encoder.down_blocks.2.resample.1.bias",
            ),
            (
                "encoder.middle.2.residual.6.weight",
                "encoder.mid_block.resnets.1.conv2.weight",
            ),
            (
                "encoder.middle.1.to_qkv.weight",
                "encoder.mid_block.attentions.0.to_qkv.weight",
            ),
            ("encoder.head.0.gamma", "encoder.norm_out.gamma"),
            ("encoder.head.2.bias", "encoder.conv_out.bias"),
            ("conv1.weight", "quant_conv.weight"),
            ("conv2.bias", "post_quant_conv.bias"),
            ("decoder.conv1.bias", "decoder.conv_in.bias"),
            (
                "decoder.middle.0.residual.3.gamma",
                "decoder.mid_block.resnets.0.norm2.gamma",
            ),
            (
                "decoder.upsamples.4.shortcut.weight",
                "decoder.up_blocks.1.resnets.0.conv_shortcut.weight",
            ),
            (
                "decoder.upsamples.3.time_conv.weight",
                "decoder.up_blocks.0.upsamplers.0.time_conv.weight",
            ),
            (
                "decoder.upsamples.11.resample.1.weight",
                "decoder.up_blocks.2.upsamplers.0.resample.1.weight",
            ),
            (
                "decoder.upsamples.14.residual.2.weight",
                "decoder.up_blocks.3.resnets.2.conv1.weight",
            ),
            ("decoder.head.2.weight", "decoder.conv_out.weight"),
        ] {
            assert_eq!(to_diffusers(&c, original), diffusers, "{original}");
        }
    }
}
