//! Launchers for `kernels/rope.cu`, `kernels/attention.cu` and `kernels/sla.cu`.

use cudarc::driver::{DeviceRepr, LaunchConfig};

use super::alloc::DeviceBuffer;
use super::device::Device;
use super::gemm::{LinearGemm, Operands};
use super::kernels;
use super::quant::{CudaFp8Rows, Lifetime};
use super::split::Split;
use super::tma::TensorMap;
use super::{CudaLinear, CudaTensor, converted, dt_code, gemm_linear, layout, widest};
use crate::shapes::{self, Dims};
use crate::{DType, Error, Result, SlaParams};

/// `ATT_BQ`, `ATT_WARPS` and `ATT_MAX_DH` of attention.cu.
const ATT_BQ: usize = 16;
const ATT_THREADS: u32 = 128;
const ATT_MAX_DH: usize = 128;

#[repr(C)]
struct RopeArgs {
    out: u64,
    x: u64,
    cos: u64,
    sin: u64,
    pairs: u64,
    heads: u32,
    half: u32,
    dt: i32,
}

#[repr(C)]
struct SoftmaxScaledArgs {
    out: u64,
    x: u64,
    rows: u64,
    cols: u32,
    scale: f32,
    out_dt: i32,
    x_dt: i32,
}

#[repr(C)]
struct AttentionArgs {
    out: u64,
    q: u64,
    k: u64,
    v: u64,
    bias: u64,
    block_mask: u64,
    scale: f32,
    lq: i32,
    lk: i32,
    heads: i32,
    dh: i32,
    block_q: i32,
    block_k: i32,
}

#[repr(C)]
struct FlashArgs {
    q_map: TensorMap,
    k_map: TensorMap,
    v_map: TensorMap,
    out: u64,
    q: u64,
    k: u64,
    v: u64,
    scale_log2: f32,
    lq: i32,
    lk: i32,
    heads: i32,
    rel: u64,
    part: u64,
    whole: i32,
    pieces: i32,
    out8: u64,
    out8_scales: u64,
    vmax: u64,
}

#[repr(C)]
struct FlashVMaxArgs {
    vmax: u64,
    v: u64,
    values: i32,
}

#[repr(C)]
struct SlaPoolArgs {
    out: u64,
    x: u64,
    center: u64,
    len: u32,
    heads: u32,
    dh: u32,
    block: u32,
    blocks: u32,
}

#[repr(C)]
struct SlaScoreArgs {
    scores: u64,
    pq: u64,
    pk: u64,
    heads: u32,
    qblocks: u32,
    kblocks: u32,
    dh: u32,
}

#[repr(C)]
struct SlaSelectArgs {
    mask: u64,
    scores: u64,
    rows: u64,
    kblocks: u32,
    keep: u32,
}

#[repr(C)]
struct SlaKvArgs {
    kv: u64,
    ksum: u64,
    phik: u64,
    v: u64,
    len: u32,
    heads: u32,
    dh: u32,
}

#[repr(C)]
struct SlaLinearArgs {
    out: u64,
    phiq: u64,
    kv: u64,
    ksum: u64,
    heads: u32,
    dh: u32,
}

// SAFETY (all nine): `#[repr(C)]` mirrors of the kernels' parameter structs (device pointers
// as u64, `int` as i32, `unsigned` as u32), in field order.
unsafe impl DeviceRepr for RopeArgs {}
unsafe impl DeviceRepr for AttentionArgs {}
unsafe impl DeviceRepr for FlashArgs {}
unsafe impl DeviceRepr for FlashVMaxArgs {}
unsafe impl DeviceRepr for SlaPoolArgs {}
unsafe impl DeviceRepr for SlaScoreArgs {}
unsafe impl DeviceRepr for SlaSelectArgs {}
unsafe impl DeviceRepr for SoftmaxScaledArgs {}
unsafe impl DeviceRepr for SlaKvArgs {}
unsafe impl DeviceRepr for SlaLinearArgs {}

/// `[L, H, Dh]` with an even head dim, every extent fitting the kernels' 32-bit counters.
pub(super) fn dims3(op: &'static str, shape: &[usize]) -> Result<[usize; 3]> {
    match *shape {
        [l, h, d] if d % 2 == 0 => {
            if i32::try_from(l * h * d).is_err() {
                return Err(Error::too_large(
                    op,
                    format!(
                        "{l} tokens of {h} heads x {d}: the kernels take fewer than 2^31 \
                         elements, at most {} tokens",
                        (i32::MAX as usize) / (h * d).max(1)
                    ),
                ));
            }
            Ok([l, h, d])
        }
        _ => Err(Error::shape(op, "expected [L, H, Dh] with even Dh", shape)),
    }
}

/// Shapes of q, k, v, and the attention kernel's limits on the head dim.
fn check_qkv(op: &'static str, q: &CudaTensor, k: &CudaTensor, v: &CudaTensor) -> Result<Dims> {
    let d = shapes::qkv(op, q.shape(), k.shape(), v.shape(), dims3)?;
    let dh = d.dh;
    if dh % 4 != 0 || dh > ATT_MAX_DH {
        return Err(Error::invalid(
            op,
            format!("head dim {dh} must be a multiple of 4 and at most {ATT_MAX_DH}"),
        ));
    }
    Ok(d)
}

pub(super) fn rope(
    dev: &Device,
    x: &CudaTensor,
    cos: &CudaTensor,
    sin: &CudaTensor,
) -> Result<CudaTensor> {
    let [len, heads, dh] = dims3("rope", x.shape())?;
    shapes::rope_tables(len, dh, [cos.shape(), sin.shape()])?;
    let out = CudaTensor::alloc_as(dev, x.shape(), x.dtype())?;
    let pairs = x.numel() / 2;
    dev.launch_elements(
        kernels::ROPE,
        pairs,
        &RopeArgs {
            out: out.ptr(),
            x: x.ptr(),
            cos: cos.ptr(),
            sin: sin.ptr(),
            pairs: pairs as u64,
            heads: heads as u32,
            half: (dh / 2) as u32,
            dt: dt_code(x.dtype()),
        },
    )?;
    Ok(out)
}

/// The SLA block mask as the attention kernel reads it: `[H, QB, KB]` bytes, 1 = attend.
struct BlockMask {
    bytes: DeviceBuffer,
    block_q: usize,
    block_k: usize,
}

/// The attention kernel with an optional bias and an optional SLA block mask.
#[allow(clippy::too_many_arguments)]
fn launch_attention(
    dev: &Device,
    d: Dims,
    q: &CudaTensor,
    k: &CudaTensor,
    v: &CudaTensor,
    scale: f32,
    bias: Option<&CudaTensor>,
    mask: Option<&BlockMask>,
) -> Result<CudaTensor> {
    let out = CudaTensor::alloc(dev, q.shape())?;
    if d.lq == 0 {
        return Ok(out);
    }
    let blocks = d.lq.div_ceil(ATT_BQ);
    let args = AttentionArgs {
        out: out.ptr(),
        q: q.ptr(),
        k: k.ptr(),
        v: v.ptr(),
        bias: bias.map_or(0, CudaTensor::ptr),
        block_mask: mask.map_or(0, |m| m.bytes.ptr()),
        scale,
        lq: d.lq as i32,
        lk: d.lk as i32,
        heads: d.heads as i32,
        dh: d.dh as i32,
        block_q: mask.map_or(1, |m| m.block_q as i32),
        block_k: mask.map_or(1, |m| m.block_k as i32),
    };
    let cfg = LaunchConfig {
        grid_dim: (blocks as u32, d.heads as u32, 1),
        block_dim: (ATT_THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    dev.launch(kernels::ATTENTION, cfg, &args)?;
    Ok(out)
}

/// Whether `attention_with` takes these heads; wider ones go to [`wide_attention`].
pub(super) fn fits_kernel(q: &CudaTensor) -> bool {
    q.shape().last().is_some_and(|&dh| dh <= ATT_MAX_DH)
}

/// Softmax attention with heads wider than the kernels take (the Wan VAE's single head of 384
/// channels, over its frames as heads): per head, `S = q kᵀ` and `O = P v` on cuBLASLt in the
/// operands' type (bf16 when all three are, else f32) with f32 accumulation, and the scaled
/// softmax of `S` in f32 arithmetic between them. One head's `[Lq, Lk]` scores exist at a time;
/// bf16 scores carry bf16 rounding (2⁻⁹ relative) into the softmax, within the VAE's bf16 error.
pub(super) fn wide_attention(
    dev: &Device,
    q: &CudaTensor,
    k: &CudaTensor,
    v: &CudaTensor,
    scale: f32,
) -> Result<CudaTensor> {
    let d = shapes::qkv("attention", q.shape(), k.shape(), v.shape(), dims3)?;
    let dtype = widest(&[q, k, v]);
    // Heads outermost, v transposed, so each head's products read whole rows ("TN" GEMMs).
    let heads_first = |t: &CudaTensor, perm: &[usize]| -> Result<CudaTensor> {
        layout::permute(dev, &converted(dev, t, dtype)?, perm)
    };
    let qh = heads_first(q, &[1, 0, 2])?;
    let kh = heads_first(k, &[1, 0, 2])?;
    let vt = heads_first(v, &[1, 2, 0])?;
    let mut outs = Vec::with_capacity(d.heads);
    for h in 0..d.heads {
        // Own allocations keep every GEMM operand at the pool's 256-byte alignment.
        let head = |t: &CudaTensor| layout::slice(dev, t, 0, h, 1);
        let scores = matmul_nt(dev, &head(&qh)?, &head(&kh)?, [d.lq, d.lk, d.dh])?;
        let probs = softmax_rows(dev, &scores, d.lk, scale)?;
        outs.push(matmul_nt(dev, &probs, &head(&vt)?, [d.lq, d.dh, d.lk])?);
    }
    let o = layout::concat(dev, &outs.iter().collect::<Vec<_>>(), 0)?;
    layout::permute(dev, &o.reshaped(&[d.heads, d.lq, d.dh])?, &[1, 0, 2])
}

/// `softmax(scale · x)` over rows of `cols` elements of `x`, in `x`'s type (f32 arithmetic).
fn softmax_rows(dev: &Device, x: &CudaTensor, cols: usize, scale: f32) -> Result<CudaTensor> {
    let out = CudaTensor::alloc_as(dev, x.shape(), x.dtype())?;
    let rows = x.numel() / cols.max(1);
    let cols32 =
        u32::try_from(cols).map_err(|_| Error::shape("softmax", "rows too long", x.shape()))?;
    let warps_per_block = (ATT_THREADS / 32) as usize;
    dev.launch(
        kernels::SOFTMAX_SCALED_ROWS,
        LaunchConfig {
            grid_dim: (rows.div_ceil(warps_per_block) as u32, 1, 1),
            block_dim: (ATT_THREADS, 1, 1),
            shared_mem_bytes: 0,
        },
        &SoftmaxScaledArgs {
            out: out.ptr(),
            x: x.ptr(),
            rows: rows as u64,
            cols: cols32,
            scale,
            out_dt: dt_code(x.dtype()),
            x_dt: dt_code(x.dtype()),
        },
    )?;
    Ok(out)
}

/// `a[m, k] · b[n, k]ᵀ -> [m, n]` in `a`'s type, for `[m, n, k]`.
fn matmul_nt(
    dev: &Device,
    a: &CudaTensor,
    b: &CudaTensor,
    [m, n, k]: [usize; 3],
) -> Result<CudaTensor> {
    let out = CudaTensor::alloc_as(dev, &[m, n], a.dtype())?;
    // Nothing is left pending without a bias or GELU.
    let _pending = dev.gemm.linear(
        &dev.stream,
        &LinearGemm {
            operands: Operands::Float(a.dtype()),
            out: out.ptr(),
            acc: None,
            x: a.ptr(),
            w: b.ptr(),
            bias: None,
            gelu: false,
            rows: m,
            n,
            k,
        },
    )?;
    Ok(out)
}

pub(super) fn attention_with(
    dev: &Device,
    q: &CudaTensor,
    k: &CudaTensor,
    v: &CudaTensor,
    scale: f32,
    bias: Option<&CudaTensor>,
) -> Result<CudaTensor> {
    let d = check_qkv("attention", q, k, v)?;
    if d.heads > 65_535 {
        return Err(Error::shape("attention", "at most 65535 heads", q.shape()));
    }
    shapes::attention_bias(d, bias.map(CudaTensor::shape))?;
    launch_attention(dev, d, q, k, v, scale, bias, None)
}

/// Checks the SLA operands; returns the dims and `(query blocks, key blocks, blocks kept)`.
fn check_sla(
    op: &'static str,
    q: &CudaTensor,
    k: &CudaTensor,
    v: &CudaTensor,
    params: &SlaParams,
) -> Result<(Dims, usize, usize, usize)> {
    let d = check_qkv(op, q, k, v)?;
    shapes::sla(op, d, k.shape(), params)?;
    if i32::try_from(params.block_q.max(params.block_k)).is_err() {
        return Err(Error::invalid(op, "block sizes must fit in 32 bits"));
    }
    let (qb, kb) = (d.lq.div_ceil(params.block_q), d.lk.div_ceil(params.block_k));
    Ok((d, qb, kb, params.blocks_kept(kb)))
}

/// The SLA block selection, computed like the CPU reference.
fn block_mask(
    dev: &Device,
    d: Dims,
    q: &CudaTensor,
    k: &CudaTensor,
    params: &SlaParams,
    (qb, kb, keep): (usize, usize, usize),
) -> Result<BlockMask> {
    let pool = |x: &CudaTensor, center: Option<&CudaTensor>, block: usize, blocks: usize| {
        let out = CudaTensor::alloc(dev, &[d.heads, blocks, d.dh])?;
        dev.launch_elements(
            kernels::SLA_POOL,
            out.numel(),
            &SlaPoolArgs {
                out: out.ptr(),
                x: x.ptr(),
                center: center.map_or(0, CudaTensor::ptr),
                len: x.shape()[0] as u32,
                heads: d.heads as u32,
                dh: d.dh as u32,
                block: block as u32,
                blocks: blocks as u32,
            },
        )?;
        Ok::<_, Error>(out)
    };
    let k_mean = pool(k, None, d.lk, 1)?;
    let pooled_k = pool(k, Some(&k_mean), params.block_k, kb)?;
    let pooled_q = pool(q, None, params.block_q, qb)?;
    let scores = CudaTensor::alloc(dev, &[d.heads, qb, kb])?;
    dev.launch_elements(
        kernels::SLA_SCORES,
        scores.numel(),
        &SlaScoreArgs {
            scores: scores.ptr(),
            pq: pooled_q.ptr(),
            pk: pooled_k.ptr(),
            heads: d.heads as u32,
            qblocks: qb as u32,
            kblocks: kb as u32,
            dh: d.dh as u32,
        },
    )?;
    let bytes = dev.pool.alloc(d.heads * qb * kb)?;
    dev.launch_elements(
        kernels::SLA_SELECT,
        d.heads * qb * kb,
        &SlaSelectArgs {
            mask: bytes.ptr(),
            scores: scores.ptr(),
            rows: (d.heads * qb) as u64,
            kblocks: kb as u32,
            keep: keep as u32,
        },
    )?;
    Ok(BlockMask {
        bytes,
        block_q: params.block_q,
        block_k: params.block_k,
    })
}

/// The selected key blocks, `[head][query block] -> ascending block indices`, for comparison with
/// the CPU backend's `sla_block_map`.
pub(super) fn sla_block_map(
    dev: &Device,
    q: &CudaTensor,
    k: &CudaTensor,
    params: &SlaParams,
) -> Result<Vec<Vec<Vec<usize>>>> {
    let (d, qb, kb, keep) = check_sla("sla_block_map", q, k, k, params)?;
    let mask = block_mask(dev, d, q, k, params, (qb, kb, keep))?;
    let bytes: Vec<u8> = dev.read("sla_block_map", &mask.bytes, d.heads * qb * kb)?;
    Ok((0..d.heads)
        .map(|h| {
            (0..qb)
                .map(|i| {
                    (0..kb)
                        .filter(|&j| bytes[(h * qb + i) * kb + j] != 0)
                        .collect()
                })
                .collect()
        })
        .collect())
}

pub(super) fn sla_attention(
    dev: &Device,
    q: &CudaTensor,
    k: &CudaTensor,
    v: &CudaTensor,
    params: &SlaParams,
    proj_l: &CudaLinear,
) -> Result<CudaTensor> {
    let (d, qb, kb, keep) = check_sla("sla_attention", q, k, v, params)?;
    shapes::sla_projection(d, proj_l.in_features, proj_l.out_features)?;
    let mask = block_mask(dev, d, q, k, params, (qb, kb, keep))?;
    let sparse = launch_attention(
        dev,
        d,
        q,
        k,
        v,
        crate::backend::softmax_scale(d.dh),
        None,
        Some(&mask),
    )?;

    // Linear branch: φ = softmax over the head dim.
    let phi = |x: &CudaTensor| softmax_rows(dev, x, d.dh, 1.0);
    let (phi_q, phi_k) = (phi(q)?, phi(k)?);
    let kv = CudaTensor::alloc(dev, &[d.heads, d.dh, d.dh])?;
    let ksum = CudaTensor::alloc(dev, &[d.heads, d.dh])?;
    let threads = (d.dh as u32).next_multiple_of(32);
    dev.launch(
        kernels::SLA_KV,
        LaunchConfig {
            grid_dim: (d.dh as u32, d.heads as u32, 1),
            block_dim: (threads, 1, 1),
            shared_mem_bytes: 0,
        },
        &SlaKvArgs {
            kv: kv.ptr(),
            ksum: ksum.ptr(),
            phik: phi_k.ptr(),
            v: v.ptr(),
            len: d.lk as u32,
            heads: d.heads as u32,
            dh: d.dh as u32,
        },
    )?;
    let linear = CudaTensor::alloc(dev, q.shape())?;
    dev.launch(
        kernels::SLA_LINEAR,
        LaunchConfig {
            grid_dim: (d.lq as u32, d.heads as u32, 1),
            block_dim: (threads, 1, 1),
            shared_mem_bytes: 0,
        },
        &SlaLinearArgs {
            out: linear.ptr(),
            phiq: phi_q.ptr(),
            kv: kv.ptr(),
            ksum: ksum.ptr(),
            heads: d.heads as u32,
            dh: d.dh as u32,
        },
    )?;
    let rows = linear.reshaped(&[d.lq * d.heads, d.dh])?;
    let projected = gemm_linear(dev, &rows, proj_l)?.reshaped(q.shape())?;
    super::elementwise::broadcast(dev, "sla_attention", kernels::ADD, &sparse, &projected)
}

/// `FA_D` of flash.cu, and each kernel's rows per CTA, threads and dynamic shared memory
/// (`FA_BQ`, `FA_THREADS`, `FA_SMEM_BYTES`; `FM_BQ`, `FM_THREADS`, `FM_SMEM_BYTES(D)`).
const FLASH_DH: usize = 128;
const FLASH_WGMMA: (usize, u32, u32) = (128, 384, 7 * 128 * 128 * 2 + 1024);
/// The keys of the wgmma kernels' K/V tiles (`FA_BK`).
const FLASH_WGMMA_KEYS: usize = 128;
const FLASH_MMA: (usize, u32, u32) = (64, 128, 5 * 64 * 128 * 2);
/// The head dim of the relative-bias kernel (umT5's), and its launch shape.
const FLASH_REL_DH: usize = 64;
const FLASH_REL_MMA: (usize, u32, u32) = (64, 128, 5 * 64 * 64 * 2);
/// The longest key sequence the persistent wgmma flash kernel takes ([`flash_kernel`]).
const PERSISTENT_FLASH_KEYS: usize = 2048;

/// Which tensor-core attention kernel takes these tensors, if any: bf16 q/k/v with head dim 128,
/// a wgmma kernel on sm_90a unless `portable` (persistent for key sequences up to
/// [`PERSISTENT_FLASH_KEYS`]), the mma.sync kernel on any other GPU from sm_80.
pub(super) fn flash_kernel(
    dev: &Device,
    q: &CudaTensor,
    k: &CudaTensor,
    v: &CudaTensor,
    portable: bool,
) -> Option<kernels::Kernel> {
    if ![q, k, v].iter().all(|t| t.dtype() == DType::BF16) || q.shape().last() != Some(&FLASH_DH) {
        return None;
    }
    if dev.info.arch == "sm_90a" && !portable {
        // Short key sequences (the cross-attention's 512 text tokens) on the persistent variant:
        // 1.26-1.28x at 75600 x 512. Long ones on the CTA-per-block kernel: the persistent one,
        // launched either way, ran self-attention 12-13 % slower (cause not found).
        let short = k
            .shape()
            .first()
            .is_some_and(|&lk| lk <= PERSISTENT_FLASH_KEYS);
        Some(if short {
            kernels::FLASH_ATTENTION_PERSISTENT
        } else {
            kernels::FLASH_ATTENTION
        })
    } else if dev.info.compute_capability.0 >= 8 {
        Some(kernels::FLASH_ATTENTION_MMA)
    } else {
        None
    }
}

/// Whether the tensor-core relative-bias kernel takes these tensors: bf16 q/k/v with head dim 64
/// on sm_80 or later.
pub(super) fn rel_flash_available(
    dev: &Device,
    q: &CudaTensor,
    k: &CudaTensor,
    v: &CudaTensor,
) -> bool {
    [q, k, v].iter().all(|t| t.dtype() == DType::BF16)
        && q.shape().last() == Some(&FLASH_REL_DH)
        && dev.info.compute_capability.0 >= 8
}

/// Dense softmax attention of bf16 `q: [Lq, H, Dh]`, `k`/`v: [Lk, H, Dh]` on the tensor cores
/// with `kernel`, bf16 output `[Lq, H, Dh]` (f32 accumulation and softmax): Dh = 128 without a
/// bias ([`flash_kernel`]), or Dh = 64 with f32 relative-position rows `rel: [H, Lq + Lk − 1]`
/// ([`rel_flash_available`]).
pub(super) fn flash_attention(
    dev: &Device,
    kernel: kernels::Kernel,
    q: &CudaTensor,
    k: &CudaTensor,
    v: &CudaTensor,
    scale: f32,
    rel: Option<&CudaTensor>,
) -> Result<CudaTensor> {
    let out = CudaTensor::alloc_as(dev, q.shape(), DType::BF16)?;
    flash_launch(dev, kernel, (q, k, v), scale, rel, FlashOut::Bf16(&out))?;
    Ok(out)
}

/// [`flash_attention`] on the persistent wgmma kernel as e4m3 rows `[Lq, H · 128]` for an FP8
/// output projection, all under one scale from a bound: max |v| (`flash_v_max`), which no output
/// value can exceed.
pub(super) fn flash_attention_e4m3(
    dev: &Device,
    q: &CudaTensor,
    k: &CudaTensor,
    v: &CudaTensor,
    scale: f32,
) -> Result<CudaFp8Rows> {
    let d = check_qkv("attention", q, k, v)?;
    let rows = CudaFp8Rows::alloc(dev, d.lq, d.heads * d.dh, Lifetime::Activation)?;
    let values = d.lk * d.heads * d.dh;
    let vmax = dev.alloc_zeroed(4)?;
    if d.lq > 0 && values > 0 {
        let values = i32::try_from(values)
            .map_err(|_| Error::invalid("attention", "over 2^31 values in v"))?;
        dev.launch(
            kernels::FLASH_V_MAX,
            LaunchConfig {
                grid_dim: ((values as u32).div_ceil(FLASH_V_MAX_SPAN), 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            },
            &FlashVMaxArgs {
                vmax: vmax.ptr(),
                v: v.ptr(),
                values,
            },
        )?;
    }
    let out = FlashOut::E4m3 {
        rows: &rows,
        vmax: &vmax,
    };
    let kernel = kernels::FLASH_ATTENTION_PERSISTENT_E4M3;
    flash_launch(dev, kernel, (q, k, v), scale, None, out)?;
    Ok(rows)
}

/// The values of v each `flash_v_max` CTA reduces (`FA_VMAX_SPAN`).
const FLASH_V_MAX_SPAN: u32 = 256 * 8 * 8;

/// Where a flash kernel writes its output.
enum FlashOut<'a> {
    /// bf16 `[Lq, H, Dh]`.
    Bf16(&'a CudaTensor),
    /// e4m3 rows `[Lq, H · Dh]` (the persistent kernel's e4m3 form) under one scale from the
    /// bound at `vmax` (max |v| as float bits), which the kernel writes for every row.
    E4m3 {
        rows: &'a CudaFp8Rows,
        vmax: &'a DeviceBuffer,
    },
}

/// Launches flash `kernel` on `q`, `k`, `v` into `out` (then the split items' merge).
fn flash_launch(
    dev: &Device,
    kernel: kernels::Kernel,
    (q, k, v): (&CudaTensor, &CudaTensor, &CudaTensor),
    scale: f32,
    rel: Option<&CudaTensor>,
    out: FlashOut<'_>,
) -> Result<()> {
    let d = check_qkv("attention", q, k, v)?;
    // The wgmma kernels' producer loads by the copy engine (`tma`), the others by their threads.
    let ((rows, threads, smem), tma) = match kernel {
        kernels::FLASH_ATTENTION
        | kernels::FLASH_ATTENTION_PERSISTENT
        | kernels::FLASH_ATTENTION_PERSISTENT_E4M3 => (FLASH_WGMMA, true),
        kernels::FLASH_ATTENTION_REL_MMA => (FLASH_REL_MMA, false),
        _ => (FLASH_MMA, false),
    };
    if let Some(rel) = rel {
        shapes::rel_bias(q.shape(), k.shape(), rel.shape())?;
        if rel.dtype() != DType::F32 {
            return Err(Error::DType {
                op: "attention_rel_bias",
                dtype: rel.dtype(),
            });
        }
    }
    if d.lq == 0 || d.heads == 0 {
        return Ok(());
    }
    if d.lk == 0 {
        return Err(Error::invalid("attention", "no keys to attend to"));
    }
    let row_blocks = d.lq.div_ceil(rows);
    let items = row_blocks * d.heads;
    // The wgmma kernels work through (head, row block) items: the persistent one with one CTA an
    // SM; the other with a CTA a unit, one CTA filling an SM, so the last round's items are split
    // over the idle SMs (`Split`).
    let (grid_dim, split) = match kernel {
        kernels::FLASH_ATTENTION_PERSISTENT | kernels::FLASH_ATTENTION_PERSISTENT_E4M3 => {
            let ctas = dev.persistent_ctas(items, 1);
            ((ctas as u32, 1, 1), Split::none(items))
        }
        kernels::FLASH_ATTENTION => {
            let tiles = d.lk.div_ceil(FLASH_WGMMA_KEYS);
            let split = Split::new(items, tiles, dev.info.multiprocessors as usize);
            ((split.units() as u32, 1, 1), split)
        }
        _ => ((row_blocks as u32, d.heads as u32, 1), Split::none(items)),
    };
    let cfg = LaunchConfig {
        grid_dim,
        block_dim: (threads, 1, 1),
        shared_mem_bytes: smem,
    };
    let part = split.workspace(dev)?;
    // TMA loads q in 64-row boxes (a consumer's rows), k and v in whole key tiles.
    let map = |t: &CudaTensor, len: usize, box_rows: usize| {
        if tma {
            TensorMap::bf16_rows("attention", t.ptr(), len, d.heads, d.dh, box_rows as u32)
        } else {
            Ok(TensorMap::UNUSED)
        }
    };
    let (out_bf16, out8, out8_scales, vmax) = match out {
        FlashOut::Bf16(t) => (t.ptr(), 0, 0, 0),
        FlashOut::E4m3 { rows, vmax } => (0, rows.values.ptr(), rows.scales.ptr(), vmax.ptr()),
    };
    let args = FlashArgs {
        q_map: map(q, d.lq, FLASH_WGMMA.0 / 2)?,
        k_map: map(k, d.lk, FLASH_WGMMA_KEYS)?,
        v_map: map(v, d.lk, FLASH_WGMMA_KEYS)?,
        out: out_bf16,
        q: q.ptr(),
        k: k.ptr(),
        v: v.ptr(),
        scale_log2: scale * std::f32::consts::LOG2_E,
        lq: d.lq as i32,
        lk: d.lk as i32,
        heads: d.heads as i32,
        rel: rel.map_or(0, CudaTensor::ptr),
        part: part.as_ref().map_or(0, DeviceBuffer::ptr),
        whole: split.whole as i32,
        pieces: split.pieces as i32,
        out8,
        out8_scales,
        vmax,
    };
    dev.launch(kernel, cfg, &args)?;
    split.merge(dev, kernels::FLASH_MERGE, &args)
}
