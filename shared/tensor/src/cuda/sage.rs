//! Launchers for `kernels/sage.cu`: 8-bit (INT8 Q·Kᵀ, FP8 P̃·V) self-attention, dense or
//! TurboDiffusion's SageSLA (top-k key blocks plus the linear branch through `proj_l`).

use cudarc::driver::{DeviceRepr, LaunchConfig};

use super::alloc::DeviceBuffer;
use super::device::Device;
use super::quant::{self, CudaFp8Rows};
use super::split::Split;
use super::{CudaLinear, CudaTensor, LinearWeight, dt_code, kernels};
use crate::shapes;
use crate::{DType, Error, Result, SlaParams};

/// `SG_D`, `SG_BQ`, `SG_BK` of sage.cu: head dim and block shape (queries × keys).
pub const SAGE_HEAD_DIM: usize = 128;
pub const SAGE_BLOCK_Q: usize = 64;
pub const SAGE_BLOCK_K: usize = 128;
/// Bytes of one quantized Q tile and of one K or Vᵀ tile.
const Q_TILE: usize = SAGE_BLOCK_Q * SAGE_HEAD_DIM;
const K_TILE: usize = SAGE_BLOCK_K * SAGE_HEAD_DIM;
/// `SG_KV_CHUNK`, `SG_STATS_SMEM`, `SG_KV_SMEM` (two stages of 64-token k and v tiles, with KV
/// the φ(k) tile, the warps' max |v| per channel), `SG_KVW_BYTES`, `SG_KVW_ROWS`, `SG_KV_REDUCE_SMEM`,
/// `SG_LINEAR_ROWS`, `SG_LINEAR_SMEM`.
const KV_CHUNK: usize = 512;
const KV_TILE: usize = 64 * 2 * SAGE_HEAD_DIM;
const KV_PART_BYTES: usize = 8 * SAGE_HEAD_DIM * 4;
const STATS_SMEM: u32 = (4 * KV_TILE + KV_PART_BYTES) as u32;
const KV_SMEM: u32 = (5 * KV_TILE + KV_PART_BYTES) as u32;
const KVW_BYTES: usize = SAGE_HEAD_DIM * SAGE_HEAD_DIM * 2;
const KVW_ROWS: usize = 16;
const KV_REDUCE_SMEM: u32 =
    ((SAGE_HEAD_DIM * (SAGE_HEAD_DIM + 1) + KVW_ROWS * SAGE_HEAD_DIM) * 4) as u32;
const LINEAR_ROWS: usize = 128;
const LINEAR_SMEM: u32 = (2 * LINEAR_ROWS * 256 + KVW_BYTES + SAGE_HEAD_DIM * 4) as u32;
/// `SG_SELECT_ROWS` (query blocks a CTA), and the most key blocks `sage_select` takes: a thread
/// each, so a block's 1024 threads (131,072 tokens).
const SELECT_ROWS: usize = 16;
const SELECT_MAX_KEY_BLOCKS: usize = 1024;
/// `SG_ONES_BYTES`, `SG_SMEM_BYTES` (three ring slots per consumer, each a K and a Vᵀ tile and
/// 8 rows of ones) and `SG_MMA_SMEM_BYTES`.
const ONES_BYTES: usize = 1024;
const SM90_SMEM: u32 = (2 * Q_TILE + 2 * 3 * (2 * K_TILE + ONES_BYTES) + 1024) as u32;
const MMA_SMEM: u32 = (Q_TILE + 2 * 2 * K_TILE) as u32;

#[repr(C)]
struct StatsReduceArgs {
    stats: u64,
    partial: u64,
    len: i32,
    chunks: i32,
}

#[repr(C)]
struct QuantKArgs {
    kq: u64,
    vq: u64,
    kscale: u64,
    kpool: u64,
    k: u64,
    v: u64,
    stats: u64,
    len: i32,
    heads: i32,
    kblocks: i32,
}

#[repr(C)]
struct QuantQArgs {
    qq: u64,
    qscale: u64,
    qpool: u64,
    q: u64,
    scale_log2: f32,
    len: i32,
    heads: i32,
    qblocks: i32,
}

#[repr(C)]
struct SelectArgs {
    lut: u64,
    qpool: u64,
    kpool: u64,
    qblocks: i32,
    kblocks: i32,
    keep: i32,
}

#[repr(C)]
struct KvArgs {
    stats: u64,
    partial: u64,
    k: u64,
    v: u64,
    len: i32,
    heads: i32,
    chunks: i32,
}

#[repr(C)]
struct KvSumArgs {
    kv: u64,
    partial: u64,
    chunks: i32,
}

#[repr(C)]
struct KvReduceArgs {
    kvw: u64,
    kv: u64,
    weight: u64,
    weight_dt: i32,
}

#[repr(C)]
struct LinearArgs {
    out: u64,
    q: u64,
    kvw: u64,
    stats: u64,
    bias: u64,
    bias_dt: i32,
    len: i32,
    heads: i32,
    amax: u64,
}

#[repr(C)]
struct AttentionArgs {
    out: u64,
    out8: u64,
    out8_scale: u64,
    q: u64,
    k: u64,
    v: u64,
    qscale: u64,
    kscale: u64,
    stats: u64,
    lut: u64,
    lin: u64,
    part: u64,
    len: i32,
    heads: i32,
    qblocks: i32,
    kblocks: i32,
    blocks: i32,
    whole: i32,
    pieces: i32,
}

#[repr(C)]
struct OutScaleArgs {
    scales: u64,
    to8: u64,
    stats: u64,
    lin_amax: u64,
    len: i32,
    heads: i32,
}

// SAFETY: `#[repr(C)]` mirrors of sage.cu's argument structs (u64 for pointers, i32 for int,
// f32 for float, in declaration order), passed by value as the kernels' single parameter.
unsafe impl DeviceRepr for StatsReduceArgs {}
unsafe impl DeviceRepr for QuantKArgs {}
unsafe impl DeviceRepr for QuantQArgs {}
unsafe impl DeviceRepr for SelectArgs {}
unsafe impl DeviceRepr for KvArgs {}
unsafe impl DeviceRepr for KvSumArgs {}
unsafe impl DeviceRepr for KvReduceArgs {}
unsafe impl DeviceRepr for LinearArgs {}
unsafe impl DeviceRepr for AttentionArgs {}
unsafe impl DeviceRepr for OutScaleArgs {}

/// Which 8-bit attention kernel this GPU runs: the wgmma one on sm_90a unless `portable`, the
/// mma.sync one on any other GPU with FP8 tensor cores (sm_89 and later); `None` before sm_89.
pub(super) fn sage_kernel(dev: &Device, portable: bool) -> Option<kernels::Kernel> {
    if dev.info.arch == "sm_90a" && !portable {
        Some(kernels::SAGE_ATTENTION)
    } else if dev.info.compute_capability >= (8, 9) {
        Some(kernels::SAGE_ATTENTION_MMA)
    } else {
        None
    }
}

/// Checks that `params` use the kernels' block shape and, where they keep fewer than all of the
/// `key_blocks` of `q` (`len` tokens), that the select kernel takes that many; returns the key
/// blocks kept per query block.
pub(super) fn sage_blocks(params: &SlaParams, key_blocks: usize, len: usize) -> Result<usize> {
    params.validate()?;
    if (params.block_q, params.block_k) != (SAGE_BLOCK_Q, SAGE_BLOCK_K) {
        return Err(Error::invalid(
            "sage_attention",
            format!(
                "SageSLA blocks are {SAGE_BLOCK_Q} queries x {SAGE_BLOCK_K} keys, got {} x {}",
                params.block_q, params.block_k
            ),
        ));
    }
    let keep = params.blocks_kept(key_blocks);
    if keep < key_blocks && key_blocks > SELECT_MAX_KEY_BLOCKS {
        return Err(Error::too_large(
            "sage_attention",
            format!(
                "SageSLA's block selection takes at most {} tokens, got {len} (top-k 1 or \
                 dense attention takes more)",
                SELECT_MAX_KEY_BLOCKS * SAGE_BLOCK_K
            ),
        ));
    }
    Ok(keep)
}

fn grid(x: usize, y: usize, threads: u32, smem: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (x as u32, y as u32, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: smem,
    }
}

/// Checks bf16 `q`, `k`, `v: [L, H, 128]` (self-attention) and, for SageSLA, `sla`; returns
/// `(L, H)` and the key blocks each query block attends to.
pub(super) fn check(
    q: &CudaTensor,
    k: &CudaTensor,
    v: &CudaTensor,
    sla: Option<(&SlaParams, &CudaLinear)>,
) -> Result<(usize, usize, usize)> {
    const OP: &str = "sage_attention";
    let d = shapes::qkv(OP, q.shape(), k.shape(), v.shape(), super::attention::dims3)?;
    if [q, k, v].iter().any(|t| t.dtype() != DType::BF16) {
        return Err(Error::invalid(OP, "q, k and v must be bf16"));
    }
    if d.dh != SAGE_HEAD_DIM || d.lq != d.lk {
        return Err(Error::shape(
            OP,
            "self-attention with head dim 128 (q and k of equal length)",
            q.shape(),
        ));
    }
    if d.heads > 65_535 {
        return Err(Error::shape(OP, "at most 65535 heads", q.shape()));
    }
    let kb = d.lk.div_ceil(SAGE_BLOCK_K);
    let keep = match sla {
        Some((params, proj_l)) => {
            shapes::sla_projection(d, proj_l.in_features, proj_l.out_features)?;
            sage_blocks(params, kb, d.lk)?
        }
        None => kb,
    };
    Ok((d.lq, d.heads, keep))
}

/// The quantized operands and statistics of one attention call.
pub(super) struct Quantized {
    len: usize,
    heads: usize,
    /// `[H, 3, 128]`: k̄, Σ φ(k), V channel scales.
    stats: DeviceBuffer,
    qq: DeviceBuffer,
    qscale: DeviceBuffer,
    qpool: DeviceBuffer,
    kq: DeviceBuffer,
    vq: DeviceBuffer,
    kscale: DeviceBuffer,
    kpool: DeviceBuffer,
}

impl Quantized {
    fn qblocks(&self) -> usize {
        self.len.div_ceil(SAGE_BLOCK_Q)
    }

    fn kblocks(&self) -> usize {
        self.len.div_ceil(SAGE_BLOCK_K)
    }
}

/// Per-head statistics from one read of k and v: `[H, 3, 128]` k̄, Σ φ(k) and V channel scales
/// and, with `proj_l`, the linear branch's `φ(K)ᵀV · proj_lᵀ` (as sage_linear's B-operand images).
/// Both are summed over the keys in chunks of `KV_CHUNK` tokens, in order (deterministic), by two
/// CTAs an SM working through the (chunk, head) items.
pub(super) fn statistics(
    dev: &Device,
    k: &CudaTensor,
    v: &CudaTensor,
    proj_l: Option<&CudaLinear>,
) -> Result<(DeviceBuffer, Option<DeviceBuffer>)> {
    let weight = proj_l
        .map(|p| match &p.weight {
            LinearWeight::Dense(weight) => Ok(weight),
            LinearWeight::Fp8 { .. } | LinearWeight::Int8(_) => Err(Error::invalid(
                "sage_attention",
                "proj_l must be a dense (unquantized) linear layer",
            )),
        })
        .transpose()?;
    let [len, heads] = [k.shape()[0], k.shape()[1]];
    let chunks = len.div_ceil(KV_CHUNK);
    let partial_stats = dev.alloc(heads * chunks * 3 * SAGE_HEAD_DIM, DType::F32)?;
    let partial_kv = weight
        .map(|_| dev.alloc(heads * chunks * SAGE_HEAD_DIM * SAGE_HEAD_DIM, DType::F32))
        .transpose()?;
    let ctas = dev.persistent_ctas(chunks * heads, 2);
    let (kernel, smem) = if partial_kv.is_some() {
        (kernels::SAGE_KV, KV_SMEM)
    } else {
        (kernels::SAGE_STATS, STATS_SMEM)
    };
    dev.launch(
        kernel,
        grid(ctas, 1, 256, smem),
        &KvArgs {
            stats: partial_stats.ptr(),
            partial: partial_kv.as_ref().map_or(0, DeviceBuffer::ptr),
            k: k.ptr(),
            v: v.ptr(),
            len: len as i32,
            heads: heads as i32,
            chunks: chunks as i32,
        },
    )?;
    let stats = dev.alloc(heads * 3 * SAGE_HEAD_DIM, DType::F32)?;
    dev.launch(
        kernels::SAGE_STATS_REDUCE,
        grid(heads, 1, 128, 0),
        &StatsReduceArgs {
            stats: stats.ptr(),
            partial: partial_stats.ptr(),
            len: len as i32,
            chunks: chunks as i32,
        },
    )?;
    let kvw = weight
        .zip(partial_kv)
        .map(|(weight, partial)| {
            let kv = dev.alloc(heads * SAGE_HEAD_DIM * SAGE_HEAD_DIM, DType::F32)?;
            dev.launch(
                kernels::SAGE_KV_SUM,
                grid(heads * SAGE_HEAD_DIM * SAGE_HEAD_DIM / 256, 1, 256, 0),
                &KvSumArgs {
                    kv: kv.ptr(),
                    partial: partial.ptr(),
                    chunks: chunks as i32,
                },
            )?;
            let kvw = dev.pool.alloc(heads * KVW_BYTES)?;
            dev.launch(
                kernels::SAGE_KV_REDUCE,
                grid(SAGE_HEAD_DIM / KVW_ROWS, heads, 128, KV_REDUCE_SMEM),
                &KvReduceArgs {
                    kvw: kvw.ptr(),
                    kv: kv.ptr(),
                    weight: weight.ptr(),
                    weight_dt: dt_code(weight.dtype()),
                },
            )?;
            Ok(kvw)
        })
        .transpose()?;
    Ok((stats, kvw))
}

/// INT8 Q and K − k̄ and FP8 Vᵀ tiles with their scales and block means, from `stats` (of
/// [`statistics`]).
pub(super) fn quantize(
    dev: &Device,
    q: &CudaTensor,
    k: &CudaTensor,
    v: &CudaTensor,
    stats: DeviceBuffer,
    (len, heads): (usize, usize),
) -> Result<Quantized> {
    let (qb, kb) = (len.div_ceil(SAGE_BLOCK_Q), len.div_ceil(SAGE_BLOCK_K));
    let (l32, h32, kb32) = (len as i32, heads as i32, kb as i32);
    let f32s = |n: usize| dev.alloc(n, DType::F32);
    let (kq, vq) = (
        dev.pool.alloc(heads * kb * K_TILE)?,
        dev.pool.alloc(heads * kb * K_TILE)?,
    );
    let (kscale, kpool) = (f32s(heads * kb)?, f32s(heads * kb * SAGE_HEAD_DIM)?);
    dev.launch(
        kernels::SAGE_QUANT_K,
        grid(kb, heads, 128, 0),
        &QuantKArgs {
            kq: kq.ptr(),
            vq: vq.ptr(),
            kscale: kscale.ptr(),
            kpool: kpool.ptr(),
            k: k.ptr(),
            v: v.ptr(),
            stats: stats.ptr(),
            len: l32,
            heads: h32,
            kblocks: kb32,
        },
    )?;
    let qq = dev.pool.alloc(heads * qb * Q_TILE)?;
    let (qscale, qpool) = (f32s(heads * qb)?, f32s(heads * qb * SAGE_HEAD_DIM)?);
    dev.launch(
        kernels::SAGE_QUANT_Q,
        grid(qb, heads, 128, 0),
        &QuantQArgs {
            qq: qq.ptr(),
            qscale: qscale.ptr(),
            qpool: qpool.ptr(),
            q: q.ptr(),
            scale_log2: std::f32::consts::LOG2_E / (SAGE_HEAD_DIM as f32).sqrt(),
            len: l32,
            heads: h32,
            qblocks: qb as i32,
        },
    )?;
    Ok(Quantized {
        len,
        heads,
        stats,
        qq,
        qscale,
        qpool,
        kq,
        vq,
        kscale,
        kpool,
    })
}

/// One attention call's operands: quantized, the key blocks selected for each query block
/// (SageSLA below top-k 1) with their count, the linear branch, and that branch's largest value
/// where the output goes out in e4m3 ([`output_scale`]).
pub(super) struct Operands {
    pub x: Quantized,
    pub lut: Option<(DeviceBuffer, usize)>,
    pub lin: Option<CudaTensor>,
    pub lin_amax: Option<DeviceBuffer>,
}

/// Where the attention kernel writes its output.
pub(super) enum AttentionOut<'a> {
    /// bf16 `[L, H, 128]`.
    Bf16(&'a CudaTensor),
    /// e4m3 `[L, H · 128]` rows for an FP8 output projection, under the one scale
    /// [`output_scale`] wrote: its factor into e4m3 in `to8`.
    E4m3 {
        rows: &'a CudaFp8Rows,
        to8: &'a CudaTensor,
    },
}

/// Softmax attention over the quantized operands with `kernel` (from [`sage_kernel`]): over the
/// selected key blocks per query block, or over all of them without a selection; plus the linear
/// branch when there is one; into `out`.
pub(super) fn attend(
    dev: &Device,
    kernel: kernels::Kernel,
    ops: &Operands,
    out: AttentionOut<'_>,
) -> Result<()> {
    let (x, lut, lin) = (&ops.x, ops.lut.as_ref(), ops.lin.as_ref());
    if x.len == 0 || x.heads == 0 {
        return Ok(());
    }
    let (qb, kb) = (x.qblocks(), x.kblocks());
    let blocks = lut.map_or(kb, |&(_, n)| n);
    // The wgmma kernel takes (head, pair of query blocks) items, CTA b units b, b + grid, …, one
    // CTA an SM, so a unit's Q and first tiles load while the last one finishes; the last
    // round's items split over the SMs it would leave idle (`Split`; dense Sage 1.3B 480p 2 %
    // faster, and a CTA a unit 0–1.5 % slower than persistent: 2026-11-27-split-tail.md).
    // SageSLA gains nothing from the split (its CTAs' item counts already differ by one) but
    // splits alike, so that top-k 1.0 still sums exactly as dense Sage does.
    let items = qb.div_ceil(2) * x.heads;
    let (cfg, split) = if kernel == kernels::SAGE_ATTENTION {
        let split = Split::new(items, blocks, dev.info.multiprocessors as usize);
        let ctas = dev.persistent_ctas(split.units(), 1);
        (grid(ctas, 1, 384, SM90_SMEM), split)
    } else {
        (grid(qb, x.heads, 128, MMA_SMEM), Split::none(items))
    };
    let part = split.workspace(dev)?;
    let (out, out8, out8_scale) = match out {
        AttentionOut::Bf16(out) => (out.ptr(), 0, 0),
        AttentionOut::E4m3 { rows, to8 } => (0, rows.values.ptr(), to8.ptr()),
    };
    // The wgmma kernel's e4m3 output is a kernel of its own; the others take it as an argument.
    let kernel = if kernel == kernels::SAGE_ATTENTION && out8 != 0 {
        kernels::SAGE_ATTENTION_E4M3
    } else {
        kernel
    };
    let args = AttentionArgs {
        out,
        out8,
        out8_scale,
        q: x.qq.ptr(),
        k: x.kq.ptr(),
        v: x.vq.ptr(),
        qscale: x.qscale.ptr(),
        kscale: x.kscale.ptr(),
        stats: x.stats.ptr(),
        lut: lut.map_or(0, |(l, _)| l.ptr()),
        lin: lin.map_or(0, CudaTensor::ptr),
        part: part.as_ref().map_or(0, DeviceBuffer::ptr),
        len: x.len as i32,
        heads: x.heads as i32,
        qblocks: qb as i32,
        kblocks: kb as i32,
        blocks: blocks as i32,
        whole: split.whole as i32,
        pieces: split.pieces as i32,
    };
    dev.launch(kernel, cfg, &args)?;
    split.merge(dev, kernels::SAGE_MERGE, &args)
}

/// The attention output's e4m3 rows `[L, H · 128]` for an FP8 output projection, unwritten, and
/// their one scale, written from a bound: V's channel scales and the linear branch's largest
/// value (from [`linear_branch`]). Returns the rows (every row's scale set) and the attention
/// kernel's factor into e4m3.
pub(super) fn output_scale(dev: &Device, ops: &Operands) -> Result<(CudaFp8Rows, CudaTensor)> {
    let x = &ops.x;
    let rows = CudaFp8Rows::alloc(
        dev,
        x.len,
        x.heads * SAGE_HEAD_DIM,
        quant::Lifetime::Activation,
    )?;
    let to8 = CudaTensor::alloc_as(dev, &[1], DType::F32)?;
    dev.launch(
        kernels::SAGE_OUT_SCALE,
        grid(x.len.div_ceil(1024).max(1), 1, 256, 0),
        &OutScaleArgs {
            scales: rows.scales.ptr(),
            to8: to8.ptr(),
            stats: x.stats.ptr(),
            lin_amax: ops.lin_amax.as_ref().map_or(0, DeviceBuffer::ptr),
            len: x.len as i32,
            heads: x.heads as i32,
        },
    )?;
    Ok((rows, to8))
}

/// One SageSLA call's block selection and what it was computed from, for checking `sage_select`
/// against a top-k on the host.
pub struct SageSelection {
    pub heads: usize,
    pub qblocks: usize,
    pub kblocks: usize,
    pub keep: usize,
    /// `[H, QB, 128]`: mean q of each query block.
    pub qpool: Vec<f32>,
    /// `[H, 128, KB]`: mean k − k̄ of each key block, channel-major as the kernel reads it.
    pub kpool: Vec<f32>,
    /// `[H, QB, keep]`: the selected key blocks of each query block, ascending.
    pub lut: Vec<i32>,
}

/// SageSLA's statistics, quantization and block selection on bf16 `q`, `k`, `v` under `params`,
/// the pooled means and the selection copied to the host (all empty for an empty sequence or no
/// heads, where there is nothing to select among).
pub(super) fn selection(
    dev: &Device,
    q: &CudaTensor,
    k: &CudaTensor,
    v: &CudaTensor,
    params: &SlaParams,
) -> Result<SageSelection> {
    const OP: &str = "sage_selection";
    let (len, heads, _) = check(q, k, v, None)?;
    let (qb, kb) = (len.div_ceil(SAGE_BLOCK_Q), len.div_ceil(SAGE_BLOCK_K));
    let keep = sage_blocks(params, kb, len)?;
    let mut sel = SageSelection {
        heads,
        qblocks: qb,
        kblocks: kb,
        keep,
        qpool: Vec::new(),
        kpool: Vec::new(),
        lut: Vec::new(),
    };
    if len == 0 || heads == 0 {
        return Ok(sel);
    }
    let (stats, _) = statistics(dev, k, v, None)?;
    let x = quantize(dev, q, k, v, stats, (len, heads))?;
    sel.lut = dev.read(OP, &select(dev, &x, keep)?, heads * qb * keep)?;
    sel.qpool = dev.read(OP, &x.qpool, heads * qb * SAGE_HEAD_DIM)?;
    sel.kpool = dev.read(OP, &x.kpool, heads * kb * SAGE_HEAD_DIM)?;
    Ok(sel)
}

/// The `keep` best key blocks of every (head, query block), ascending: `[H, QB, keep]` i32
/// (`keep` from [`sage_blocks`], which bounds the key blocks the kernel takes).
pub(super) fn select(dev: &Device, x: &Quantized, keep: usize) -> Result<DeviceBuffer> {
    let (qb, kb) = (x.qblocks(), x.kblocks());
    let lut = dev.pool.alloc(x.heads * qb * keep * 4)?;
    dev.launch(
        kernels::SAGE_SELECT,
        grid(
            qb.div_ceil(SELECT_ROWS),
            x.heads,
            32 * kb.div_ceil(32) as u32,
            (4 * SELECT_ROWS * (SAGE_HEAD_DIM + kb)) as u32,
        ),
        &SelectArgs {
            lut: lut.ptr(),
            qpool: x.qpool.ptr(),
            kpool: x.kpool.ptr(),
            qblocks: qb as i32,
            kblocks: kb as i32,
            keep: keep as i32,
        },
    )?;
    Ok(lut)
}

/// The linear branch, projected: `φ(q) · kvw / (φ(q)·Σφ(k) + 1e-5)` plus `proj_l`'s bias, which is
/// `proj_l(φ(q) φ(K)ᵀV / (φ(q)·Σφ(k) + 1e-5))`, `[L, H, 128]` bf16; with `amax`, also its largest
/// |value| (f32, before the bf16 rounding) there, which must hold 0 (or less than it) before.
pub(super) fn linear_branch(
    dev: &Device,
    q: &CudaTensor,
    x: &Quantized,
    kvw: &DeviceBuffer,
    proj_l: &CudaLinear,
    amax: Option<&DeviceBuffer>,
) -> Result<CudaTensor> {
    let out = CudaTensor::alloc_as(dev, q.shape(), DType::BF16)?;
    let items = x.len.div_ceil(LINEAR_ROWS) * x.heads;
    dev.launch(
        kernels::SAGE_LINEAR,
        grid(dev.persistent_ctas(items, 2), 1, 256, LINEAR_SMEM),
        &LinearArgs {
            out: out.ptr(),
            q: q.ptr(),
            kvw: kvw.ptr(),
            stats: x.stats.ptr(),
            bias: proj_l.bias.as_ref().map_or(0, CudaTensor::ptr),
            bias_dt: proj_l.bias.as_ref().map_or(0, |b| dt_code(b.dtype())),
            len: x.len as i32,
            heads: x.heads as i32,
            amax: amax.map_or(0, DeviceBuffer::ptr),
        },
    )?;
    Ok(out)
}
