// Softmax attention over token-major q: [Lq, H, Dh], k, v: [Lk, H, Dh], f32, one pass over the
// keys with an online softmax (FlashAttention's rescaling) so no [Lq, Lk] score matrix exists.
//
// Work split (the tuning table, see also the Rust `attention` module):
// - a block owns ATT_BQ = 16 query rows of one head: 4 warps x ATT_ROWS = 4 rows;
// - keys stream through shared memory in tiles of ATT_BK = 32 (one key per lane);
// - scores: lane j dots key j with the warp's 4 query rows (q broadcast from shared memory,
//   float4 loads); the row max and sum are warp shuffles;
// - P.V: lane l accumulates output dims 4l..4l+3 of the warp's 4 rows, so Dh <= 128.
// K rows are padded by one float4 so the 32 lanes' float4 reads of 32 different rows hit
// distinct banks. Shared memory: 43.5 KB per block (static limit 48 KB).
// Rejected for this first version: mma.sync/wgmma tiles (bf16 operands, the next step) and
// 64-row blocks (more smem per block, fewer resident blocks for the 128-dim case).
//
// An optional additive bias [H, Lq, Lk] (T5 relative positions) and an optional SLA block mask
// [H, ceil(Lq/block_q), ceil(Lk/block_k)] (1 = attend) restrict or shift the scores; key tiles
// that no row of the block attends to are skipped.
#include "common.cuh"

#define ATT_WARPS 4
#define ATT_ROWS 4
#define ATT_BQ (ATT_WARPS * ATT_ROWS)
#define ATT_BK 32
#define ATT_MAX_DH 128
#define ATT_KPAD 4

struct AttentionArgs {
  float* out;            // [Lq, H, Dh]
  const float* q;        // [Lq, H, Dh]
  const float* k;        // [Lk, H, Dh]
  const float* v;        // [Lk, H, Dh]
  const float* bias;     // [H, Lq, Lk] or null
  const u8* block_mask;  // [H, ceil(Lq/block_q), ceil(Lk/block_k)] or null
  float scale;           // applied to q.k before the bias
  int lq;
  int lk;
  int heads;
  int dh;                // multiple of 4, at most ATT_MAX_DH
  int block_q;           // SLA block sizes, read only with block_mask
  int block_k;
};

extern "C" __global__ void __launch_bounds__(ATT_WARPS * 32)
    attention_f32(const AttentionArgs a) {
  __shared__ __align__(16) float qs[ATT_BQ][ATT_MAX_DH];
  __shared__ __align__(16) float ks[ATT_BK][ATT_MAX_DH + ATT_KPAD];
  __shared__ __align__(16) float vs[ATT_BK][ATT_MAX_DH];
  __shared__ float ps[ATT_WARPS][ATT_ROWS][ATT_BK];

  const int h = blockIdx.y;
  const int q0 = blockIdx.x * ATT_BQ;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int d4 = a.dh >> 2;
  const i64 token_stride = (i64)a.heads * a.dh;
  const i64 head_offset = (i64)h * a.dh;
  const int nqb = a.block_mask ? (a.lq + a.block_q - 1) / a.block_q : 0;
  const int nkb = a.block_mask ? (a.lk + a.block_k - 1) / a.block_k : 0;
  const float4 zero4 = make_float4(0.0f, 0.0f, 0.0f, 0.0f);

  for (int e = tid; e < ATT_BQ * d4; e += blockDim.x) {
    const int r = e / d4, c = e % d4;
    float4 val = zero4;
    if (q0 + r < a.lq) {
      val = *reinterpret_cast<const float4*>(a.q + (q0 + r) * token_stride + head_offset + 4 * c);
    }
    *reinterpret_cast<float4*>(&qs[r][4 * c]) = val;
  }

  float m[ATT_ROWS], l[ATT_ROWS], o[ATT_ROWS][4];
#pragma unroll
  for (int r = 0; r < ATT_ROWS; ++r) {
    m[r] = -TURBINE_INF;
    l[r] = 0.0f;
#pragma unroll
    for (int x = 0; x < 4; ++x) o[r][x] = 0.0f;
  }
  const bool owns_dims = 4 * lane < a.dh;

  for (int k0 = 0; k0 < a.lk; k0 += ATT_BK) {
    const int key = k0 + lane;
    bool allowed[ATT_ROWS];
    bool any = false;
#pragma unroll
    for (int r = 0; r < ATT_ROWS; ++r) {
      const int row = q0 + warp * ATT_ROWS + r;
      bool ok = row < a.lq && key < a.lk;
      if (ok && a.block_mask) {
        ok = a.block_mask[((i64)h * nqb + row / a.block_q) * nkb + key / a.block_k] != 0;
      }
      allowed[r] = ok;
      any = any || ok;
    }
    // Also the barrier after the previous tile's reads of ks/vs.
    if (!__syncthreads_or(any)) continue;

    for (int e = tid; e < ATT_BK * d4; e += blockDim.x) {
      const int j = e / d4, c = e % d4;
      float4 kv = zero4, vv = zero4;
      if (k0 + j < a.lk) {
        const i64 at = (k0 + j) * token_stride + head_offset + 4 * c;
        kv = *reinterpret_cast<const float4*>(a.k + at);
        vv = *reinterpret_cast<const float4*>(a.v + at);
      }
      *reinterpret_cast<float4*>(&ks[j][4 * c]) = kv;
      *reinterpret_cast<float4*>(&vs[j][4 * c]) = vv;
    }
    __syncthreads();

    float s[ATT_ROWS];
#pragma unroll
    for (int r = 0; r < ATT_ROWS; ++r) s[r] = 0.0f;
    for (int c = 0; c < d4; ++c) {
      const float4 kk = *reinterpret_cast<const float4*>(&ks[lane][4 * c]);
#pragma unroll
      for (int r = 0; r < ATT_ROWS; ++r) {
        const float4 qq = *reinterpret_cast<const float4*>(&qs[warp * ATT_ROWS + r][4 * c]);
        s[r] += qq.x * kk.x + qq.y * kk.y + qq.z * kk.z + qq.w * kk.w;
      }
    }

#pragma unroll
    for (int r = 0; r < ATT_ROWS; ++r) {
      const int row = q0 + warp * ATT_ROWS + r;
      float score = -TURBINE_INF;
      if (allowed[r]) {
        score = s[r] * a.scale;
        if (a.bias) score += a.bias[((i64)h * a.lq + row) * a.lk + key];
      }
      const float m_new = fmaxf(m[r], warp_max(score));
      // Until a row has seen an allowed key its max stays -inf, and exp(-inf - -inf) is NaN.
      const bool empty = m_new == -TURBINE_INF;
      const float p = empty ? 0.0f : expf(score - m_new);
      const float corr = empty ? 1.0f : expf(m[r] - m_new);
      l[r] = l[r] * corr + warp_sum(p);
#pragma unroll
      for (int x = 0; x < 4; ++x) o[r][x] *= corr;
      m[r] = m_new;
      ps[warp][r][lane] = p;
    }
    __syncwarp();

    if (owns_dims) {
      const int keys = min(ATT_BK, a.lk - k0);
      for (int j = 0; j < keys; ++j) {
        const float4 vv = *reinterpret_cast<const float4*>(&vs[j][4 * lane]);
#pragma unroll
        for (int r = 0; r < ATT_ROWS; ++r) {
          const float p = ps[warp][r][j];
          o[r][0] += p * vv.x;
          o[r][1] += p * vv.y;
          o[r][2] += p * vv.z;
          o[r][3] += p * vv.w;
        }
      }
    }
    // ps is rewritten by the next tile.
    __syncwarp();
  }

#pragma unroll
  for (int r = 0; r < ATT_ROWS; ++r) {
    const int row = q0 + warp * ATT_ROWS + r;
    if (row < a.lq && owns_dims) {
      const float inv = 1.0f / l[r];
      *reinterpret_cast<float4*>(a.out + row * token_stride + head_offset + 4 * lane) =
          make_float4(o[r][0] * inv, o[r][1] * inv, o[r][2] * inv, o[r][3] * inv);
    }
  }
}

// softmax(scale * x), scale > 0, over each row of x: [rows, cols], f32 arithmetic in any storage
// type: the score rows of attention with heads wider than ATT_MAX_DH (whose products run on
// cuBLASLt) and SLA's feature map phi over the head dim. One warp per row; the row's second and
// third reads come from L1/L2.
struct SoftmaxScaledArgs {
  void* out;
  const void* x;
  u64 rows;
  unsigned cols;
  float scale;
  int out_dt, x_dt;
};

extern "C" __global__ void softmax_scaled_rows(const SoftmaxScaledArgs a) {
  const u64 row = ((u64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const unsigned lane = threadIdx.x & 31;
  if (row >= a.rows) return;
  const u64 base = row * a.cols;
  float mx = -TURBINE_INF;
  for (unsigned j = lane; j < a.cols; j += 32) mx = fmaxf(mx, load_elem(a.x, a.x_dt, base + j));
  mx = warp_max(mx) * a.scale;
  float sum = 0.0f;
  for (unsigned j = lane; j < a.cols; j += 32) {
    sum += expf(load_elem(a.x, a.x_dt, base + j) * a.scale - mx);
  }
  const float inv = 1.0f / warp_sum(sum);
  for (unsigned j = lane; j < a.cols; j += 32) {
    store_elem(a.out, a.out_dt, base + j, expf(load_elem(a.x, a.x_dt, base + j) * a.scale - mx) * inv);
  }
}
