use std::fmt::Debug;

use crate::{
    Error, HostBytes, HostTensor, PendingDownload, Result, SeededValues, TensorBytes, shapes,
};

/// Side of the square weight tiles of TurboDiffusion's W8A8 format: one f32 scale per 128×128 tile.
pub const QUANT_BLOCK: usize = 128;

/// The weight of a linear layer as a checkpoint holds it, before a backend places it.
#[derive(Debug, Clone)]
pub enum LinearWeight {
    /// `[out, in]`, any float dtype.
    Dense(HostTensor),
    /// [`LinearWeight::Dense`] with its elements still in a memory-mapped checkpoint: backends
    /// read them from there, with no host copy in between.
    Mapped(HostBytes),
    /// TurboDiffusion `-quant` layout: int8 `[out, in]` and f32 scales
    /// `[ceil(out/128), ceil(in/128)]`; `w[i][j] ≈ values[i][j] · scales[i/128][j/128]`.
    Int8Block { values: Vec<i8>, scales: Vec<f32> },
    /// `[out, in]` seeded random bf16 values, not computed yet: a backend generates them where
    /// the weight goes (the GPU writes them straight into device memory), the same values the
    /// host generator gives.
    Seeded(SeededValues),
}

/// A linear layer `y = x Wᵀ + b` with `W: [out, in]`.
#[derive(Debug, Clone)]
pub struct LinearWeights {
    pub out_features: usize,
    pub in_features: usize,
    pub weight: LinearWeight,
    /// `[out]`, any float dtype.
    pub bias: Option<HostTensor>,
}

impl LinearWeight {
    /// The elements of a dense weight (owned or mapped); `None` for the int8 layout and for
    /// seeded values, which have no bytes until generated.
    pub fn dense(&self) -> Option<TensorBytes<'_>> {
        match self {
            LinearWeight::Dense(t) => Some(t.tensor_bytes()),
            LinearWeight::Mapped(b) => Some(b.tensor_bytes()),
            LinearWeight::Int8Block { .. } | LinearWeight::Seeded(_) => None,
        }
    }
}

impl LinearWeights {
    /// Number of scale tiles along (out, in) for the int8 layout.
    pub fn quant_grid(out_features: usize, in_features: usize) -> (usize, usize) {
        (
            out_features.div_ceil(QUANT_BLOCK),
            in_features.div_ceil(QUANT_BLOCK),
        )
    }

    /// The weight as f32 `[out, in]`, dequantizing the int8 layout and generating seeded values
    /// on the host.
    pub fn dense_f32(&self) -> Vec<f32> {
        match &self.weight {
            LinearWeight::Dense(w) => w.to_f32_vec(),
            LinearWeight::Mapped(w) => w.tensor_bytes().to_host().to_f32_vec(),
            LinearWeight::Seeded(v) => v
                .values(self.out_features * self.in_features)
                .into_iter()
                .map(f32::from)
                .collect(),
            LinearWeight::Int8Block { values, scales } => {
                let (_, grid_in) = Self::quant_grid(self.out_features, self.in_features);
                let mut out = Vec::with_capacity(values.len());
                for i in 0..self.out_features {
                    let row = &values[i * self.in_features..(i + 1) * self.in_features];
                    let srow = &scales[(i / QUANT_BLOCK) * grid_in..];
                    out.extend(
                        row.iter()
                            .enumerate()
                            .map(|(j, &q)| q as f32 * srow[j / QUANT_BLOCK]),
                    );
                }
                out
            }
        }
    }
}

/// How a causal convolution's normalized input is laid out ([`Backend::conv_input`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvInput {
    /// `[F, H, W, width]`, the channels past the convolution's input channels zero (and the
    /// filter's weights there).
    Width(usize),
    /// `[F, H, W, taps·C]`: the time taps folded into channels
    /// ([`Backend::causal_rms_norm_silu_folded`]), convolved by a `1 × kh × kw` filter.
    FoldTime,
}

/// Parameters of sparse-linear attention (SLA) block selection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlaParams {
    /// Fraction of key blocks kept per (head, query block); f64 so `floor(topk · blocks)` rounds as
    /// upstream's Python float does.
    pub topk: f64,
    /// Query block size (tokens).
    pub block_q: usize,
    /// Key block size (tokens).
    pub block_k: usize,
}

impl SlaParams {
    /// Upstream's top-k (TurboDiffusion's `--topk` default): a tenth of the key blocks.
    pub const DEFAULT_TOPK: f64 = 0.1;

    /// SLA's default blocks (upstream's `SparseLinearAttention`): 128 queries x 64 keys.
    pub fn sla(topk: f64) -> Self {
        Self {
            topk,
            block_q: 128,
            block_k: 64,
        }
    }

    /// Checks block sizes are non-zero and `topk` lies in `(0, 1]`.
    pub fn validate(&self) -> Result<()> {
        if self.block_q == 0 || self.block_k == 0 || !(self.topk > 0.0 && self.topk <= 1.0) {
            return Err(crate::Error::invalid(
                "sla",
                format!("block sizes must be > 0 and topk in (0, 1], got {self:?}"),
            ));
        }
        Ok(())
    }

    /// SageSLA's block shape on every GPU (TurboDiffusion's Hopper shape): 64 queries x 128 keys.
    pub fn sage(topk: f64) -> Self {
        Self {
            topk,
            block_q: 64,
            block_k: 128,
        }
    }

    /// Selected key blocks per query block: `floor(topk · key_blocks)` clamped to `[1, key_blocks]`.
    pub fn blocks_kept(&self, key_blocks: usize) -> usize {
        ((self.topk * key_blocks as f64).floor() as usize).clamp(1, key_blocks.max(1))
    }
}

/// The op-level interface every compute backend implements.
///
/// Activations are dense row-major tensors. Token tensors are `[L, D]` (one sample; classifier-free
/// guidance runs two forwards) and attention tensors `[L, H, Dh]`. Each op checks shapes before
/// computing and returns an error naming the op, never panics on bad shapes.
pub trait Backend: Send + Sync + Sized + 'static {
    type Tensor: Clone + Debug + Send + Sync;
    type Linear: Debug + Send + Sync;
    /// An activation prepared as the input of the backend's quantizable layers
    /// ([`Backend::linear_input`]).
    type LinearInput: Debug + Send + Sync;

    fn name(&self) -> &'static str;

    // ---- transfer and layout ----
    fn shape<'a>(&self, t: &'a Self::Tensor) -> &'a [usize];
    fn upload(&self, t: &HostTensor) -> Result<Self::Tensor>;
    /// Copies a tensor back to the host as f32.
    fn download(&self, t: &Self::Tensor) -> Result<HostTensor>;
    /// [`Backend::download`] queued behind the work already submitted, returning before the data
    /// arrives where the backend can: work queued after it keeps the device busy while the host
    /// does other things until [`PendingDownload::wait`]. Synchronous backends download at once.
    fn download_async(&self, t: &Self::Tensor) -> Result<PendingDownload> {
        Ok(PendingDownload::ready(self.download(t)?))
    }
    fn reshape(&self, t: &Self::Tensor, shape: &[usize]) -> Result<Self::Tensor>;
    /// Indices `start..start+len` of dimension `dim`.
    fn slice(&self, t: &Self::Tensor, dim: usize, start: usize, len: usize)
    -> Result<Self::Tensor>;
    /// Rows `start..start+len` of the outermost dimension. Backends may return a view that shares
    /// `t`'s memory (the CUDA one does where the rows start aligned) and so keeps all of it
    /// allocated while the rows live: for rows of a tensor that lives as long anyway, where
    /// [`Backend::slice`] gives a tensor of its own.
    fn narrow(&self, t: &Self::Tensor, start: usize, len: usize) -> Result<Self::Tensor> {
        self.slice(t, 0, start, len)
    }
    /// Reorders dimensions: output dimension `i` is input dimension `perm[i]`.
    fn permute(&self, t: &Self::Tensor, perm: &[usize]) -> Result<Self::Tensor>;
    /// Concatenation along dimension `dim`.
    fn concat(&self, parts: &[&Self::Tensor], dim: usize) -> Result<Self::Tensor>;
    fn upload_linear(&self, w: &LinearWeights) -> Result<Self::Linear>;
    /// [`Backend::upload_linear`] for a layer the backend may quantize: the linears inside the
    /// DiT blocks that TurboDiffusion quantizes (attention q/k/v/o, FFN), not the embeddings,
    /// head or SLA `proj_l`. Backends without weight quantization place it as any other layer.
    fn upload_linear_quantizable(&self, w: &LinearWeights) -> Result<Self::Linear> {
        self.upload_linear(w)
    }
    /// A model parameter used in the backend's compute precision only (a convolution's filter,
    /// and its bias, which the convolution adds): the backend may store it in that precision
    /// once rather than convert it at every use.
    fn upload_param(&self, t: &HostTensor) -> Result<Self::Tensor> {
        self.upload(t)
    }
    /// Waits for queued work (a no-op on synchronous backends).
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    // ---- GEMM ----
    /// Runs a model (`run`, given an input's row count) at the row counts that launch every GEMM
    /// kernel this backend would pick for inputs of up to `max` rows (a text encoder's prompt
    /// lengths), so that none is launched for the first time inside a request; returns them in
    /// the order run. None where kernels cost nothing the first time (the CPU).
    fn warm_up_gemm_rows<E: From<crate::Error>>(
        &self,
        _max: usize,
        _run: impl FnMut(usize) -> std::result::Result<(), E>,
    ) -> std::result::Result<Vec<usize>, E> {
        Ok(Vec::new())
    }
    /// `[.., in] -> [.., out]`, `x Wᵀ + b`.
    fn linear(&self, x: &Self::Tensor, w: &Self::Linear) -> Result<Self::Tensor>;

    /// `gelu_tanh(x Wᵀ + b)`: the FFN's first layer, which backends may fuse into the GEMM.
    fn linear_gelu_tanh(&self, x: &Self::Tensor, w: &Self::Linear) -> Result<Self::Tensor> {
        self.gelu_tanh(&self.linear(x, w)?)
    }

    /// `residual + (x Wᵀ + b)·gate` (`gate: [out]`; `residual + x Wᵀ + b` without it): a
    /// residual branch's last layer, which backends may add into the residual stream inside the
    /// GEMM (one rounding, to the residual's type).
    fn linear_residual(
        &self,
        x: &Self::Tensor,
        w: &Self::Linear,
        residual: &Self::Tensor,
        gate: Option<&Self::Tensor>,
    ) -> Result<Self::Tensor> {
        self.residual(residual, &self.linear(x, w)?, gate)
    }

    /// [`Backend::linear_residual`] of a prepared input.
    fn linear_residual_prepared(
        &self,
        x: &Self::LinearInput,
        w: &Self::Linear,
        residual: &Self::Tensor,
        gate: Option<&Self::Tensor>,
    ) -> Result<Self::Tensor> {
        self.residual(residual, &self.linear_prepared(x, w)?, gate)
    }

    /// Whether [`Backend::linear_residual`] through `w` (with a gate when `gated`) adds into the
    /// residual stream inside the GEMM. Where it does not, a caller whose next step is a norm of
    /// the sum does better with [`Backend::residual_layer_norm_input`], which adds in the norm's
    /// pass.
    fn residual_in_gemm(&self, w: &Self::Linear, gated: bool) -> bool {
        let _ = (w, gated);
        false
    }

    /// `gelu_tanh(x Gᵀ + b) ⊙ (x Lᵀ + b)`: the first half of a gated-GELU FFN (umT5's), which
    /// backends may keep in their accumulator's precision up to the product's one rounding.
    fn linear_gated_gelu(
        &self,
        x: &Self::Tensor,
        gate: &Self::Linear,
        lin: &Self::Linear,
    ) -> Result<Self::Tensor> {
        self.mul(&self.linear_gelu_tanh(x, gate)?, &self.linear(x, lin)?)
    }

    /// `x: [.., in]` prepared once as the input of several quantizable layers
    /// ([`Backend::upload_linear_quantizable`]): a backend with 8-bit layers quantizes it here,
    /// once, rather than in each layer.
    fn linear_input(&self, x: &Self::Tensor) -> Result<Self::LinearInput>;
    /// [`Backend::linear`] of a prepared input through a quantizable layer.
    fn linear_prepared(&self, x: &Self::LinearInput, w: &Self::Linear) -> Result<Self::Tensor>;
    /// [`Backend::linear_gelu_tanh`] of a prepared input through a quantizable layer.
    fn linear_gelu_tanh_prepared(
        &self,
        x: &Self::LinearInput,
        w: &Self::Linear,
    ) -> Result<Self::Tensor>;

    /// `gelu_tanh(x Wᵀ + b)` of a prepared input, prepared in turn as the input of the
    /// quantizable layer `next` (an FFN's hidden activations): backends may have the GEMM write
    /// it in `next`'s input form instead of quantizing it in a pass of its own.
    fn linear_gelu_tanh_input(
        &self,
        x: &Self::LinearInput,
        w: &Self::Linear,
        next: &Self::Linear,
    ) -> Result<Self::LinearInput> {
        let _ = next;
        self.linear_input(&self.linear_gelu_tanh_prepared(x, w)?)
    }

    // ---- norms ----
    /// LayerNorm over the last dim, optionally affine `(weight, bias)`.
    fn layer_norm(
        &self,
        x: &Self::Tensor,
        affine: Option<(&Self::Tensor, &Self::Tensor)>,
        eps: f32,
    ) -> Result<Self::Tensor>;
    /// Non-affine LayerNorm then modulation, `LN(x)·(1 + scale) + shift`, `shift`/`scale: [D]`.
    fn layer_norm_modulate(
        &self,
        x: &Self::Tensor,
        shift: &Self::Tensor,
        scale: &Self::Tensor,
        eps: f32,
    ) -> Result<Self::Tensor>;
    /// [`Backend::layer_norm`] as a [`Backend::linear_input`], which backends may quantize in the
    /// norm's own pass.
    fn layer_norm_input(
        &self,
        x: &Self::Tensor,
        affine: Option<(&Self::Tensor, &Self::Tensor)>,
        eps: f32,
    ) -> Result<Self::LinearInput> {
        self.linear_input(&self.layer_norm(x, affine, eps)?)
    }
    /// [`Backend::layer_norm_modulate`] as a [`Backend::linear_input`], which backends may
    /// quantize in the norm's own pass.
    fn layer_norm_modulate_input(
        &self,
        x: &Self::Tensor,
        shift: &Self::Tensor,
        scale: &Self::Tensor,
        eps: f32,
    ) -> Result<Self::LinearInput> {
        self.linear_input(&self.layer_norm_modulate(x, shift, scale, eps)?)
    }
    /// [`Backend::layer_norm_modulate_input`] read only by the quantizable layer `next` (an FFN's
    /// first, whose output goes to [`Backend::linear_gelu_tanh_input`]): backends may quantize it
    /// in the form that lets `next` write its output quantized.
    fn layer_norm_modulate_input_for(
        &self,
        x: &Self::Tensor,
        shift: &Self::Tensor,
        scale: &Self::Tensor,
        eps: f32,
        next: &Self::Linear,
    ) -> Result<Self::LinearInput> {
        let _ = next;
        self.layer_norm_modulate_input(x, shift, scale, eps)
    }
    /// The residual `x + y·gate` (`gate: [D]`; `x + y` without it, as [`Backend::add`]) and its
    /// [`Backend::layer_norm_input`]: a DiT block's residual add and the norm after it, which
    /// backends may do in one pass.
    fn residual_layer_norm_input(
        &self,
        x: &Self::Tensor,
        y: &Self::Tensor,
        gate: Option<&Self::Tensor>,
        affine: Option<(&Self::Tensor, &Self::Tensor)>,
        eps: f32,
    ) -> Result<(Self::Tensor, Self::LinearInput)> {
        let sum = self.residual(x, y, gate)?;
        let h = self.layer_norm_input(&sum, affine, eps)?;
        Ok((sum, h))
    }
    /// [`Backend::residual_layer_norm_input`] with [`Backend::layer_norm_modulate_input`].
    #[allow(clippy::too_many_arguments)]
    fn residual_layer_norm_modulate_input(
        &self,
        x: &Self::Tensor,
        y: &Self::Tensor,
        gate: Option<&Self::Tensor>,
        shift: &Self::Tensor,
        scale: &Self::Tensor,
        eps: f32,
    ) -> Result<(Self::Tensor, Self::LinearInput)> {
        let sum = self.residual(x, y, gate)?;
        let h = self.layer_norm_modulate_input(&sum, shift, scale, eps)?;
        Ok((sum, h))
    }
    /// RMSNorm over the last dim, `x·rsqrt(mean(x²) + eps)·weight`.
    fn rms_norm(&self, x: &Self::Tensor, weight: &Self::Tensor, eps: f32) -> Result<Self::Tensor>;

    /// RMSNorm of `x: [L, H·Dh]` over each whole row, then the rotary embedding of
    /// [`Backend::rope`] on its `heads` heads: `[L, H, Dh]`. The DiT's self-attention q/k path,
    /// which backends may fuse into one pass.
    fn rms_norm_rope(
        &self,
        x: &Self::Tensor,
        weight: &Self::Tensor,
        eps: f32,
        cos: &Self::Tensor,
        sin: &Self::Tensor,
        heads: usize,
    ) -> Result<Self::Tensor> {
        let (len, dh) = crate::shapes::head_split(self.shape(x), heads)?;
        let normed = self.rms_norm(x, weight, eps)?;
        self.rope(&self.reshape(&normed, &[len, heads, dh])?, cos, sin)
    }

    // ---- position and attention ----
    /// Rotary embedding on interleaved pairs `(x[2j], x[2j+1])` of `x: [L, H, Dh]` with
    /// `cos`/`sin: [L, Dh/2]`.
    fn rope(
        &self,
        x: &Self::Tensor,
        cos: &Self::Tensor,
        sin: &Self::Tensor,
    ) -> Result<Self::Tensor>;
    /// Dense softmax attention, `q: [Lq, H, Dh]`, `k`/`v: [Lk, H, Dh]`, scale `1/sqrt(Dh)`.
    fn attention(
        &self,
        q: &Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
    ) -> Result<Self::Tensor> {
        let dh = self.shape(q).last().copied().unwrap_or(1);
        self.attention_with(q, k, v, softmax_scale(dh), None)
    }
    /// [`Backend::attention`] as the input `[Lq, H·Dh]` of the quantizable layer `next` (the
    /// output projection): backends may write it in `next`'s input form from the attention
    /// itself rather than quantize it in a pass of its own.
    fn attention_input(
        &self,
        q: &Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
        next: &Self::Linear,
    ) -> Result<Self::LinearInput> {
        let _ = next;
        attention_rows(self, "attention", &self.attention(q, k, v)?)
    }
    /// `softmax(scale·q kᵀ + bias) v` with an optional additive `bias: [H, Lq, Lk]` (T5's relative
    /// position bias; T5 uses scale 1).
    fn attention_with(
        &self,
        q: &Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
        scale: f32,
        bias: Option<&Self::Tensor>,
    ) -> Result<Self::Tensor>;
    /// [`Backend::attention_with`] with T5's relative-position bias given once per relative
    /// position: `rel: [H, Lq + Lk − 1]` (f32), score `(i, j)` of head `h` getting
    /// `rel[h, j − i + Lq − 1]`. Backends with a kernel for it never build the `[H, Lq, Lk]` bias.
    fn attention_rel_bias(
        &self,
        q: &Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
        scale: f32,
        rel: &Self::Tensor,
    ) -> Result<Self::Tensor> {
        expanded_rel_attention(self, q, k, v, scale, rel)
    }
    /// Refuses, before any work, self-attention over `[len, heads, head_dim]` that this backend's
    /// kernels would refuse for its size ([`crate::Error::TooLarge`], naming the limit): dense, or
    /// with SageAttention's numerics when `sage`, sparse when `sla` holds the top-k parameters.
    /// A forward then fails at its start instead of partway through. Backends without such
    /// limits take any size.
    fn check_self_attention_size(
        &self,
        _shape: [usize; 3],
        _sage: bool,
        _sla: Option<&SlaParams>,
    ) -> Result<()> {
        Ok(())
    }
    /// Sparse-linear attention: block-sparse softmax attention over the top-k key blocks plus the
    /// softmax-feature-map linear branch projected by `proj_l` (`[Dh] -> [Dh]`, shared across heads).
    fn sla_attention(
        &self,
        q: &Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
        params: &SlaParams,
        proj_l: &Self::Linear,
    ) -> Result<Self::Tensor>;
    /// Self-attention with SageAttention's 8-bit numerics (INT8 q·kᵀ with smoothed k, FP8 P̃·V):
    /// dense, or SageSLA when `sla` holds the top-k parameters and `proj_l`. A backend without
    /// 8-bit kernels computes the same attention exactly ([`Backend::attention`],
    /// [`Backend::sla_attention`]).
    fn sage_attention(
        &self,
        q: &Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
        sla: Option<(&SlaParams, &Self::Linear)>,
    ) -> Result<Self::Tensor> {
        exact_sage_attention(self, q, k, v, sla)
    }
    /// [`Backend::sage_attention`] as the input `[L, H·Dh]` of the quantizable layer `next` (the
    /// output projection): backends may write it in `next`'s input form from the attention
    /// itself rather than quantize it in a pass of its own.
    fn sage_attention_input(
        &self,
        q: &Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
        sla: Option<(&SlaParams, &Self::Linear)>,
        next: &Self::Linear,
    ) -> Result<Self::LinearInput> {
        let _ = next;
        sage_attention_rows(self, q, k, v, sla)
    }

    // ---- elementwise ----
    fn gelu_tanh(&self, x: &Self::Tensor) -> Result<Self::Tensor>;
    fn silu(&self, x: &Self::Tensor) -> Result<Self::Tensor>;
    /// `a + b`, `b` broadcast over the leading dims of `a` (its shape a suffix of `a`'s).
    fn add(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;
    /// `a · b`, `b` broadcast as in [`Backend::add`].
    fn mul(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;
    /// `x + y · gate`, `gate: [D]` broadcast over rows: the gated residual of DiT blocks.
    fn gated_residual(
        &self,
        x: &Self::Tensor,
        y: &Self::Tensor,
        gate: &Self::Tensor,
    ) -> Result<Self::Tensor>;
    /// `x + y·gate` with a gate, `x + y` without: a residual add.
    fn residual(
        &self,
        x: &Self::Tensor,
        y: &Self::Tensor,
        gate: Option<&Self::Tensor>,
    ) -> Result<Self::Tensor> {
        match gate {
            Some(g) => self.gated_residual(x, y, g),
            None => self.add(x, y),
        }
    }
    /// `Σ cᵢ·tᵢ` over same-shape tensors: the sampler update primitive.
    fn lincomb(&self, terms: &[(f32, &Self::Tensor)]) -> Result<Self::Tensor>;

    /// `clamp(x, lo, hi)` elementwise.
    fn clamp(&self, x: &Self::Tensor, lo: f32, hi: f32) -> Result<Self::Tensor>;

    // ---- channels-last video ops (`[F, H, W, C]`, the VAE's layout) ----
    /// 3-D convolution of `x: [F, H, W, Cin]` with `weight: [Cout, kt, kh, kw, Cin]`, zero
    /// padding `pad[d] = (before, after)` per dimension (F, H, W), then `bias: [Cout]`; the output
    /// is `[Fo, Ho, Wo, Cout]`. Channels last because that is where tensor-core convolutions run
    /// fast, and it keeps each frame contiguous for the VAE's causal caches.
    fn conv3d(
        &self,
        x: &Self::Tensor,
        weight: &Self::Tensor,
        bias: Option<&Self::Tensor>,
        stride: [usize; 3],
        pad: [[usize; 2]; 3],
    ) -> Result<Self::Tensor>;
    /// `conv3d(x, weight, bias, stride, pad) + residual`, `residual` of the output's shape: a
    /// residual block's last convolution, which backends may fuse into one pass.
    fn conv3d_add(
        &self,
        x: &Self::Tensor,
        weight: &Self::Tensor,
        bias: Option<&Self::Tensor>,
        stride: [usize; 3],
        pad: [[usize; 2]; 3],
        residual: &Self::Tensor,
    ) -> Result<Self::Tensor> {
        self.add(&self.conv3d(x, weight, bias, stride, pad)?, residual)
    }
    /// `x: [F, H + 1, W + 1, 4C]`, whose channels `[(2a + b)·C, (2a + b + 1)·C)` hold output
    /// phase `(a, b)` ∈ {0, 1}², as `[F, 2H, 2W, C]`: `out[f, 2y + a, 2x + b] = x[f, y + a, x + b,
    /// phase (a, b)]`. A 2× nearest upsample followed by a 3×3 convolution (padding 1) is one 2×2
    /// convolution (padding 1) of the low-resolution input to the four phases, on 4/9 of the
    /// multiply-adds; this puts its output where the upsampled convolution's would be.
    fn interleave_phases(&self, x: &Self::Tensor) -> Result<Self::Tensor>;
    /// `x / max(‖x‖₂, 1e-12) · sqrt(C) · gamma` with the norm over the last (channel) dim of
    /// `x: [..., C]`, `gamma: [C]`: the Wan VAE's `RMS_norm` (`F.normalize` based).
    fn channel_rms_norm(&self, x: &Self::Tensor, gamma: &Self::Tensor) -> Result<Self::Tensor>;
    /// `silu(channel_rms_norm(x, gamma))`: the VAE residual blocks' pre-convolution step, which
    /// backends may fuse into one pass.
    fn channel_rms_norm_silu(
        &self,
        x: &Self::Tensor,
        gamma: &Self::Tensor,
    ) -> Result<Self::Tensor> {
        self.silu(&self.channel_rms_norm(x, gamma)?)
    }
    /// How a causal convolution of `taps` time taps from `cin` to `cout` channels wants the
    /// normalized input that [`Backend::causal_rms_norm_silu`] or
    /// [`Backend::causal_rms_norm_silu_folded`] writes for it: some convolution engines run a
    /// wider input, or one with the time taps folded into channels, faster than the plain one.
    fn conv_input(&self, cin: usize, _cout: usize, _taps: usize) -> ConvInput {
        ConvInput::Width(cin)
    }
    /// `concat([past, channel_rms_norm_silu(x, gamma)], 0)` over frames, rows `width` channels
    /// wide ([`ConvInput::Width`]; zeros past x's channels): the input of a causal
    /// convolution with its cached frames in front, which backends may write without the
    /// concatenation's second copy of the normalized frames; and its last `keep` frames (all of
    /// them where it has fewer), the next chunk's cached frames, which backends may store in
    /// the norm's own pass rather than read back.
    fn causal_rms_norm_silu(
        &self,
        past: Option<&Self::Tensor>,
        x: &Self::Tensor,
        gamma: &Self::Tensor,
        width: usize,
        keep: usize,
    ) -> Result<(Self::Tensor, Self::Tensor)> {
        let y = self.channel_rms_norm_silu(x, gamma)?;
        let mut pad = self.shape(&y).to_vec();
        let last = pad.len().saturating_sub(1);
        let c = pad.get(last).copied().unwrap_or(0);
        let y = match width.checked_sub(c) {
            Some(0) => y,
            Some(extra) => {
                pad[last] = extra;
                let zeros = self.upload(&HostTensor::zeros(pad))?;
                self.concat(&[&y, &zeros], last)?
            }
            None => {
                return Err(Error::shape(
                    "causal_rms_norm_silu",
                    format!("rows at least {c} channels wide, asked for {width}"),
                    self.shape(x),
                ));
            }
        };
        let input = match past {
            Some(p) => self.concat(&[p, &y], 0)?,
            None => y,
        };
        let tail = last_frames(self, &input, keep)?;
        Ok((input, tail))
    }
    /// The input of a causal convolution with its `taps` time taps folded into channels
    /// ([`ConvInput::FoldTime`]), and the frames the next chunk's call takes as `past`. With
    /// `s = concat([zeros, channel_rms_norm_silu(concat([past, x], 0), gamma)], 0)` over frames,
    /// zero frames making `taps − 1` in front of x's (only the last `taps − 1` of `past` count),
    /// frame t of the input holds frames t, t + 1, …, t + taps − 1 of `s` side by side:
    /// `[F, H, W, taps·C]` for x `[F, H, W, C]`, which a `1 × kh × kw` convolution whose filter
    /// has its time taps folded alike turns into the causal one's output. `past` holds frames
    /// as they came in, before the norm: the second tensor is the last `taps − 1` frames of
    /// `concat([past, x], 0)` (all of them when there are fewer).
    fn causal_rms_norm_silu_folded(
        &self,
        past: Option<&Self::Tensor>,
        x: &Self::Tensor,
        gamma: &Self::Tensor,
        taps: usize,
    ) -> Result<(Self::Tensor, Self::Tensor)> {
        fold_time_by_ops(self, past, x, gamma, taps)
    }
    /// `x[..., c] · scale[c] + shift[c]` over the last (channel) dim.
    fn channel_affine(
        &self,
        x: &Self::Tensor,
        scale: &Self::Tensor,
        shift: &Self::Tensor,
    ) -> Result<Self::Tensor>;

    // ---- video layout ----
    /// `[C, F, H, W] -> [F'·H'·W', C·pt·ph·pw]` with features ordered `(c, kt, kh, kw)`.
    fn patchify(&self, x: &Self::Tensor, patch: [usize; 3]) -> Result<Self::Tensor>;
    /// `[F'·H'·W', pt·ph·pw·C] -> [C, F'·pt, H'·ph, W'·pw]`, features ordered `(kt, kh, kw, c)`.
    fn unpatchify(
        &self,
        x: &Self::Tensor,
        grid: [usize; 3],
        patch: [usize; 3],
        channels: usize,
    ) -> Result<Self::Tensor>;
}

/// What [`Backend::sage_attention`] approximates: dense attention, or SLA with `sla`'s parameters
/// and `proj_l`. Backends without 8-bit kernels (or without them for some input) compute this.
pub(crate) fn exact_sage_attention<B: Backend>(
    b: &B,
    q: &B::Tensor,
    k: &B::Tensor,
    v: &B::Tensor,
    sla: Option<(&SlaParams, &B::Linear)>,
) -> Result<B::Tensor> {
    match sla {
        None => b.attention(q, k, v),
        Some((params, proj_l)) => b.sla_attention(q, k, v, params, proj_l),
    }
}

/// [`Backend::sage_attention`]'s `[L, H, Dh]` output as a [`Backend::linear_input`] `[L, H·Dh]`.
pub(crate) fn sage_attention_rows<B: Backend>(
    b: &B,
    q: &B::Tensor,
    k: &B::Tensor,
    v: &B::Tensor,
    sla: Option<(&SlaParams, &B::Linear)>,
) -> Result<B::LinearInput> {
    attention_rows(b, "sage_attention", &b.sage_attention(q, k, v, sla)?)
}

/// The last `keep` frames (outermost dim) of `t`, all of them where it has fewer, as a tensor of
/// their own.
pub fn last_frames<B: Backend>(b: &B, t: &B::Tensor, keep: usize) -> Result<B::Tensor> {
    let n = b.shape(t).first().copied().unwrap_or(0);
    b.slice(t, 0, n - n.min(keep), n.min(keep))
}

/// Dense attention's softmax scale for head dim `dh`, `1/sqrt(dh)`.
pub(crate) fn softmax_scale(dh: usize) -> f32 {
    1.0 / (dh as f32).sqrt()
}

/// Attention op `op`'s `[L, H, Dh]` output as a [`Backend::linear_input`] `[L, H·Dh]`.
pub(crate) fn attention_rows<B: Backend>(
    b: &B,
    op: &'static str,
    out: &B::Tensor,
) -> Result<B::LinearInput> {
    let &[len, heads, dh] = b.shape(out) else {
        return Err(crate::Error::invalid(
            op,
            format!("output of shape {:?}, not [L, H, Dh]", b.shape(out)),
        ));
    };
    b.linear_input(&b.reshape(out, &[len, heads * dh])?)
}

/// [`Backend::attention_rel_bias`] through [`Backend::attention_with`]: the `[H, Lq, Lk]` bias
/// expanded on the host from its `[H, Lq + Lk − 1]` relative-position rows.
pub(crate) fn expanded_rel_attention<B: Backend>(
    b: &B,
    q: &B::Tensor,
    k: &B::Tensor,
    v: &B::Tensor,
    scale: f32,
    rel: &B::Tensor,
) -> Result<B::Tensor> {
    let (heads, lq, lk) = shapes::rel_bias(b.shape(q), b.shape(k), b.shape(rel))?;
    let rows = b.download(rel)?.to_f32_vec();
    let span = lq + lk - 1;
    let mut bias = Vec::with_capacity(heads * lq * lk);
    for h in 0..heads {
        for i in 0..lq {
            // Row i reads relative positions −i ..= Lk − 1 − i, stored from index Lq − 1 − i.
            let start = h * span + lq - 1 - i;
            bias.extend_from_slice(&rows[start..start + lk]);
        }
    }
    let bias = b.upload(&HostTensor::from_f32([heads, lq, lk], bias)?)?;
    b.attention_with(q, k, v, scale, Some(&bias))
}

/// [`Backend::causal_rms_norm_silu_folded`] composed of other ops: its default, and what a
/// backend whose own kernels do not take some operands falls back to.
pub fn fold_time_by_ops<B: Backend>(
    b: &B,
    past: Option<&B::Tensor>,
    x: &B::Tensor,
    gamma: &B::Tensor,
    taps: usize,
) -> Result<(B::Tensor, B::Tensor)> {
    if taps == 0 {
        return Err(Error::invalid(
            "causal_rms_norm_silu_folded",
            "a convolution has at least one time tap",
        ));
    }
    let raw = match past {
        Some(p) => b.concat(&[p, x], 0)?,
        None => x.clone(),
    };
    let shape = b.shape(&raw).to_vec();
    let frames = |t: &[usize]| t.first().copied().unwrap_or(0);
    let (have, f) = (frames(&shape), frames(b.shape(x)));
    let behind = taps.saturating_sub(1);
    let tail = last_frames(b, &raw, behind)?;
    let seq = b.channel_rms_norm_silu(&raw, gamma)?;
    // Exactly taps − 1 frames in front of x's: zeros added, or the oldest cached ones dropped.
    let front = behind.min(have - f);
    let seq = b.slice(&seq, 0, have - f - front, f + front)?;
    let seq = match behind - front {
        0 => seq,
        zeros => {
            let pad: Vec<usize> = [zeros]
                .into_iter()
                .chain(shape.into_iter().skip(1))
                .collect();
            b.concat(&[&b.upload(&HostTensor::zeros(pad))?, &seq], 0)?
        }
    };
    let blocks = (0..taps)
        .map(|dt| b.slice(&seq, 0, dt, f))
        .collect::<Result<Vec<_>>>()?;
    let folded = b.concat(&blocks.iter().collect::<Vec<_>>(), 3)?;
    Ok((folded, tail))
}

/// A `[Cout, kt, kh, kw, Cin]` filter with its time taps folded into its input channels,
/// `[Cout, 1, kh, kw, kt·Cin]` (channel `dt·Cin + c`): the filter that convolves
/// [`Backend::causal_rms_norm_silu_folded`]'s input into the causal convolution's output.
pub fn fold_time_filter<B: Backend>(b: &B, w: &B::Tensor) -> Result<B::Tensor> {
    let &[cout, kt, kh, kw, cin] = b.shape(w) else {
        return Err(Error::shape(
            "fold_time_filter",
            "filter must be [Cout, kt, kh, kw, Cin]",
            b.shape(w),
        ));
    };
    let w = b.permute(w, &[0, 2, 3, 1, 4])?;
    b.reshape(&w, &[cout, 1, kh, kw, kt * cin])
}

#[cfg(test)]
mod tests {
    use super::fold_time_filter;
    use crate::{Backend, CpuBackend, HostTensor, compare};

    fn tensor(shape: &[usize], step: f32) -> HostTensor {
        let n = shape.iter().product();
        let data = (0..n).map(|i| (i as f32 * step).sin()).collect();
        HostTensor::from_f32(shape.to_vec(), data).unwrap()
    }

    #[test]
    fn rel_bias_rows_are_the_full_bias_by_relative_position() {
        let b = CpuBackend;
        let (lq, lk, heads) = (3usize, 5usize, 2usize);
        let q = b.upload(&tensor(&[lq, heads, 4], 0.3)).unwrap();
        let k = b.upload(&tensor(&[lk, heads, 4], 0.7)).unwrap();
        let v = b.upload(&tensor(&[lk, heads, 4], 1.1)).unwrap();
        let rel = tensor(&[heads, lq + lk - 1], 0.9);
        let rows = rel.to_f32_vec();
        let full: Vec<f32> = (0..heads * lq * lk)
            .map(|e| {
                let (h, i, j) = (e / (lq * lk), e / lk % lq, e % lk);
                rows[h * (lq + lk - 1) + j + lq - 1 - i]
            })
            .collect();
        let full = b
            .upload(&HostTensor::from_f32([heads, lq, lk], full).unwrap())
            .unwrap();
        let want = b.attention_with(&q, &k, &v, 0.5, Some(&full)).unwrap();
        let got = b
            .attention_rel_bias(&q, &k, &v, 0.5, &b.upload(&rel).unwrap())
            .unwrap();
        assert_eq!(got.data(), want.data());

        let wrong = b.upload(&tensor(&[heads, lq + lk], 0.9)).unwrap();
        let err = b
            .attention_rel_bias(&q, &k, &v, 0.5, &wrong)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("rel must be [2, 7] for 3 queries and 5 keys"),
            "{err}"
        );
    }

    /// Chunk by chunk, each call's cached frames feeding the next: the folded input convolved
    /// by the folded filter equals the causal convolution of the plain input.
    #[test]
    fn folded_time_taps_convolve_as_the_causal_convolution() {
        let b = CpuBackend;
        let (c, co) = (5usize, 4usize);
        let up = |t: HostTensor| b.upload(&t).unwrap();
        let w = up(tensor(&[co, 3, 3, 3, c], 0.37));
        let (gamma, bias) = (up(tensor(&[c], 0.9)), up(tensor(&[co], 1.3)));
        let wf = fold_time_filter(&b, &w).unwrap();
        let (mut plain_past, mut folded_past) = (None, None);
        for (chunk, frames) in [1usize, 4, 1, 3].into_iter().enumerate() {
            let x = up(tensor(&[frames, 4, 6, c], 0.11 + chunk as f32));
            let (input, next) = b
                .causal_rms_norm_silu(plain_past.as_ref(), &x, &gamma, c, 2)
                .unwrap();
            let cached = plain_past.as_ref().map_or(0, |p| b.shape(p)[0]);
            let pad = [[2 - cached, 0], [1, 1], [1, 1]];
            let want = b.conv3d(&input, &w, Some(&bias), [1; 3], pad).unwrap();
            plain_past = Some(next);
            let (folded, tail) = b
                .causal_rms_norm_silu_folded(folded_past.as_ref(), &x, &gamma, 3)
                .unwrap();
            let got = b
                .conv3d(&folded, &wf, Some(&bias), [1; 3], [[0, 0], [1, 1], [1, 1]])
                .unwrap();
            assert_eq!(b.shape(&got), b.shape(&want));
            let err = compare::max_rel_err(got.data(), want.data());
            assert!(err < 1e-5, "chunk {chunk}: {err}");
            let raw = match &folded_past {
                Some(p) => b.concat(&[p, &x], 0).unwrap(),
                None => x.clone(),
            };
            let have = b.shape(&raw)[0];
            let want_tail = b.slice(&raw, 0, have - have.min(2), have.min(2)).unwrap();
            assert_eq!(tail.data(), want_tail.data());
            folded_past = Some(tail);
        }
    }
}
