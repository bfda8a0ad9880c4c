// SageSLA self-attention: TurboDiffusion's sparse-linear attention with SageAttention2's 8-bit
// numerics (reference: shared/reference/kernels.md §2 and §6, turbodiffusion.md §4).
//
// q, k, v are bf16 [L, H, 128]. A layer runs, in order:
//   sage_stats / sage_stats_reduce  per head: mean of k (smooth-K), Σ φ(k) (the linear branch's
//                                   normaliser), per-channel amax of v; for SageSLA sage_kv
//                                   instead, which also sums φ(K)ᵀ V in the same read of k, v,
//                                   sage_kv_sum, which adds its chunks' sums, and
//                                   sage_kv_reduce, which multiplies the sum by proj_lᵀ;
//   sage_quant_k                    per 128-key block: INT8 k − k̄ with one scale, the block's
//                                   mean of k − k̄ (for selection), FP8 e4m3 vᵀ per channel;
//   sage_quant_q                    per 64-query block: INT8 q with one scale and the block mean;
//   sage_select                     per (head, query block): the top-k key blocks by
//                                   pooled q · pooled (k − k̄), as ascending indices;
//   sage_linear                     φ(q) · (kv proj_lᵀ) / (φ(q) · Σφ(k) + 1e-5) + proj_l bias;
//   sage_out_scale                  where the output projection is FP8: one e4m3 scale for the
//                                   output, from a bound;
//   sage_attention_sm90             softmax(q kᵀ / √d) v over the selected blocks, plus the
//                                   linear branch, bf16 out (or e4m3 under that scale);
//   sage_merge                      the same for the items whose key blocks the attention
//                                   kernel split across the SMs its last round leaves idle.
// The dense 8-bit mode is the same attention kernel over every key block (no LUT, no linear
// branch). Blocks are 64 queries × 128 keys on every GPU, TurboDiffusion's Hopper shape, so the
// selection does not depend on the GPU.
//
// Quantized operands are written as the exact shared-memory images the attention kernel's wgmma
// reads (128-byte rows, 16-byte chunk c of row r at chunk c ^ (r % 8)), one contiguous tile per
// block, so the kernel stages a tile with one bulk copy and no address arithmetic. V is stored
// transposed ([channel][token], tokens contiguous: FP8 wgmma needs both operands K-major) with
// the tokens of every 16-token group in the order [0,1,8,9,2,3,10,11,4,5,12,13,6,7,14,15], which
// makes the four bytes a thread holds of P̃ after Q Kᵀ exactly its A-operand register for P̃ V.
#include "mma.cuh"
#include "softmax.cuh"
#include "split.cuh"
#include "wgmma.cuh"

#define SG_D 128
#define SG_BQ 64
#define SG_BK 128
#define SG_Q_TILE (SG_BQ * SG_D)
#define SG_K_TILE (SG_BK * SG_D)
// log2(448): P̃ = 448 · exp2(s − m) fills FP8 e4m3's range [0, 448].
#define SG_P_SHIFT 8.807354922057604f
// The wgmma kernel's softmax keeps a row's max until a tile exceeds it by 2^4 (online_softmax's
// SLACK), its P̃ scaled by 448 / 2^4 so they still fit e4m3: the O rescale's 64 FMULs a tile are
// then skipped on nearly every tile, 3 % of the kernel at Wan shapes, and accuracy on a
// forward's own activations is unchanged to 4 digits (bench/results/2026-11-28-lazy-rescale.md).
#define SG_SLACK 4
// |V̂| ≤ 2.25 (SpargeAttn's scale_max on every GPU; keeps FP16 PV accumulation safe where used).
#define SG_V_RANGE 2.25f
#define SG_AMAX_FLOOR 1e-8f
#define SG_LOG2E 1.4426950408889634f
// Q Kᵀ accumulators start at the bits of 1.5·2^23: an INT8 dot product over 128 channels stays
// within ±2^21, so the s32 sum is the bit pattern of the float 1.5·2^23 + s, exact and ordered
// like s, which the online softmax takes as it is (the offset folds into its FMAs) instead of a
// quarter-rate integer-to-float conversion.
#define SG_ACC_SEED 0x4B400000
#define SG_ACC_SEED_F 12582912.0f

// Byte offset of byte `b` of row `r` in a swizzled [rows][128 B] tile.
__device__ __forceinline__ unsigned sw128(int r, int b) {
  return r * 128 + ((((b >> 4) ^ r) & 7) << 4) + (b & 15);
}

// Position of token `w` (0-15) of a 16-token group in the stored V order.
__device__ __forceinline__ int v_position(int w) {
  return ((w & 7) >> 1) * 4 + ((w >> 3) << 1) + (w & 1);
}

// Four bf16 of one row (8 bytes at channel 4·lane) as floats.
__device__ __forceinline__ void unpack4(uint2 u, float* x) {
  x[0] = bf16_to_f32((bf16_t)(u.x & 0xffff));
  x[1] = bf16_to_f32((bf16_t)(u.x >> 16));
  x[2] = bf16_to_f32((bf16_t)(u.y & 0xffff));
  x[3] = bf16_to_f32((bf16_t)(u.y >> 16));
}

__device__ __forceinline__ unsigned quant_s8x4(const float* x, float inv) {
  unsigned r = 0;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int q = max(-127, min(127, __float2int_rn(x[i] * inv)));
    r |= ((unsigned)q & 0xffu) << (8 * i);
  }
  return r;
}

// ---- per-head statistics and the linear branch's φ(K)ᵀV ----

#define SG_KV_CHUNK 512
// A tile of 64 tokens of k and of v (fm_offset rows of 256 B: the MMAs' operands).
#define SG_KV_TILE (64 * 256)
// Two stages of (k, v) tiles, then with KV the φ(k) tile, then the warps' max |v| per channel.
#define SG_KV_PART_BYTES (8 * SG_D * 4)
#define SG_STATS_SMEM (4 * SG_KV_TILE + SG_KV_PART_BYTES)
#define SG_KV_SMEM (5 * SG_KV_TILE + SG_KV_PART_BYTES)
// Two bf16 ones: a B fragment of them in the lanes that hold some columns (lanes 4n .. 4n + 3
// hold column n of an m16n8k16 B) makes A·B sum A's rows into those columns of C.
#define SG_ONES_BF16X2 0x3F803F80u

struct SageKvArgs {
  float* stats;        // [H, S, 3, 128]: Σ k, Σ φ(k), max |v| over chunk s of SG_KV_CHUNK tokens
  float* partial;      // [H, S, 128, 128]: Σ φ(k)ᵀ v over chunk s (sage_kv only)
  const bf16_t* k;     // [L, H, 128]
  const bf16_t* v;     // [L, H, 128]
  int len;
  int heads;
  int chunks;          // S
};

// Tile `tile` of item `item` (chunk item % S of head item / S) into stage buffer `buf`: 2048
// 16-byte copies, 8 a thread; tokens past the chunk read as zeros. Thread i copies chunk i % 16
// of tokens i / 16 + 16 j of k and of v (j < 4): the same chunk a row, so its destinations step by
// 16 rows and its sources by 16 tokens, a few adds a copy rather than the whole address.
__device__ __forceinline__ void load_kv_tile(const SageKvArgs& a, unsigned buf, int item, int tile) {
  const int h = item / a.chunks, t0 = (item % a.chunks) * SG_KV_CHUNK + tile * 64;
  const int end = min(a.len, (item % a.chunks + 1) * SG_KV_CHUNK);
  const u64 stride = (u64)a.heads * SG_D;
  const int r = threadIdx.x >> 4, c = threadIdx.x & 15;
  const u64 first = (u64)(t0 + r) * stride + h * SG_D + 8 * c;
  const unsigned kd = buf + fm_offset(r, c), vd = buf + SG_KV_TILE + fm_offset(r, c);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const bool inside = t0 + r + 16 * j < end;
    const u64 at = inside ? first + 16 * j * stride : 0;
    cp_async16(kd + 16 * 256 * j, a.k + at, inside ? 16 : 0);
    cp_async16(vd + 16 * 256 * j, a.v + at, inside ? 16 : 0);
  }
  cp_async_commit();
}

// φ = softmax over the 128 channels of two tokens held by the eight lanes of a group, 16
// channels a lane (x[t]): each row's maximum and sum reduce in three shuffles within the group,
// the two rows' interleaved so their latencies overlap.
__device__ __forceinline__ void phi_pair(float (&x)[2][16]) {
  float m[2], z[2];
#pragma unroll
  for (int t = 0; t < 2; ++t) {
    m[t] = x[t][0];
#pragma unroll
    for (int i = 1; i < 16; ++i) m[t] = fmaxf(m[t], x[t][i]);
  }
#pragma unroll
  for (int o = 1; o < 8; o <<= 1) {
#pragma unroll
    for (int t = 0; t < 2; ++t) m[t] = fmaxf(m[t], __shfl_xor_sync(0xffffffffu, m[t], o));
  }
#pragma unroll
  for (int t = 0; t < 2; ++t) {
    const float shift = -m[t] * SG_LOG2E;
    z[t] = 0.0f;
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      x[t][i] = ex2(fmaf(x[t][i], SG_LOG2E, shift));
      z[t] += x[t][i];
    }
  }
#pragma unroll
  for (int o = 1; o < 8; o <<= 1) {
#pragma unroll
    for (int t = 0; t < 2; ++t) z[t] += __shfl_xor_sync(0xffffffffu, z[t], o);
  }
#pragma unroll
  for (int t = 0; t < 2; ++t) {
    const float inv = 1.0f / z[t];
#pragma unroll
    for (int i = 0; i < 16; ++i) x[t][i] *= inv;
  }
}

// Chunks of SG_KV_CHUNK keys of one head, 256 threads a CTA working through items (chunk, head)
// blockIdx.x, + gridDim.x, …: each chunk's statistics and, with KV, its φ(k)ᵀ v. Dense Sage needs
// only Σ k and max |v| (sage_stats); SageSLA gets those, Σ φ(k) and φ(k)ᵀ v from one read of k
// and v (sage_kv). Both compute Σ k and max |v| with the same code, and a chunk's sums do not
// depend on which CTA computes them, so the quantized K and V are bit-identical on every GPU and
// in both modes: SageSLA at top-k 1.0 with proj_l = 0 equals dense Sage exactly.
//
// Tiles of 64 tokens stream through two stage buffers by cp.async, the next tile (of this item or
// the next) loading while one is worked on. The sums over tokens are tensor-core work: warp w
// owns channels 16w .. 16w + 15 as the rows of A = kᵀ (and φ(k)ᵀ), read from the tile by
// ldmatrix.trans, and one m16n8k16 MMA a 16-token step against a B of ones sums them into C —
// Σ k in C's columns 0-3, Σ φ(k) in columns 4-7 of the same fragment (B's ones in lanes 0-15 for
// k, 16-31 for φ), exact products in f32 accumulators; with KV the warp's 16 rows of the 128×128
// φ(k)ᵀ v come from the same φ fragments. max |v| is an integer maximum of the bf16 bits with the
// sign cleared (they order like the magnitudes), lane l taking 8 channels (l % 16) of every other
// token. φ(k) itself is computed eight lanes a token, 16 channels a lane (3 shuffles a reduction;
// a lane of 4 channels took 5), rounded to bf16 into a tile for the MMAs. (Before, every warp
// summed its tokens' channels lane by lane into running sums in shared memory: 1151 instructions
// a thread and tile, twice the tile's memory time.)
template <bool KV>
__device__ __forceinline__ void chunk_stats(const SageKvArgs& a) {
  extern __shared__ __align__(128) u8 kv_smem[];
  const unsigned stage0 = smem_addr(kv_smem), sphi = stage0 + 4 * SG_KV_TILE;
  float(*vpart)[SG_D] = (float(*)[SG_D])(kv_smem + (KV ? 5 : 4) * SG_KV_TILE);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, m = lane >> 3;
  const int items = a.chunks * a.heads;
  // B operands of ones: Σ k into columns 0-3, Σ φ(k) into columns 4-7.
  const unsigned ones_k = lane < 16 ? SG_ONES_BF16X2 : 0u, ones_phi = lane < 16 ? 0u : SG_ONES_BF16X2;
  // ldmatrix.trans of this warp's A fragment for 16-token step ks: its channels (rows of A) are
  // chunks 2w, 2w + 1 of the token rows.
  const unsigned a_frag = fm_offset((m >> 1) * 8 + (lane & 7), 2 * warp + (m & 1));
  float acc[KV ? 64 : 1];
  float sums[4];
  unsigned vmax[4];
  int buf = 0;
  if (blockIdx.x < items) load_kv_tile(a, stage0, blockIdx.x, 0);
  for (int item = blockIdx.x; item < items; item += gridDim.x) {
    const int h = item / a.chunks, s = item % a.chunks;
    const int begin = s * SG_KV_CHUNK, end = min(a.len, begin + SG_KV_CHUNK);
    const int tiles = (end - begin + 63) / 64;
#pragma unroll
    for (int i = 0; i < 4; ++i) sums[i] = 0.0f, vmax[i] = 0u;
#pragma unroll
    for (int i = 0; i < (KV ? 64 : 1); ++i) acc[i] = 0.0f;
    for (int tile = 0; tile < tiles; ++tile, buf ^= 1) {
      const int base = begin + tile * 64;
      // The other buffer's last readers (the previous tile's MMAs) are done before it refills.
      __syncthreads();
      const int next_item = tile + 1 < tiles ? item : item + gridDim.x;
      if (next_item < items) {
        load_kv_tile(a, stage0 + (buf ^ 1) * 2 * SG_KV_TILE, next_item, tile + 1 < tiles ? tile + 1 : 0);
        cp_async_wait<1>();
      } else {
        cp_async_wait<0>();
      }
      __syncthreads();
      const unsigned sk = stage0 + buf * 2 * SG_KV_TILE, sv = sk + SG_KV_TILE;
      const u8* vt = kv_smem + buf * 2 * SG_KV_TILE + SG_KV_TILE;
      // max |v|: tokens 8w + 2i + lane / 16, channels 8 (lane % 16) .. + 7. Rows past the chunk
      // are zeros.
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const uint4 u = *(const uint4*)(vt + fm_offset(8 * warp + 2 * i + (lane >> 4), lane & 15));
        vmax[0] = __vmaxu2(vmax[0], u.x & 0x7fff7fffu);
        vmax[1] = __vmaxu2(vmax[1], u.y & 0x7fff7fffu);
        vmax[2] = __vmaxu2(vmax[2], u.z & 0x7fff7fffu);
        vmax[3] = __vmaxu2(vmax[3], u.w & 0x7fff7fffu);
      }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#pragma unroll
      for (int ks = 0; ks < 4; ++ks) {
        unsigned kf[4];
        ldmatrix_x4_trans(kf, sk + 16 * ks * 256 + a_frag);
        mma_bf16(sums, kf, ones_k, ones_k);
      }
      if (KV) {
        // φ of tokens 8w + m and 8w + 4 + m, channel chunks lane % 8 and lane % 8 + 8.
        const u8* kt = kv_smem + buf * 2 * SG_KV_TILE;
        float x[2][16];
#pragma unroll
        for (int t = 0; t < 2; ++t) {
          const int r = 8 * warp + 4 * t + m;
          unpack_bf16x8(*(const uint4*)(kt + fm_offset(r, lane & 7)), x[t]);
          unpack_bf16x8(*(const uint4*)(kt + fm_offset(r, (lane & 7) + 8)), x[t] + 8);
        }
        phi_pair(x);
#pragma unroll
        for (int t = 0; t < 2; ++t) {
          const int r = 8 * warp + 4 * t + m;
          // Tokens past the chunk's end add nothing: zero rows of φ(k) (v is zero there too).
          const bool inside = base + r < end;
#pragma unroll
          for (int half = 0; half < 2; ++half) {
            const float* y = x[t] + 8 * half;
            const uint4 w = inside ? make_uint4(pack_bf16x2(y[0], y[1]), pack_bf16x2(y[2], y[3]),
                                                pack_bf16x2(y[4], y[5]), pack_bf16x2(y[6], y[7]))
                                   : make_uint4(0, 0, 0, 0);
            *(uint4*)(kv_smem + 4 * SG_KV_TILE + fm_offset(r, (lane & 7) + 8 * half)) = w;
          }
        }
        __syncthreads();
#pragma unroll
        for (int ks = 0; ks < 4; ++ks) {
          unsigned af[4];
          ldmatrix_x4_trans(af, sphi + 16 * ks * 256 + a_frag);
          mma_bf16(sums, af, ones_phi, ones_phi);
          mma_k16_n128(acc, af, sv, 16 * ks);
        }
      }
#else
      __trap();
#endif
    }
    float* st = a.stats + ((u64)h * a.chunks + s) * 3 * SG_D;
    // C rows lane / 4 and lane / 4 + 8 of the warp's channels; column 2 (lane % 4) holds Σ k for
    // lanes 4g, Σ φ(k) for lanes 4g + 2 (zero without KV).
    const int row = 16 * warp + (lane >> 2);
    if ((lane & 1) == 0) {
      float* dst = st + ((lane & 2) ? SG_D : 0);
      dst[row] = sums[0];
      dst[row + 8] = sums[2];
    }
    if (KV) {
      float* out = a.partial + ((u64)h * a.chunks + s) * SG_D * SG_D;
      const int col = (lane & 3) * 2;
#pragma unroll
      for (int g = 0; g < 16; ++g) {
        *(float2*)(out + row * SG_D + 8 * g + col) = make_float2(acc[4 * g], acc[4 * g + 1]);
        *(float2*)(out + (row + 8) * SG_D + 8 * g + col) =
            make_float2(acc[4 * g + 2], acc[4 * g + 3]);
      }
    }
    // max |v|: the two token parities of a channel meet across lanes l and l + 16, the eight
    // warps' in warp order through shared memory.
#pragma unroll
    for (int i = 0; i < 4; ++i) vmax[i] = __vmaxu2(vmax[i], __shfl_xor_sync(0xffffffffu, vmax[i], 16));
    if (lane < 16) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        vpart[warp][8 * lane + 2 * i] = __uint_as_float(vmax[i] << 16);
        vpart[warp][8 * lane + 2 * i + 1] = __uint_as_float(vmax[i] & 0xffff0000u);
      }
    }
    __syncthreads();
    if (threadIdx.x < SG_D) {
      const int c = threadIdx.x;
      float v_max = 0.0f;
#pragma unroll
      for (int w = 0; w < 8; ++w) v_max = fmaxf(v_max, vpart[w][c]);
      st[2 * SG_D + c] = v_max;
    }
  }
}

// Grid min(S·H, 2·SMs), 256 threads, SG_STATS_SMEM dynamic shared memory: the statistics of
// every chunk.
extern "C" __global__ void __launch_bounds__(256, 2) sage_stats(const SageKvArgs a) {
  chunk_stats<false>(a);
}

// Grid min(S·H, 2·SMs), 256 threads, SG_KV_SMEM dynamic shared memory: the statistics and φ(k)ᵀ v
// of every chunk. Two CTAs share an SM, so one loads while the other multiplies.
extern "C" __global__ void __launch_bounds__(256, 2) sage_kv(const SageKvArgs a) {
  chunk_stats<true>(a);
}

struct SageStatsReduceArgs {
  float* stats;            // [H, 3, 128]: k̄, Σ φ(k), V scale (amax / 2.25)
  const float* partial;    // [H, S, 3, 128]
  int len;
  int chunks;              // S
};

// Grid H, 128 threads (one channel each); chunks summed in order, so the result is deterministic.
extern "C" __global__ void __launch_bounds__(128) sage_stats_reduce(const SageStatsReduceArgs a) {
  const int h = blockIdx.x, c = threadIdx.x;
  const float* p = a.partial + (u64)h * a.chunks * 3 * SG_D + c;
  float sk = 0.0f, sphi = 0.0f, vmax = 0.0f;
#pragma unroll 8
  for (int b = 0; b < a.chunks; ++b, p += 3 * SG_D) {
    sk += p[0];
    sphi += p[SG_D];
    vmax = fmaxf(vmax, p[2 * SG_D]);
  }
  float* out = a.stats + (u64)h * 3 * SG_D + c;
  out[0] = sk / (float)a.len;
  out[SG_D] = sphi;
  out[2 * SG_D] = fmaxf(vmax, SG_AMAX_FLOOR) / SG_V_RANGE;
}

// ---- quantization ----

// The end of a quantizer's first pass over one block, all 128 threads: the per-warp channel sums
// `sum` (4 per lane) and amax become the block's mean per channel over `count` tokens, written to
// `pool` (channel c at pool[c · pitch]), and the returned INT8 scale amax/127.
__device__ __forceinline__ float pool_and_scale(const float* sum, float amax, int count,
                                                float* pool, u64 pitch, float (*part)[SG_D],
                                                float* red) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, c = threadIdx.x;
#pragma unroll
  for (int i = 0; i < 4; ++i) part[warp][4 * lane + i] = sum[i];
  amax = warp_max(amax);
  if (lane == 0) red[warp] = amax;
  __syncthreads();
  amax = fmaxf(fmaxf(red[0], red[1]), fmaxf(red[2], red[3]));
  pool[c * pitch] = (((part[0][c] + part[1][c]) + part[2][c]) + part[3][c]) / (float)count;
  return fmaxf(amax, SG_AMAX_FLOOR) / 127.0f;
}


struct SageQuantKArgs {
  u8* kq;              // [H, KB] tiles [128 keys][128 B] INT8 k − k̄, swizzled
  u8* vq;              // [H, KB] tiles [128 channels][128 tokens] FP8 e4m3 vᵀ, permuted, swizzled
  float* kscale;       // [H, KB]
  float* kpool;        // [H, 128, KB]: mean of k − k̄ over the block's tokens, channel-major
                       // (sage_select reads a channel of consecutive blocks at once)
  const bf16_t* k;     // [L, H, 128]
  const bf16_t* v;     // [L, H, 128]
  const float* stats;  // [H, 3, 128] from sage_stats_reduce
  int len;
  int heads;
  int kblocks;
};

// Grid (KB, H), 128 threads. V: copied row-major into shared memory by cp.async (issued first,
// landing while K is worked on), then thread c writes channel c's 128-byte row of the transposed
// tile, 16 permuted tokens at a time. K: warp w takes tokens 32w .. 32w + 31, lane 4 channels,
// held in registers; a first pass finds the block's amax and channel sums, a second writes the
// INT8 rows. Tokens past L are zero. (Staged through registers, each v row's shared-memory store
// waited for its own load: the loads' latencies ran one after another.)
extern "C" __global__ void __launch_bounds__(128) sage_quant_k(const SageQuantKArgs a) {
  __shared__ float part[4][SG_D];
  __shared__ float red[32];
  // The block's v rows, so each thread can read its channel down the tokens.
  __shared__ __align__(16) bf16_t vrows[SG_BK][SG_D];
  const int blk = blockIdx.x, h = blockIdx.y, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const u64 stride = (u64)a.heads * SG_D;
  const unsigned sv = smem_addr(vrows);
#pragma unroll
  for (int j = 0; j < SG_BK * SG_D / 8 / 128; ++j) {
    const int i = threadIdx.x + 128 * j, r = i >> 4, c = i & 15, t = blk * SG_BK + r;
    cp_async16(sv + r * (2 * SG_D) + 16 * c, a.v + (u64)min(t, a.len - 1) * stride + h * SG_D + 8 * c,
               t < a.len ? 16 : 0);
  }
  cp_async_commit();
  const float* mean = a.stats + (u64)h * 3 * SG_D;
  float center[4];
#pragma unroll
  for (int c = 0; c < 4; ++c) center[c] = mean[4 * lane + c];
  const int t0 = blk * SG_BK + warp * 32;
  // The warp's 32 rows stay in registers between the two passes (all loads in flight at once).
  uint2 rows[32];
#pragma unroll
  for (int i = 0; i < 32; ++i) {
    rows[i] = t0 + i < a.len ? *(const uint2*)(a.k + (t0 + i) * stride + h * SG_D + 4 * lane)
                             : make_uint2(0, 0);
  }
  float sum[4] = {0, 0, 0, 0}, amax = 0.0f;
#pragma unroll
  for (int i = 0; i < 32; ++i) {
    if (t0 + i >= a.len) break;
    float x[4];
    unpack4(rows[i], x);
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      x[c] -= center[c];
      sum[c] += x[c];
      amax = fmaxf(amax, fabsf(x[c]));
    }
  }
  const u64 bi = (u64)h * a.kblocks + blk;
  const float scale = pool_and_scale(sum, amax, min(SG_BK, a.len - blk * SG_BK),
                                     a.kpool + (u64)h * SG_D * a.kblocks + blk, a.kblocks, part,
                                     red);
  const float inv = 1.0f / scale;
  if (threadIdx.x == 0) a.kscale[bi] = scale;
  u8* kt = a.kq + bi * SG_K_TILE;
#pragma unroll
  for (int i = 0; i < 32; ++i) {
    const int r = warp * 32 + i;
    unsigned word = 0;
    if (t0 + i < a.len) {
      float x[4];
      unpack4(rows[i], x);
#pragma unroll
      for (int c = 0; c < 4; ++c) x[c] -= center[c];
      word = quant_s8x4(x, inv);
    }
    *(unsigned*)(kt + sw128(r, 4 * lane)) = word;
  }

  // V: channel c of 16 tokens per 16-byte chunk, once every thread's copies have landed.
  cp_async_wait<0>();
  __syncthreads();
  const int c = threadIdx.x;
  const float vinv = 1.0f / mean[2 * SG_D + c];
  u8* vt = a.vq + bi * SG_K_TILE;
  for (int chunk = 0; chunk < 8; ++chunk) {
    float x[16];
#pragma unroll
    for (int w = 0; w < 16; ++w) x[v_position(w)] = bf16_to_f32(vrows[chunk * 16 + w][c]) * vinv;
    uint4 out;
    out.x = fp8x4(x[0], x[1], x[2], x[3]);
    out.y = fp8x4(x[4], x[5], x[6], x[7]);
    out.z = fp8x4(x[8], x[9], x[10], x[11]);
    out.w = fp8x4(x[12], x[13], x[14], x[15]);
    *(uint4*)(vt + sw128(c, chunk * 16)) = out;
  }
}

struct SageQuantQArgs {
  u8* qq;              // [H, QB] tiles [64 queries][128 B] INT8, swizzled
  float* qscale;       // [H, QB]: INT8 scale × softmax scale × log2(e)
  float* qpool;        // [H, QB, 128]: mean of q over the block's tokens
  const bf16_t* q;     // [L, H, 128]
  float scale_log2;    // softmax scale × log2(e)
  int len;
  int heads;
  int qblocks;
};

// Grid (QB, H), 128 threads: warp w takes tokens 16w .. 16w + 15, lane 4 channels.
extern "C" __global__ void __launch_bounds__(128) sage_quant_q(const SageQuantQArgs a) {
  __shared__ float part[4][SG_D];
  __shared__ float red[32];
  const int blk = blockIdx.x, h = blockIdx.y, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const u64 stride = (u64)a.heads * SG_D;
  const int t0 = blk * SG_BQ + warp * 16;
  float rows[16][4];
  float sum[4] = {0, 0, 0, 0}, amax = 0.0f;
#pragma unroll
  for (int i = 0; i < 16; ++i) {
    if (t0 + i < a.len) {
      unpack4(*(const uint2*)(a.q + (t0 + i) * stride + h * SG_D + 4 * lane), rows[i]);
    } else {
      rows[i][0] = rows[i][1] = rows[i][2] = rows[i][3] = 0.0f;
    }
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      sum[c] += rows[i][c];
      amax = fmaxf(amax, fabsf(rows[i][c]));
    }
  }
  const u64 bi = (u64)h * a.qblocks + blk;
  const float scale = pool_and_scale(sum, amax, min(SG_BQ, a.len - blk * SG_BQ),
                                     a.qpool + bi * SG_D, 1, part, red);
  const float inv = 1.0f / scale;
  if (threadIdx.x == 0) a.qscale[bi] = scale * a.scale_log2;
  u8* qt = a.qq + bi * SG_Q_TILE;
#pragma unroll
  for (int i = 0; i < 16; ++i) {
    *(unsigned*)(qt + sw128(warp * 16 + i, 4 * lane)) = quant_s8x4(rows[i], inv);
  }
}

// ---- block selection ----

struct SageSelectArgs {
  int* lut;             // [H, QB, keep]: selected key blocks, ascending
  const float* qpool;   // [H, QB, 128]
  const float* kpool;   // [H, 128, KB]: channel-major (sage_quant_k)
  int qblocks;
  int kblocks;
  int keep;
};

// Scores as unsigned keys that order like the floats.
__device__ __forceinline__ unsigned order_key(float f) {
  const unsigned u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Query blocks per CTA; a thread a key block, so at most 1024 of them (sage.rs checks).
#define SG_SELECT_ROWS 16

// Grid (ceil(QB / 16), H), 32·ceil(KB / 32) threads, dynamic shared memory 4·16·(128 + KB)
// bytes. Thread j scores key block j against the CTA's 16 query blocks: the pooled queries,
// staged channel-major, are read as broadcasts (four rows a 16-byte read) and the pooled keys,
// channel-major in memory, as one 128-byte read a warp and channel, so a channel's reads feed 16
// FMAs a thread (rows of pooled keys in shared memory, a 16-byte read each, fed eight FMAs for
// three reads). Each score sums its 128 products in channel order with FMAs, as before. Then
// warp w takes query blocks w, w + warps, …: the keep-th largest score found bit by bit (up to
// 32 counting passes over the row in shared memory instead of a sort), and the blocks above it
// and, by lowest index, the ties at it written in ascending order. The passes stop once exactly
// `keep` keys lie at or above the candidate: those are then the blocks the remaining passes
// would select (no tie at the boundary), found about as many bits below the top as it takes to
// tell the keep-th score from the next. (A lane's 32 scores held in registers instead took the
// kernel to 64 registers, one CTA an SM at 720p's 608 threads.)
extern "C" __global__ void __launch_bounds__(1024) sage_select(const SageSelectArgs a) {
  extern __shared__ __align__(16) float sel[];
  float* pq = sel;                                           // [128][16]
  unsigned* keys = (unsigned*)(sel + SG_D * SG_SELECT_ROWS);  // [16][KB]
  const int h = blockIdx.y, tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int qb0 = blockIdx.x * SG_SELECT_ROWS;
  for (int i = tid; i < SG_SELECT_ROWS * SG_D; i += blockDim.x) {
    const int r = i / SG_D, d = i % SG_D;
    pq[d * SG_SELECT_ROWS + r] =
        qb0 + r < a.qblocks ? a.qpool[((u64)h * a.qblocks + qb0 + r) * SG_D + d] : 0.0f;
  }
  __syncthreads();
  if (tid < a.kblocks) {
    const float* kc = a.kpool + (u64)h * SG_D * a.kblocks + tid;
    float s[SG_SELECT_ROWS];
#pragma unroll
    for (int r = 0; r < SG_SELECT_ROWS; ++r) s[r] = 0.0f;
    for (int d0 = 0; d0 < SG_D; d0 += 8) {
      float k[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) k[i] = kc[(u64)(d0 + i) * a.kblocks];
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const float4* q = (const float4*)(pq + (d0 + i) * SG_SELECT_ROWS);
#pragma unroll
        for (int r4 = 0; r4 < SG_SELECT_ROWS / 4; ++r4) {
          const float4 x = q[r4];
          s[4 * r4] = fmaf(x.x, k[i], s[4 * r4]);
          s[4 * r4 + 1] = fmaf(x.y, k[i], s[4 * r4 + 1]);
          s[4 * r4 + 2] = fmaf(x.z, k[i], s[4 * r4 + 2]);
          s[4 * r4 + 3] = fmaf(x.w, k[i], s[4 * r4 + 3]);
        }
      }
    }
#pragma unroll
    for (int r = 0; r < SG_SELECT_ROWS; ++r) keys[r * a.kblocks + tid] = order_key(s[r]);
  }
  __syncthreads();
  const unsigned before = (1u << lane) - 1;
  for (int r = warp; r < SG_SELECT_ROWS && qb0 + r < a.qblocks; r += blockDim.x >> 5) {
    const unsigned* mine = keys + r * a.kblocks;
    unsigned thr = 0;
    for (int bit = 31; bit >= 0; --bit) {
      const unsigned cand = thr | (1u << bit);
      unsigned n = 0;
#pragma unroll 4
      for (int j = lane; j < a.kblocks; j += 32) n += mine[j] >= cand;
      const int at_or_above = (int)__reduce_add_sync(0xffffffffu, n);
      if (at_or_above >= a.keep) thr = cand;
      if (at_or_above == a.keep) break;
    }
    unsigned above = 0;
#pragma unroll 4
    for (int j = lane; j < a.kblocks; j += 32) above += mine[j] > thr;
    const int tie_slots = a.keep - (int)__reduce_add_sync(0xffffffffu, above);
    int* lut = a.lut + ((u64)h * a.qblocks + qb0 + r) * a.keep;
    int pos = 0, ties = 0;
    for (int base = 0; base < a.kblocks; base += 32) {
      const int j = base + lane;
      const unsigned key = j < a.kblocks ? mine[j] : 0;
      const bool eq = j < a.kblocks && key == thr;
      const unsigned eqs = __ballot_sync(0xffffffffu, eq);
      const bool take =
          (j < a.kblocks && key > thr) || (eq && ties + __popc(eqs & before) < tie_slots);
      const unsigned takes = __ballot_sync(0xffffffffu, take);
      if (take) lut[pos + __popc(takes & before)] = j;
      pos += __popc(takes);
      ties += __popc(eqs);
    }
  }
}

// ---- linear branch ----

// kv · proj_lᵀ of one head as the B operand image of sage_linear: [128 rows][256 B] bf16,
// 16-byte chunks swizzled by row % 8 (fm_offset).
#define SG_KVW_BYTES (SG_D * SG_D * 2)

struct SageKvSumArgs {
  float* kv;             // [H, 128, 128]: Σ φ(k)ᵀ v over all tokens
  const float* partial;  // [H, S, 128, 128] from sage_kv
  int chunks;            // S
};

// Grid H · 128 · 128 / 256, 256 threads: one element of a head's φ(K)ᵀ V each, its S chunk sums
// added in chunk order from zero (deterministic). Every thread has 8 loads in flight at full
// occupancy, so the partial sums (64 KB a chunk and head) stream at memory speed: 93 µs for 14B
// 720p's 388 MB (ncu), where the projection kernel, summing them itself in CTAs held to three
// an SM by its staged proj_l, took 35 µs for 1.3B's 50 MB.
extern "C" __global__ void __launch_bounds__(256) sage_kv_sum(const SageKvSumArgs a) {
  const int per_head = SG_D * SG_D / 256;
  const int h = blockIdx.x / per_head, e = (blockIdx.x % per_head) * 256 + threadIdx.x;
  const float* p = a.partial + (u64)h * a.chunks * SG_D * SG_D + e;
  float sum = 0.0f;
#pragma unroll 8
  for (int s = 0; s < a.chunks; ++s) sum += p[(u64)s * SG_D * SG_D];
  a.kv[(u64)h * SG_D * SG_D + e] = sum;
}

struct SageKvReduceArgs {
  u8* kvw;               // [H] images of kv · proj_lᵀ (SG_KVW_BYTES each)
  const float* kv;       // [H, 128, 128] from sage_kv_sum
  const void* weight;    // proj_l [128 out, 128 in]
  int weight_dt;
};

#define SG_KVW_ROWS 16
#define SG_KV_REDUCE_SMEM ((SG_D * (SG_D + 1) + SG_KVW_ROWS * SG_D) * 4)

// Grid (128 / 16, H), 128 threads (one output column each), SG_KV_REDUCE_SMEM dynamic shared
// memory: rows 16·blockIdx.x .. + 15 of kv times proj_lᵀ, from proj_l staged transposed in
// shared memory. Each output sums its 128 products in channel order; the 16 rows' sums are
// independent chains, so a staged proj_l serves 16 rows at the FMA pipe's rate.
extern "C" __global__ void __launch_bounds__(128) sage_kv_reduce(const SageKvReduceArgs a) {
  extern __shared__ __align__(16) float red_smem[];
  float* wt = red_smem;                        // [128 in][129]: proj_l transposed
  float* rows = red_smem + SG_D * (SG_D + 1);  // [16][128]
  const int r0 = blockIdx.x * SG_KVW_ROWS, h = blockIdx.y, c = threadIdx.x;
  // Row j of proj_l, coalesced, 16 loads in flight a thread (a load at a time, the kernel took
  // 18-19 µs at 1.3B; 10.8 µs so).
#pragma unroll 16
  for (int j = 0; j < SG_D; ++j) {
    wt[c * (SG_D + 1) + j] = load_elem(a.weight, a.weight_dt, j * SG_D + c);
  }
  const float* p = a.kv + ((u64)h * SG_D + r0) * SG_D + c;
#pragma unroll
  for (int r = 0; r < SG_KVW_ROWS; ++r) rows[r * SG_D + c] = p[r * SG_D];
  __syncthreads();
  float acc[SG_KVW_ROWS];
#pragma unroll
  for (int r = 0; r < SG_KVW_ROWS; ++r) acc[r] = 0.0f;
  for (int d2 = 0; d2 < SG_D; d2 += 4) {
    float w[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) w[i] = wt[(d2 + i) * (SG_D + 1) + c];
#pragma unroll
    for (int r = 0; r < SG_KVW_ROWS; ++r) {
      const float4 x = *(const float4*)(rows + r * SG_D + d2);
      acc[r] = fmaf(x.x, w[0], acc[r]);
      acc[r] = fmaf(x.y, w[1], acc[r]);
      acc[r] = fmaf(x.z, w[2], acc[r]);
      acc[r] = fmaf(x.w, w[3], acc[r]);
    }
  }
  bf16_t* img = (bf16_t*)(a.kvw + (u64)h * SG_KVW_BYTES);
#pragma unroll
  for (int r = 0; r < SG_KVW_ROWS; ++r) {
    const int d1 = r0 + r;
    img[(((d1 * 16) + ((c >> 3) ^ (d1 & 7))) << 3) + (c & 7)] = f32_to_bf16(acc[r]);
  }
}

struct SageLinearArgs {
  bf16_t* out;          // [L, H, 128]: the projected linear branch
  const bf16_t* q;      // [L, H, 128]
  const u8* kvw;        // [H] images from sage_kv_reduce
  const float* stats;   // [H, 3, 128]: Σ φ(k) in row 1
  const void* bias;     // proj_l bias [128] or null
  int bias_dt;
  int len;
  int heads;
  unsigned* amax;       // max |out| as float bits (atomicMax), for sage_out_scale, or null
};

#define SG_LINEAR_ROWS 128
#define SG_LINEAR_TILE (SG_LINEAR_ROWS * 256)
// Two stages of 128 q rows, the head's kv · proj_lᵀ image, the head's Σ φ(k).
#define SG_LINEAR_SMEM (2 * SG_LINEAR_TILE + SG_KVW_BYTES + SG_D * 4)

// Rows `row0` .. + 127 of head `h`'s q into a stage (fm_offset rows of 256 B, so ldmatrix reads
// them as MMA A fragments; rows past L read as zeros): 2048 16-byte copies, 8 a thread, thread i
// copying chunk i % 16 of rows i / 16 + 16 j (destinations 16 rows apart, sources 16 tokens).
__device__ __forceinline__ void load_q_rows(const SageLinearArgs& a, unsigned stage, int h, int row0) {
  const u64 stride = (u64)a.heads * SG_D;
  const int r = threadIdx.x >> 4, c = threadIdx.x & 15;
  const u64 first = (u64)(row0 + r) * stride + h * SG_D + 8 * c;
  const unsigned dst = stage + fm_offset(r, c);
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const bool inside = row0 + r + 16 * j < a.len;
    cp_async16(dst + 16 * 256 * j, a.q + (inside ? first + 16 * j * stride : 0), inside ? 16 : 0);
  }
}

// Grid min(⌈L / 128⌉·H, 2·SMs), 256 threads, SG_LINEAR_SMEM dynamic shared memory. Items are
// (head, 128 rows), head-major; CTA b takes a contiguous run of them, so it loads a head's
// kv · proj_lᵀ once (twice where its run crosses a head), and the next item's q rows load by
// cp.async while it works on the current ones. Warp w computes rows 16w .. 16w + 15: φ(q) (bf16,
// as upstream's autocast matmul sees it) times kv · proj_lᵀ on m16n8k16 MMAs, divided by
// φ(q) · Σ φ(k) + 1e-5, plus the bias. φ is computed where the MMA wants it: q goes through
// ldmatrix as the A fragments (lane 4g + c holds rows g and g + 8, 32 channels of each), so a
// row's max and sums take two shuffles within its quad instead of five across the warp, and φ
// goes into the MMA from registers. A warp rewrites and stores only its own rows of the stage.
extern "C" __global__ void __launch_bounds__(256, 2) sage_linear(const SageLinearArgs a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  extern __shared__ __align__(128) u8 lsm[];
  const unsigned stage0 = smem_addr(lsm), sb = stage0 + 2 * SG_LINEAR_TILE;
  float* ksum = (float*)(lsm + 2 * SG_LINEAR_TILE + SG_KVW_BYTES);
  __shared__ float sbias[SG_D];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, m = lane >> 3;
  const u64 stride = (u64)a.heads * SG_D;
  const int row_tiles = (a.len + SG_LINEAR_ROWS - 1) / SG_LINEAR_ROWS, items = row_tiles * a.heads;
  const int first = (int)((long long)items * blockIdx.x / gridDim.x);
  const int last = (int)((long long)items * (blockIdx.x + 1) / gridDim.x);
  if (threadIdx.x < SG_D) {
    sbias[threadIdx.x] = a.bias ? load_elem(a.bias, a.bias_dt, threadIdx.x) : 0.0f;
  }
  if (first < last) {
    load_q_rows(a, stage0, first / row_tiles, (first % row_tiles) * SG_LINEAR_ROWS);
    cp_async_commit();
  }
  int head = -1;
  // The largest |value| this thread stored, as two 16-bit maxima of bf16 bits.
  unsigned peak = 0;
  for (int item = first, buf = 0; item < last; ++item, buf ^= 1) {
    const int h = item / row_tiles, t0 = (item % row_tiles) * SG_LINEAR_ROWS;
    // Every warp is done with the other stage (and, on a new head, with kv · proj_lᵀ and Σ φ(k)).
    __syncthreads();
    if (h != head) {
      const u8* img = a.kvw + (u64)h * SG_KVW_BYTES;
      for (int i = threadIdx.x; i < SG_KVW_BYTES / 16; i += 256) cp_async16(sb + 16 * i, img + 16 * i, 16);
      cp_async_commit();
      if (threadIdx.x < SG_D) ksum[threadIdx.x] = a.stats[(u64)h * 3 * SG_D + SG_D + threadIdx.x];
      head = h;
    }
    if (item + 1 < last) {
      load_q_rows(a, stage0 + (buf ^ 1) * SG_LINEAR_TILE, (item + 1) / row_tiles,
                  ((item + 1) % row_tiles) * SG_LINEAR_ROWS);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    u8* st = lsm + buf * SG_LINEAR_TILE;
    const unsigned sq = stage0 + buf * SG_LINEAR_TILE;
    // x[r][4kk + j]: row g (r = 0) or g + 8 (r = 1), channel 16kk + 2c + (j & 1) + 8 (j >> 1).
    unsigned af[8][4];
    float x[2][32];
#pragma unroll
    for (int kk = 0; kk < 8; ++kk) {
      ldmatrix_x4(af[kk], sq + fm_offset(warp * 16 + (lane & 7) + (m & 1) * 8, 2 * kk + (m >> 1)));
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        x[r][4 * kk] = bf16_to_f32((bf16_t)(af[kk][r] & 0xffff));
        x[r][4 * kk + 1] = bf16_to_f32((bf16_t)(af[kk][r] >> 16));
        x[r][4 * kk + 2] = bf16_to_f32((bf16_t)(af[kk][r + 2] & 0xffff));
        x[r][4 * kk + 3] = bf16_to_f32((bf16_t)(af[kk][r + 2] >> 16));
      }
    }
    float den[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = x[r][0];
#pragma unroll
      for (int i = 1; i < 32; ++i) mx = fmaxf(mx, x[r][i]);
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      float sum = 0.0f;
#pragma unroll
      for (int i = 0; i < 32; ++i) {
        x[r][i] = __expf(x[r][i] - mx);
        sum += x[r][i];
      }
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      const float inv = 1.0f / sum;
      float z = 0.0f;
#pragma unroll
      for (int i = 0; i < 32; ++i) {
        x[r][i] *= inv;
        z += x[r][i] * ksum[16 * (i >> 2) + 2 * (lane & 3) + (i & 1) + 8 * ((i >> 1) & 1)];
      }
      z += __shfl_xor_sync(0xffffffffu, z, 1);
      z += __shfl_xor_sync(0xffffffffu, z, 2);
      den[r] = z + 1e-5f;
    }
#pragma unroll
    for (int kk = 0; kk < 8; ++kk) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        af[kk][r] = pack_bf16x2(x[r][4 * kk], x[r][4 * kk + 1]);
        af[kk][r + 2] = pack_bf16x2(x[r][4 * kk + 2], x[r][4 * kk + 3]);
      }
    }
    float o[64];
#pragma unroll
    for (int i = 0; i < 64; ++i) o[i] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < 8; ++kk) mma_k16_n128(o, af[kk], sb, 16 * kk);
    // The warp's 16 result rows go back over its own q rows, then out to global memory as whole
    // 256-byte rows, 16 bytes a lane.
    const int r0 = warp * 16 + (lane >> 2), col = (lane & 3) * 2;
    __syncwarp();
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int r = r0 + 8 * half;
      const float inv = 1.0f / den[half];
#pragma unroll
      for (int g = 0; g < 16; ++g) {
        const int n = 8 * g + col;
        *(unsigned*)(st + fm_offset(r, g) + 2 * col) = pack_bf16x2(
            fmaf(o[4 * g + 2 * half], inv, sbias[n]), fmaf(o[4 * g + 2 * half + 1], inv, sbias[n + 1]));
      }
    }
    __syncwarp();
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int r = warp * 16 + 2 * j + (lane >> 4), c = lane & 15;
      const int t = t0 + r;
      if (t < a.len) {
        const uint4 y = *(const uint4*)(st + fm_offset(r, c));
        *(uint4*)(a.out + t * stride + h * SG_D + 8 * c) = y;
        if (a.amax) peak = abs_max_bf16x8(peak, y);
      }
    }
  }
  if (a.amax) {
    float m = warp_max(abs_max_value(peak));
    if (lane == 0) atomicMax(a.amax, __float_as_uint(m));
  }
#else
  __trap();
#endif
}

// ---- attention ----

struct SageArgs {
  bf16_t* out;          // [L, H, 128], or null where out8 is written
  u8* out8;             // [L, H, 128] e4m3 of O · *out8_scale (sage_out_scale), or null
  const float* out8_scale;
  const u8* q;          // sage_quant_q tiles
  const u8* k;          // sage_quant_k K tiles
  const u8* v;          // sage_quant_k Vᵀ tiles
  const float* qscale;  // [H, QB] (× softmax scale × log2 e)
  const float* kscale;  // [H, KB]
  const float* stats;   // [H, 3, 128]: V channel scales in row 2
  const int* lut;       // [H, QB, blocks] from sage_select, or null for every key block in order
  const bf16_t* lin;    // [L, H, 128] linear branch to add, or null
  float* part;          // the pieces' state (split.cuh), or null when no item is split
  int len;
  int heads;
  int qblocks;
  int kblocks;
  int blocks;           // key blocks per query block
  int whole;            // items not split (split.cuh); all of them on the mma.sync kernel
  int pieces;           // pieces per split item
};

// P̃ (FP8) as the A operand of the k32 steps of P̃ V: step kk covers S groups 4kk .. 4kk + 3,
// whose columns the permuted V order lines up with this thread's register bytes.
__device__ __forceinline__ void pack_p8(unsigned* p, const float* s) {
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    const float* g = s + 16 * kk;
    p[4 * kk] = fp8x4(g[0], g[1], g[4], g[5]);
    p[4 * kk + 1] = fp8x4(g[2], g[3], g[6], g[7]);
    p[4 * kk + 2] = fp8x4(g[8], g[9], g[12], g[13]);
    p[4 * kk + 3] = fp8x4(g[10], g[11], g[14], g[15]);
  }
}

// O[16 rows of a warp][128] in the m16n8 layout, scaled by V's channel scales `vs` and by 1 / the
// rows' full sums `l0`, `l1`, plus the linear branch (`lin`: row `row0`'s 128 values, row + 8 at
// `lin + 8 · lin_stride`, or null), as rows `row0` and `row0 + 8` of head `h`: bf16, or e4m3 for
// the output projection under sage_out_scale's one scale.
template <bool E4M3>
__device__ __forceinline__ void store_sage(const SageArgs& a, const float* o, float l0, float l1,
                                           int row0, int h, const float* vs, const bf16_t* lin,
                                           u64 lin_stride) {
  const int lane = threadIdx.x & 31, col = (lane & 3) * 2;
  const float inv[2] = {1.0f / l0, 1.0f / l1};
  // Read once: the compiler cannot move the load past stores that might alias it.
  const float to8 = E4M3 ? *a.out8_scale : 0.0f;
  const u64 stride = (u64)a.heads * SG_D;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int t = row0 + 8 * half;
    if (t >= a.len) continue;
    const u64 at = t * stride + h * SG_D + col;
#pragma unroll
    for (int g = 0; g < 16; ++g) {
      const int n = 8 * g + col;
      float x0 = o[4 * g + 2 * half] * inv[half] * vs[n];
      float x1 = o[4 * g + 2 * half + 1] * inv[half] * vs[n + 1];
      if (lin) {
        const unsigned l = *(const unsigned*)(lin + 8 * half * lin_stride + n);
        x0 += bf16_to_f32((bf16_t)(l & 0xffff));
        x1 += bf16_to_f32((bf16_t)(l >> 16));
      }
      if (E4M3) {
        *(unsigned short*)(a.out8 + at + 8 * g) = (unsigned short)e4m3x2(x0 * to8, x1 * to8);
      } else {
        *(unsigned*)(a.out + at + 8 * g) = pack_bf16x2(x0, x1);
      }
    }
  }
}

struct SageOutScaleArgs {
  float* scales;              // [L]: every row's dequantization scale, B / 448
  float* to8;                 // [1]: 448 / B, the attention's factor into e4m3
  const float* stats;         // [H, 3, 128]: V channel scales in row 2
  const unsigned* lin_amax;   // the linear branch's max |value| as float bits, or null
  int len;
  int heads;
};

// Over B: the attention output O = Σ P̃ V̂ / Σ P̃ (P̃ ≥ 0) averages rows of V̂, whose channel c is
// at most SG_V_RANGE times its scale, and the linear branch adds at most its own largest value.
// The slack covers the PV sum and the row sum rounding apart (the mma.sync kernel sums the row
// from P before its FP8 rounding, at most 2⁻⁴ apart) and the branch's bf16 rounding; a value
// past it would saturate at 448, not overflow.
#define SG_OUT_SLACK 1.125f

// Grid ⌈L / 1024⌉, 256 threads: the one e4m3 scale of the attention output as the output
// projection's FP8 input (a row's values come from every head's CTAs, so no row scale can be
// known in the epilogue), from a bound rather than the values.
extern "C" __global__ void __launch_bounds__(256) sage_out_scale(const SageOutScaleArgs a) {
  __shared__ float scratch[32];
  float m = 0.0f;
  for (int i = threadIdx.x; i < a.heads * SG_D; i += 256) {
    m = fmaxf(m, a.stats[(u64)(i / SG_D) * 3 * SG_D + 2 * SG_D + i % SG_D]);
  }
  m = block_reduce<true>(m, scratch);
  const float lin = a.lin_amax ? __uint_as_float(*a.lin_amax) : 0.0f;
  const float bound = fmaxf((SG_V_RANGE * m + lin) * SG_OUT_SLACK, SG_AMAX_FLOOR);
  if (blockIdx.x == 0 && threadIdx.x == 0) *a.to8 = 448.0f / bound;
  const int end = min(a.len, (int)(blockIdx.x + 1) * 1024);
  for (int r = blockIdx.x * 1024 + threadIdx.x; r < end; r += 256) a.scales[r] = bound / 448.0f;
}

// The seeded scores of one tile (s + SG_ACC_SEED_F as floats); the accumulators are re-seeded
// for the next tile.
__device__ __forceinline__ void take_scores(float* s, int* acc) {
#pragma unroll
  for (int i = 0; i < 64; ++i) {
    s[i] = __int_as_float(acc[i]);
    acc[i] = SG_ACC_SEED;
  }
}

// The tiles of P̃V products gathered in T before they join the f32 sum: 16 FADDs a tile and
// thread instead of 64, dense Sage 2.6 % faster at 14B than one tile at a time, and a forward's
// accuracy unchanged to 4 digits (bench/results/2026-11-28-lazy-rescale.md). A power of two,
// so the tile counts' modulo is a mask.
#define SG_FOLD 4
// o = (o + t) · c per row: the FP8 products of the last tiles, accumulated on their own (Hopper's
// FP8 MMA keeps about 22 bits of its f32 accumulator), join the f32 sum rescaled to the new
// maxima; the row sums l likewise, from T's ones columns (t[64], t[66]: rows r and r + 8). T holds
// up to SG_FOLD tiles: it joins when `flush`, or at once when a row's max moved (the tiles in T
// were taken against the old one), and is then cleared for the products still to come.
__device__ __forceinline__ void accumulate(float* o, float* t, float& l0, float& l1, float c0,
                                           float c1, bool flush) {
  if (__any_sync(0xffffffffu, c0 != 1.0f || c1 != 1.0f)) {
    l0 = (l0 + t[64]) * c0;
    l1 = (l1 + t[66]) * c1;
#pragma unroll
    for (int g = 0; g < 16; ++g) {
      o[4 * g] = (o[4 * g] + t[4 * g]) * c0;
      o[4 * g + 1] = (o[4 * g + 1] + t[4 * g + 1]) * c0;
      o[4 * g + 2] = (o[4 * g + 2] + t[4 * g + 2]) * c1;
      o[4 * g + 3] = (o[4 * g + 3] + t[4 * g + 3]) * c1;
    }
#pragma unroll
    for (int i = 0; i < 68; ++i) t[i] = 0.0f;
  } else if (flush) {
    l0 += t[64];
    l1 += t[66];
#pragma unroll
    for (int i = 0; i < 64; ++i) o[i] += t[i];
  }
}

#define SG_STAGES 3
#define SG_STAGE_BYTES (2 * SG_K_TILE)
// Hopper: two Q tiles, then per consumer SG_STAGES ring slots, plus slack to align to 1024 bytes.
// A slot is a K and a Vᵀ tile and 8 rows of FP8 ones behind the Vᵀ tile: P̃ V over 136 columns
// leaves each row's sum of P̃ in the last 8, so the tensor cores add up the softmax's row sums
// (of the same FP8 values the products use) instead of 64 FADDs a thread and tile.
#define SG_ONES_BYTES 1024
#define SG_SLOT_BYTES (SG_STAGE_BYTES + SG_ONES_BYTES)
#define SG_SMEM_BYTES (2 * SG_Q_TILE + 2 * SG_STAGES * SG_SLOT_BYTES + 1024)
// The CTA launches at 168 registers a thread; the consumers' increase to 240 takes
// (240 − 168) · 256 of them, which the producer must give back first: it runs on 24 (at 32 the
// increase never completes and the kernel hangs).
#define SG_PRODUCER_REGS 24
#define SG_CONSUMER_REGS 240

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define SG_F8(i)                                                                              \
  "+f"(d[(i)]), "+f"(d[(i) + 1]), "+f"(d[(i) + 2]), "+f"(d[(i) + 3]), "+f"(d[(i) + 4]),         \
      "+f"(d[(i) + 5]), "+f"(d[(i) + 6]), "+f"(d[(i) + 7])
#define SG_F68                                                                                \
  SG_F8(0), SG_F8(8), SG_F8(16), SG_F8(24), SG_F8(32), SG_F8(40), SG_F8(48), SG_F8(56),         \
      "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67])
#define SG_REGS68 WG_REGS64_OPEN ", %64, %65, %66, %67}"

// d[64x136] (+)= A[64x32] · B[136x32]ᵀ in FP8 e4m3, A from registers, B K-major in shared memory.
__device__ __forceinline__ void wgmma_e4m3(float* d, const unsigned* a, u64 b, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %73, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n136k32.f32.e4m3.e4m3 " SG_REGS68
      ", {%68, %69, %70, %71}, %72, p, 1, 1;\n}\n"
      : SG_F68
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(accumulate));
}

// S (+)= Q Kᵀ for one tile, from the descriptors of the Q tile and the stage's K tile.
__device__ __forceinline__ void issue_qk8(int* s, u64 qd, u64 kd) {
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) wgmma_s8(s, desc_add(qd, kk * 32), desc_add(kd, kk * 32), 1);
  wgmma_commit();
}

// t = P̃ V for one tile, added to t when `more` (else into a fresh accumulator); `more` must be
// the same across the warpgroup.
__device__ __forceinline__ void issue_pv8(float* t, const unsigned* p, u64 vd, bool more) {
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) wgmma_e4m3(t, p + 4 * kk, desc_add(vd, kk * 32), more || kk > 0);
  wgmma_commit();
}
#endif

// The epilogue's ring slot: the linear branch's 64 rows of the query block (rows SG_LIN_PITCH
// bytes apart, so the m16n8 layout's 8 rows of a read fall in different banks), then the head's
// 128 V channel scales.
#define SG_LIN_PITCH (2 * SG_D + 16)
#define SG_VS_OFFSET (SG_BQ * SG_LIN_PITCH)

// Grid (CTAs, 1), 384 threads, SG_SMEM_BYTES dynamic shared memory (sm_90a). A work item is a
// pair of 64-query blocks of one head, item i = (head i / ⌈QB / 2⌉, blocks 2·(i mod ⌈QB / 2⌉) +
// 0, 1); the last items may be split into pieces of their key blocks (split.cuh), which leave
// their state in `part` for sage_merge. CTA b takes units b, b + grid, …; the host runs one CTA
// an SM, so a unit's Q and first tiles load while the previous unit finishes.
//
// Warpgroups 0 and 1 are consumers, each of its own block of the pair with its own list of key
// blocks; warpgroup 2 is the producer, whose lane 0 of warp c serves consumer c: per item the
// Q tile (once the consumer has issued its last Q Kᵀ of the item before), one bulk copy each of
// the K and Vᵀ tiles into the consumer's ring of three stages (`full`/`empty` mbarriers), and
// then one more ring slot with what the epilogue reads (the linear branch's rows, V's channel
// scales), which lands while the last tiles compute. The ring runs on across items, so the next
// item's Q and tiles load while the consumer finishes the last. A consumer's iteration j issues
// S_j = Q K_jᵀ (INT8 wgmma, s32) and T = P̃_{j-1} V_{j-1} (FP8 wgmma, fresh f32 accumulator) back
// to back, runs the softmax of S_j (dequantized by q scale · k scale) while T is in flight, then
// folds T into O. (Dense, one ring shared by both consumers halves the L2 traffic but measured
// 8 % slower: the consumers then wait on each other.)
template <bool E4M3>
__device__ __forceinline__ void sage_sm90(const SageArgs& a) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ u8 smem_raw[];
  // Per consumer: full[SG_STAGES], empty[SG_STAGES], Q full, Q empty.
  __shared__ __align__(8) u64 bars[2 * (2 * SG_STAGES + 2)];
  // Per consumer and stage: the staged key block and its scale, written by the producer before
  // it arrives on the stage's barrier (so the consumer reads no global memory in its loop).
  __shared__ int stage_blk[2][SG_STAGES];
  __shared__ float stage_scale[2][SG_STAGES];
  const unsigned raw = smem_addr(smem_raw);
  const unsigned base = (raw + 1023u) & ~1023u;
  const int wg = threadIdx.x >> 7;
  const int pairs = (a.qblocks + 1) / 2;
  const int units = split_units(pairs * a.heads, a.whole, a.pieces);
  const unsigned bar0 = smem_addr(bars);
#define SG_FULL(c, t) (bar0 + 8 * ((c) * (2 * SG_STAGES + 2) + (t)))
#define SG_EMPTY(c, t) (SG_FULL(c, t) + 8 * SG_STAGES)
#define SG_QBAR(c) (SG_FULL(c, 0) + 16 * SG_STAGES)
#define SG_QEMPTY(c) (SG_QBAR(c) + 8)
#define SG_QTILE(c) (base + (c) * SG_Q_TILE)
#define SG_KTILE(c, t) (base + 2 * SG_Q_TILE + ((c) * SG_STAGES + (t)) * SG_SLOT_BYTES)
  if (threadIdx.x == 0) {
    for (int c = 0; c < 2; ++c) {
      for (int t = 0; t < SG_STAGES; ++t) {
        mbar_init(SG_FULL(c, t), 1);
        mbar_init(SG_EMPTY(c, t), 128);
      }
      mbar_init(SG_QBAR(c), 1);
      mbar_init(SG_QEMPTY(c), 128);
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();

  if (wg == 2) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(SG_PRODUCER_REGS));
    const int c = (threadIdx.x >> 5) & 3;
    if (c >= 2 || (threadIdx.x & 31) != 0) return;
    // Ring slots filled and items served, counted as the consumer counts them.
    int t = 0, done = 0;
    for (int u = blockIdx.x; u < units; u += gridDim.x) {
      const Unit w = split_unit(u, a.whole, a.pieces, a.blocks);
      const int h = w.item / pairs, qb = 2 * (w.item % pairs) + c;
      if (qb >= a.qblocks) continue;
      const u64 row = (u64)h * a.qblocks + qb;
      if (done > 0) mbar_wait(SG_QEMPTY(c), (done - 1) & 1);
      mbar_expect(SG_QBAR(c), SG_Q_TILE);
      bulk_copy(SG_QTILE(c), a.q + row * SG_Q_TILE, SG_Q_TILE, SG_QBAR(c));
      const int* lut = a.lut ? a.lut + row * a.blocks : nullptr;
      const u8* kg = a.k + (u64)h * a.kblocks * SG_K_TILE;
      const u8* vg = a.v + (u64)h * a.kblocks * SG_K_TILE;
      const float* ks = a.kscale + (u64)h * a.kblocks;
      for (int j = w.j0; j < w.j1; ++j, ++t) {
        const int st = t % SG_STAGES;
        const int blk = lut ? lut[j] : j;
        const float scale = ks[blk];
        if (t >= SG_STAGES) mbar_wait(SG_EMPTY(c, st), ((t / SG_STAGES) - 1) & 1);
        stage_blk[c][st] = blk;
        stage_scale[c][st] = scale;
        mbar_expect(SG_FULL(c, st), SG_STAGE_BYTES);
        bulk_copy(SG_KTILE(c, st), kg + (u64)blk * SG_K_TILE, SG_K_TILE, SG_FULL(c, st));
        bulk_copy(SG_KTILE(c, st) + SG_K_TILE, vg + (u64)blk * SG_K_TILE, SG_K_TILE, SG_FULL(c, st));
      }
      ++done;
      if (w.piece >= 0) continue;
      const int st = t % SG_STAGES, rows = min(SG_BQ, a.len - qb * SG_BQ);
      if (t >= SG_STAGES) mbar_wait(SG_EMPTY(c, st), ((t / SG_STAGES) - 1) & 1);
      mbar_expect(SG_FULL(c, st), SG_D * 4 + (a.lin ? rows * 2 * SG_D : 0));
      bulk_copy(SG_KTILE(c, st) + SG_VS_OFFSET, a.stats + (u64)h * 3 * SG_D + 2 * SG_D, SG_D * 4,
                SG_FULL(c, st));
      if (a.lin) {
        const bf16_t* lin = a.lin + ((u64)qb * SG_BQ * a.heads + h) * SG_D;
#pragma unroll 1
        for (int r = 0; r < rows; ++r)
          bulk_copy(SG_KTILE(c, st) + r * SG_LIN_PITCH, lin + (u64)r * a.heads * SG_D, 2 * SG_D,
                    SG_FULL(c, st));
      }
      ++t;
    }
    return;
  }

  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(SG_CONSUMER_REGS));
  const int warp = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31;
  // The Q tile's descriptor, and slot 0's K tile's (slot t's is SG_SLOT_BYTES · t further on, its
  // Vᵀ tile's SG_K_TILE further still).
  const u64 qd = smem_desc(SG_QTILE(wg), 16, 1024), kd0 = smem_desc(SG_KTILE(wg, 0), 16, 1024);
#define SG_KDESC(t) desc_add(kd0, (t) * SG_SLOT_BYTES)
#define SG_VDESC(t) desc_add(kd0, (t) * SG_SLOT_BYTES + SG_K_TILE)
  // Each slot's ones, written once (the producer's copies never reach them).
  for (int i = threadIdx.x & 127; i < SG_STAGES * SG_ONES_BYTES / 4; i += 128) {
    const int st = i / (SG_ONES_BYTES / 4), w = i % (SG_ONES_BYTES / 4);
    *(unsigned*)(smem_raw + (SG_KTILE(wg, st) - raw) + 2 * SG_K_TILE + 4 * w) = 0x38383838u;
  }
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  asm volatile("bar.sync %0, 128;" ::"r"(1 + wg) : "memory");
  int acc[64];
  float s[64], o[64], t[68];
  unsigned p[16];
  int ring = 0, done = 0;
  for (int u = blockIdx.x; u < units; u += gridDim.x) {
    const Unit w = split_unit(u, a.whole, a.pieces, a.blocks);
    const int h = w.item / pairs, qb = 2 * (w.item % pairs) + wg;
    // The unit's key blocks, through a shuffle: ptxas then keeps a YIELD out of the loop below
    // (and a register spill), as it does when the count is a kernel parameter.
    const int n = __shfl_sync(0xffffffffu, w.j1 - w.j0, 0);
    if (qb >= a.qblocks) continue;
    const float qs = a.qscale[(u64)h * a.qblocks + qb];
#pragma unroll
    for (int i = 0; i < 64; ++i) {
      o[i] = 0.0f;
      acc[i] = SG_ACC_SEED;
    }
    float m0 = -TURBINE_INF, m1 = -TURBINE_INF, l0 = 0.0f, l1 = 0.0f, c0, c1;

    // The ring slot of the current block and its phase, stepped along (no division in the loop).
    int st = ring % SG_STAGES, phase = (ring / SG_STAGES) & 1;
    mbar_wait(SG_QBAR(wg), done & 1);
    mbar_wait(SG_FULL(wg, st), phase);
    wgmma_fence();
    issue_qk8(acc, qd, SG_KDESC(st));
    wgmma_wait<0>();
    pin(acc);
    if (n == 1) mbar_arrive(SG_QEMPTY(wg));
    take_scores(s, acc);
    online_softmax<16, false, SG_SLACK>(s, stage_blk[wg][st] * SG_BK, a.len,
                                        qs * stage_scale[wg][st], SG_P_SHIFT - SG_SLACK, m0, m1,
                                        l0, l1, c0, c1, SG_ACC_SEED_F);
    pack_p8(p, s);

    for (int j = 1; j < n; ++j) {
      const int prev = st;
      if (++st == SG_STAGES) {
        st = 0;
        phase ^= 1;
      }
      mbar_wait(SG_FULL(wg, st), phase);
      const int key0 = stage_blk[wg][st] * SG_BK;
      const float scale = qs * stage_scale[wg][st];
      wgmma_fence();
      issue_qk8(acc, qd, SG_KDESC(st));
      issue_pv8(t, p, SG_VDESC(prev), (j - 1) % SG_FOLD != 0);
      wgmma_wait<1>();
      pin(acc);
      if (j == n - 1) mbar_arrive(SG_QEMPTY(wg));
      take_scores(s, acc);
      online_softmax<16, false, SG_SLACK>(s, key0, a.len, scale, SG_P_SHIFT - SG_SLACK, m0, m1,
                                          l0, l1, c0, c1, SG_ACC_SEED_F);
      wgmma_wait<0>();
      pin<68>(t);
      mbar_arrive(SG_EMPTY(wg, prev));
      accumulate(o, t, l0, l1, c0, c1, j % SG_FOLD == 0);
      pack_p8(p, s);
    }
    wgmma_fence();
    issue_pv8(t, p, SG_VDESC(st), (n - 1) % SG_FOLD != 0);
    wgmma_wait<0>();
    pin<68>(t);
    mbar_arrive(SG_EMPTY(wg, st));
    accumulate(o, t, l0, l1, 1.0f, 1.0f, true);
    ring += n;
    ++done;
    if (w.piece >= 0) {
      store_partial(a.part, w.piece, wg, o, l0, l1, m0, m1);
      continue;
    }

    const int ep = ring % SG_STAGES, r0 = warp * 16 + (lane >> 2);
    mbar_wait(SG_FULL(wg, ep), (ring / SG_STAGES) & 1);
    const u8* slot = smem_raw + (SG_KTILE(wg, ep) - raw);
    store_sage<E4M3>(a, o, l0, l1, qb * SG_BQ + r0, h, (const float*)(slot + SG_VS_OFFSET),
               a.lin ? (const bf16_t*)(slot + r0 * SG_LIN_PITCH) : nullptr, SG_LIN_PITCH / 2);
    mbar_arrive(SG_EMPTY(wg, ep));
    ++ring;
  }
#undef SG_FULL
#undef SG_EMPTY
#undef SG_QBAR
#undef SG_QEMPTY
#undef SG_QTILE
#undef SG_KTILE
#undef SG_KDESC
#undef SG_VDESC
#else
  __trap();
#endif
}

// The output's two forms are two kernels, so that the bf16 one keeps every register it had.
extern "C" __global__ void __launch_bounds__(384, 1) sage_attention_sm90(const SageArgs a) {
  sage_sm90<false>(a);
}

extern "C" __global__ void __launch_bounds__(384, 1) sage_attention_sm90_e4m3(const SageArgs a) {
  sage_sm90<true>(a);
}

// Grid (split items, 1), 256 threads: the split items' pieces combined (split.cuh) and stored as
// sage_attention_sm90 stores a whole item, thread i of the pair's block c = i / 128 in the place
// of consumer c's thread.
extern "C" __global__ void __launch_bounds__(256) sage_merge(const SageArgs a) {
  const int pairs = (a.qblocks + 1) / 2, item = a.whole + blockIdx.x, c = threadIdx.x >> 7;
  const int h = item / pairs, qb = 2 * (item % pairs) + c;
  if (qb >= a.qblocks) return;
  float o[64], l0, l1;
  merge_partials(a.part, blockIdx.x, a.pieces, c, o, l0, l1);
  const int row = qb * SG_BQ + ((threadIdx.x >> 5) & 3) * 16 + ((threadIdx.x & 31) >> 2);
  const u64 stride = (u64)a.heads * SG_D;
  const float* vs = a.stats + (u64)h * 3 * SG_D + 2 * SG_D;
  const bf16_t* lin = a.lin ? a.lin + row * stride + h * SG_D : nullptr;
  if (a.out8) {
    store_sage<true>(a, o, l0, l1, row, h, vs, lin, stride);
  } else {
    store_sage<false>(a, o, l0, l1, row, h, vs, lin, stride);
  }
}

// ---- portable kernel: mma.sync (sm_89 and later but sm_90a: RTX 4090/5090, L40) ----

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
// d (16x8, f32) += a (16x32, e4m3) · b (32x8, e4m3).
__device__ __forceinline__ void mma_e4m3(float* d, const unsigned* a, unsigned b0, unsigned b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// One tile image (`bytes`, contiguous) global -> shared by the CTA's 128 threads.
__device__ __forceinline__ void copy_tile(unsigned dst, const u8* src, int bytes) {
  for (int i = threadIdx.x; i < bytes / 16; i += 128) cp_async16(dst + 16 * i, src + 16 * i, 16);
}
#endif

#define SG_MMA_SMEM_BYTES (SG_Q_TILE + 2 * SG_STAGE_BYTES)

// Grid (QB, H), 128 threads, SG_MMA_SMEM_BYTES dynamic shared memory. One 64-query block per CTA,
// four warps of 16 rows; K/Vᵀ tiles double-buffered by cp.async from the same images the Hopper
// kernel bulk-copies. Q Kᵀ and P̃ V are m16n8k32 MMAs (INT8 → s32, FP8 → f32) with operands
// through ldmatrix; P̃ V accumulates each 8-channel group over the tile's 128 keys on its own
// before joining O, so the two-level accumulation costs 8 registers, not 64.
extern "C" __global__ void __launch_bounds__(128) sage_attention_mma(const SageArgs a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  extern __shared__ __align__(128) u8 sg_smem[];
  const unsigned sq = smem_addr(sg_smem), skv = sq + SG_Q_TILE;
  const int qb = blockIdx.x, h = blockIdx.y;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, m = lane >> 3;
  const u64 row = (u64)h * a.qblocks + qb;
  const int* lut = a.lut ? a.lut + row * a.blocks : nullptr;
  const u8* kg = a.k + (u64)h * a.kblocks * SG_K_TILE;
  const u8* vg = a.v + (u64)h * a.kblocks * SG_K_TILE;
  const float* ks = a.kscale + (u64)h * a.kblocks;
  const float qs = a.qscale[row];
#define SG_STAGE(j) (skv + ((j) & 1) * SG_STAGE_BYTES)

  int blk = lut ? lut[0] : 0;
  copy_tile(sq, a.q + row * SG_Q_TILE, SG_Q_TILE);
  copy_tile(SG_STAGE(0), kg + (u64)blk * SG_K_TILE, SG_K_TILE);
  copy_tile(SG_STAGE(0) + SG_K_TILE, vg + (u64)blk * SG_K_TILE, SG_K_TILE);
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();

  // Q fragments of this warp's 16 rows: (rows 0-7 | 8-15) x (bytes 0-15 | 16-31) of each k32 step.
  unsigned qf[4][4];
#pragma unroll
  for (int kk = 0; kk < 4; ++kk)
    ldmatrix_x4(qf[kk], sq + sw128(warp * 16 + (lane & 7) + (m & 1) * 8, 16 * (2 * kk + (m >> 1))));

  int acc[64];
  float s[64], o[64];
  unsigned p[16];
#pragma unroll
  for (int i = 0; i < 64; ++i) {
    o[i] = 0.0f;
    acc[i] = SG_ACC_SEED;
  }
  float m0 = -TURBINE_INF, m1 = -TURBINE_INF, l0 = 0.0f, l1 = 0.0f, c0, c1;

  for (int j = 0; j < a.blocks; ++j) {
    if (j + 1 < a.blocks) {
      const u64 next = lut ? lut[j + 1] : j + 1;
      copy_tile(SG_STAGE(j + 1), kg + next * SG_K_TILE, SG_K_TILE);
      copy_tile(SG_STAGE(j + 1) + SG_K_TILE, vg + next * SG_K_TILE, SG_K_TILE);
      cp_async_commit();
    }
    blk = lut ? lut[j] : j;
    const unsigned kb = SG_STAGE(j), vb = kb + SG_K_TILE;
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
#pragma unroll
      for (int np = 0; np < 8; ++np) {
        // Key groups 2np and 2np+1, bytes 32kk .. 32kk + 31.
        unsigned b[4];
        ldmatrix_x4(b, kb + sw128((2 * np + (m >> 1)) * 8 + (lane & 7), 16 * (2 * kk + (m & 1))));
        mma_s8(acc + 8 * np, qf[kk], b[0], b[1]);
        mma_s8(acc + 8 * np + 4, qf[kk], b[2], b[3]);
      }
    }
    take_scores(s, acc);
    online_softmax<16>(s, blk * SG_BK, a.len, qs * ks[blk], SG_P_SHIFT, m0, m1, l0, l1, c0, c1,
                       SG_ACC_SEED_F);
    pack_p8(p, s);
#pragma unroll
    for (int np = 0; np < 8; ++np) {
      // Channel groups 2np and 2np+1 over the tile's four k32 token steps.
      float t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        unsigned b[4];
        ldmatrix_x4(b, vb + sw128((2 * np + (m >> 1)) * 8 + (lane & 7), 16 * (2 * kk + (m & 1))));
        mma_e4m3(t, p + 4 * kk, b[0], b[1]);
        mma_e4m3(t + 4, p + 4 * kk, b[2], b[3]);
      }
#pragma unroll
      for (int e = 0; e < 8; e += 4) {
        float* og = o + 8 * np + e;
        og[0] = (og[0] * c0) + t[e];
        og[1] = (og[1] * c0) + t[e + 1];
        og[2] = (og[2] * c1) + t[e + 2];
        og[3] = (og[3] * c1) + t[e + 3];
      }
    }
    cp_async_wait<0>();
    __syncthreads();
  }
#undef SG_STAGE
  const int row0 = qb * SG_BQ + warp * 16 + (lane >> 2);
  const u64 stride = (u64)a.heads * SG_D;
  const float* vs = a.stats + (u64)h * 3 * SG_D + 2 * SG_D;
  const bf16_t* lin = a.lin ? a.lin + row0 * stride + h * SG_D : nullptr;
  if (a.out8) {
    store_sage<true>(a, o, quad_sum(l0), quad_sum(l1), row0, h, vs, lin, stride);
  } else {
    store_sage<false>(a, o, quad_sum(l0), quad_sum(l1), row0, h, vs, lin, stride);
  }
#else
  __trap();
#endif
}
