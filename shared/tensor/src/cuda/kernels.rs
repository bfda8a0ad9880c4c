//! The kernel sources (`kernels/*.cu`, embedded so a binary needs no source tree) and the names of
//! the kernels the backend launches.
//!
//! Each `.cu` file is one op family and compiles to one module. Its kernels are `extern "C"`
//! symbols: memory-bound kernels take their element types as run-time codes and carry the bare op
//! name (`layer_norm`), kernels for one element type carry it as a suffix (`attention_f32`,
//! `flash_attention_bf16`). The Rust side names a kernel only through the [`Kernel`] constants
//! below, which the CI compile test checks against every target.

/// One kernel source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Module {
    Elementwise,
    Norm,
    Rope,
    Attention,
    Sla,
    Layout,
    Conv,
    Flash,
    Quant,
    Int8Gemm,
    Sage,
    Seeded,
}

impl Module {
    pub const ALL: [Module; 12] = [
        Module::Elementwise,
        Module::Norm,
        Module::Rope,
        Module::Attention,
        Module::Sla,
        Module::Layout,
        Module::Conv,
        Module::Flash,
        Module::Quant,
        Module::Int8Gemm,
        Module::Sage,
        Module::Seeded,
    ];

    /// File name under `kernels/`.
    pub fn file(self) -> &'static str {
        match self {
            Module::Elementwise => "elementwise.cu",
            Module::Norm => "norm.cu",
            Module::Rope => "rope.cu",
            Module::Attention => "attention.cu",
            Module::Sla => "sla.cu",
            Module::Layout => "layout.cu",
            Module::Conv => "conv.cu",
            Module::Flash => "flash.cu",
            Module::Quant => "quant.cu",
            Module::Int8Gemm => "int8_gemm.cu",
            Module::Sage => "sage.cu",
            Module::Seeded => "seeded.cu",
        }
    }

    pub fn source(self) -> &'static str {
        match self {
            Module::Elementwise => include_str!("../../../../kernels/elementwise.cu"),
            Module::Norm => include_str!("../../../../kernels/norm.cu"),
            Module::Rope => include_str!("../../../../kernels/rope.cu"),
            Module::Attention => include_str!("../../../../kernels/attention.cu"),
            Module::Sla => include_str!("../../../../kernels/sla.cu"),
            Module::Layout => include_str!("../../../../kernels/layout.cu"),
            Module::Conv => include_str!("../../../../kernels/conv.cu"),
            Module::Flash => include_str!("../../../../kernels/flash.cu"),
            Module::Quant => include_str!("../../../../kernels/quant.cu"),
            Module::Int8Gemm => include_str!("../../../../kernels/int8_gemm.cu"),
            Module::Sage => include_str!("../../../../kernels/sage.cu"),
            Module::Seeded => include_str!("../../../../kernels/seeded.cu"),
        }
    }

    /// The kernels of this module the backend launches.
    pub fn kernels(self) -> impl Iterator<Item = Kernel> {
        ALL_KERNELS
            .iter()
            .copied()
            .filter(move |k| k.module == self)
    }
}

/// Headers the sources `#include`, as (include name, contents).
pub const HEADERS: [(&str, &str); 7] = [
    ("common.cuh", include_str!("../../../../kernels/common.cuh")),
    ("rows.cuh", include_str!("../../../../kernels/rows.cuh")),
    ("async.cuh", include_str!("../../../../kernels/async.cuh")),
    ("mma.cuh", include_str!("../../../../kernels/mma.cuh")),
    (
        "softmax.cuh",
        include_str!("../../../../kernels/softmax.cuh"),
    ),
    ("split.cuh", include_str!("../../../../kernels/split.cuh")),
    ("wgmma.cuh", include_str!("../../../../kernels/wgmma.cuh")),
];

/// A kernel: its module and its `extern "C"` symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Kernel {
    pub module: Module,
    pub symbol: &'static str,
}

impl Kernel {
    const fn new(module: Module, symbol: &'static str) -> Self {
        Kernel { module, symbol }
    }
}

pub const GELU_TANH: Kernel = Kernel::new(Module::Elementwise, "gelu_tanh");
pub const SILU: Kernel = Kernel::new(Module::Elementwise, "silu");
pub const ADD: Kernel = Kernel::new(Module::Elementwise, "add");
pub const MUL: Kernel = Kernel::new(Module::Elementwise, "mul");
pub const CLAMP: Kernel = Kernel::new(Module::Elementwise, "clamp_f32");
pub const GATED_RESIDUAL: Kernel = Kernel::new(Module::Elementwise, "gated_residual");
pub const CHANNEL_AFFINE: Kernel = Kernel::new(Module::Elementwise, "channel_affine");
pub const CHANNEL_BIAS: Kernel = Kernel::new(Module::Elementwise, "channel_bias");
pub const LINCOMB: Kernel = Kernel::new(Module::Elementwise, "lincomb_f32");
pub const LAYER_NORM: Kernel = Kernel::new(Module::Norm, "layer_norm");
pub const RMS_NORM: Kernel = Kernel::new(Module::Norm, "rms_norm");
pub const RMS_NORM_ROPE: Kernel = Kernel::new(Module::Norm, "rms_norm_rope");
pub const LAYER_NORM_ROWS: Kernel = Kernel::new(Module::Norm, "layer_norm_rows");
pub const RMS_NORM_ROPE_ROWS: Kernel = Kernel::new(Module::Norm, "rms_norm_rope_rows");
pub const CHANNEL_RMS_NORM: Kernel = Kernel::new(Module::Norm, "channel_rms_norm");
pub const CHANNEL_RMS_NORM_BF16: Kernel = Kernel::new(Module::Norm, "channel_rms_norm_bf16");
pub const ROPE: Kernel = Kernel::new(Module::Rope, "rope");
pub const ATTENTION: Kernel = Kernel::new(Module::Attention, "attention_f32");
pub const SOFTMAX_SCALED_ROWS: Kernel = Kernel::new(Module::Attention, "softmax_scaled_rows");
pub const SLA_POOL: Kernel = Kernel::new(Module::Sla, "sla_pool_f32");
pub const SLA_SCORES: Kernel = Kernel::new(Module::Sla, "sla_scores_f32");
pub const SLA_SELECT: Kernel = Kernel::new(Module::Sla, "sla_select_f32");
pub const SLA_KV: Kernel = Kernel::new(Module::Sla, "sla_kv_f32");
pub const SLA_LINEAR: Kernel = Kernel::new(Module::Sla, "sla_linear_f32");
pub const COPY2D: Kernel = Kernel::new(Module::Layout, "copy2d");
pub const PERMUTE: Kernel = Kernel::new(Module::Layout, "permute");
pub const PATCHIFY: Kernel = Kernel::new(Module::Layout, "patchify_f32");
pub const UNPATCHIFY: Kernel = Kernel::new(Module::Layout, "unpatchify_f32");
pub const INTERLEAVE_PHASES: Kernel = Kernel::new(Module::Layout, "interleave_phases");
pub const PAD_ZERO: Kernel = Kernel::new(Module::Layout, "pad_zero");
pub const CONV3D: Kernel = Kernel::new(Module::Conv, "conv3d_f32");
pub const CONV3D_NARROW: Kernel = Kernel::new(Module::Conv, "conv3d_narrow_bf16");
pub const CAST: Kernel = Kernel::new(Module::Elementwise, "cast");
pub const FLASH_ATTENTION: Kernel = Kernel::new(Module::Flash, "flash_attention_bf16");
pub const FLASH_ATTENTION_PERSISTENT: Kernel =
    Kernel::new(Module::Flash, "flash_attention_persistent_bf16");
pub const FLASH_ATTENTION_PERSISTENT_E4M3: Kernel =
    Kernel::new(Module::Flash, "flash_attention_persistent_e4m3");
pub const FLASH_V_MAX: Kernel = Kernel::new(Module::Flash, "flash_v_max");
pub const FLASH_MERGE: Kernel = Kernel::new(Module::Flash, "flash_merge");
pub const FLASH_ATTENTION_MMA: Kernel = Kernel::new(Module::Flash, "flash_attention_mma_bf16");
pub const FLASH_ATTENTION_REL_MMA: Kernel =
    Kernel::new(Module::Flash, "flash_attention_rel_mma_bf16");
pub const QUANTIZE_FP8_ROWS: Kernel = Kernel::new(Module::Quant, "quantize_fp8_rows");
pub const QUANTIZE_INT8_BLOCKS: Kernel = Kernel::new(Module::Quant, "quantize_int8_blocks");
pub const FP8_NORM_BOUND: Kernel = Kernel::new(Module::Quant, "fp8_norm_bound");
pub const FP8_WEIGHT_BOUND: Kernel = Kernel::new(Module::Quant, "fp8_weight_bound");
pub const FP8_HIDDEN_SCALE: Kernel = Kernel::new(Module::Quant, "fp8_hidden_scale");
pub const INT8_TILES: Kernel = Kernel::new(Module::Quant, "int8_tiles");
pub const INT8_GEMM: Kernel = Kernel::new(Module::Int8Gemm, "int8_gemm_bf16");
pub const INT8_GEMM_SM90: Kernel = Kernel::new(Module::Int8Gemm, "int8_gemm_sm90");

pub const SAGE_STATS: Kernel = Kernel::new(Module::Sage, "sage_stats");
pub const SAGE_STATS_REDUCE: Kernel = Kernel::new(Module::Sage, "sage_stats_reduce");
pub const SAGE_QUANT_K: Kernel = Kernel::new(Module::Sage, "sage_quant_k");
pub const SAGE_QUANT_Q: Kernel = Kernel::new(Module::Sage, "sage_quant_q");
pub const SAGE_SELECT: Kernel = Kernel::new(Module::Sage, "sage_select");
pub const SAGE_KV: Kernel = Kernel::new(Module::Sage, "sage_kv");
pub const SAGE_KV_SUM: Kernel = Kernel::new(Module::Sage, "sage_kv_sum");
pub const SAGE_KV_REDUCE: Kernel = Kernel::new(Module::Sage, "sage_kv_reduce");
pub const SAGE_LINEAR: Kernel = Kernel::new(Module::Sage, "sage_linear");
pub const SAGE_ATTENTION: Kernel = Kernel::new(Module::Sage, "sage_attention_sm90");
pub const SAGE_ATTENTION_E4M3: Kernel = Kernel::new(Module::Sage, "sage_attention_sm90_e4m3");
pub const SAGE_ATTENTION_MMA: Kernel = Kernel::new(Module::Sage, "sage_attention_mma");
pub const SAGE_MERGE: Kernel = Kernel::new(Module::Sage, "sage_merge");
pub const SAGE_OUT_SCALE: Kernel = Kernel::new(Module::Sage, "sage_out_scale");
pub const SEEDED: Kernel = Kernel::new(Module::Seeded, "seeded");

pub const ALL_KERNELS: &[Kernel] = &[
    GELU_TANH,
    SILU,
    ADD,
    MUL,
    CLAMP,
    GATED_RESIDUAL,
    CHANNEL_AFFINE,
    CHANNEL_BIAS,
    LINCOMB,
    LAYER_NORM,
    RMS_NORM,
    RMS_NORM_ROPE,
    LAYER_NORM_ROWS,
    RMS_NORM_ROPE_ROWS,
    CHANNEL_RMS_NORM,
    CHANNEL_RMS_NORM_BF16,
    ROPE,
    ATTENTION,
    SOFTMAX_SCALED_ROWS,
    SLA_POOL,
    SLA_SCORES,
    SLA_SELECT,
    SLA_KV,
    SLA_LINEAR,
    COPY2D,
    PERMUTE,
    PATCHIFY,
    UNPATCHIFY,
    INTERLEAVE_PHASES,
    PAD_ZERO,
    CONV3D,
    CONV3D_NARROW,
    CAST,
    FLASH_ATTENTION,
    FLASH_ATTENTION_PERSISTENT,
    FLASH_ATTENTION_PERSISTENT_E4M3,
    FLASH_V_MAX,
    FLASH_MERGE,
    FLASH_ATTENTION_MMA,
    FLASH_ATTENTION_REL_MMA,
    QUANTIZE_FP8_ROWS,
    QUANTIZE_INT8_BLOCKS,
    FP8_NORM_BOUND,
    FP8_WEIGHT_BOUND,
    FP8_HIDDEN_SCALE,
    INT8_GEMM,
    INT8_GEMM_SM90,
    SAGE_STATS,
    SAGE_STATS_REDUCE,
    SAGE_QUANT_K,
    SAGE_QUANT_Q,
    SAGE_SELECT,
    SAGE_KV,
    SAGE_KV_SUM,
    SAGE_KV_REDUCE,
    SAGE_LINEAR,
    SAGE_ATTENTION,
    SAGE_ATTENTION_E4M3,
    SAGE_ATTENTION_MMA,
    SAGE_MERGE,
    SAGE_OUT_SCALE,
    SEEDED,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_are_unique() {
        let mut symbols: Vec<&str> = ALL_KERNELS.iter().map(|k| k.symbol).collect();
        symbols.sort_unstable();
        symbols.dedup();
        assert_eq!(symbols.len(), ALL_KERNELS.len());
    }

    #[test]
    fn every_module_has_kernels_and_includes_only_known_headers() {
        for m in Module::ALL {
            assert!(m.kernels().next().is_some(), "{m:?} has no kernels");
            for line in m.source().lines().filter(|l| l.starts_with("#include")) {
                assert!(
                    HEADERS.iter().any(|(name, _)| line.contains(name)),
                    "{}: unknown include {line}",
                    m.file()
                );
            }
        }
    }
}
