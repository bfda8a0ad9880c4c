// Sparse-linear attention (TurboDiffusion's SLA) on q, k, v: [L, H, Dh], composed of simple
// kernels; the sparse branch itself is attention_f32 with a block mask (attention.cu).
//
// Block selection must pick exactly the blocks the CPU reference picks, so the pooled means and
// pooled scores are summed sequentially in token / channel order with uncontracted adds and
// multiplies (__fadd_rn, __fmul_rn), reproducing the reference's f32 roundings bit for bit; the
// top-k then compares identical numbers.
#include "common.cuh"

// Mean over tokens [start, end) of each (head, block, channel), minus `center` [H, Dh] when
// given: pooled q (no center) and pooled smoothed k (center = mean of k over all tokens).
struct SlaPoolArgs {
  float* out;           // [H, blocks, Dh]
  const float* x;       // [L, H, Dh]
  const float* center;  // [H, Dh] or null
  unsigned len;
  unsigned heads;
  unsigned dh;
  unsigned block;       // tokens per block; L itself for the whole-sequence mean
  unsigned blocks;
};

extern "C" __global__ void sla_pool_f32(const SlaPoolArgs a) {
  GRID_STRIDE(e, (u64)a.heads * a.blocks * a.dh) {
    const unsigned d = e % a.dh;
    const unsigned b = (e / a.dh) % a.blocks;
    const unsigned h = e / ((u64)a.dh * a.blocks);
    const unsigned start = b * a.block;
    const unsigned end = min(start + a.block, a.len);
    float sum = 0.0f;
    for (unsigned t = start; t < end; ++t) {
      sum = __fadd_rn(sum, a.x[((u64)t * a.heads + h) * a.dh + d]);
    }
    float mean = __fdiv_rn(sum, (float)(end - start));
    if (a.center) mean = __fsub_rn(mean, a.center[(u64)h * a.dh + d]);
    a.out[e] = mean;
  }
}

// scores[h, i, j] = pooled_q[h, i] . pooled_k[h, j], summed in channel order.
struct SlaScoreArgs {
  float* scores;       // [H, QB, KB]
  const float* pq;     // [H, QB, Dh]
  const float* pk;     // [H, KB, Dh]
  unsigned heads;
  unsigned qblocks;
  unsigned kblocks;
  unsigned dh;
};

extern "C" __global__ void sla_scores_f32(const SlaScoreArgs a) {
  GRID_STRIDE(e, (u64)a.heads * a.qblocks * a.kblocks) {
    const u64 j = e % a.kblocks;
    const u64 hi = e / a.kblocks;  // h * QB + i
    const u64 h = hi / a.qblocks;
    const float* q = a.pq + hi * a.dh;
    const float* k = a.pk + (h * a.kblocks + j) * a.dh;
    float acc = 0.0f;
    for (unsigned d = 0; d < a.dh; ++d) acc = __fadd_rn(acc, __fmul_rn(q[d], k[d]));
    a.scores[e] = acc;
  }
}

// mask[h, i, j] = 1 for the `keep` highest scores of row (h, i). Ties go to the lower block index,
// as the reference's stable descending sort does (its total_cmp also ranks -0 below +0, a tie
// here). O(KB) per element: KB is at most a few hundred.
struct SlaSelectArgs {
  u8* mask;             // [H, QB, KB]
  const float* scores;  // [H, QB, KB]
  u64 rows;             // H * QB
  unsigned kblocks;
  unsigned keep;
};

extern "C" __global__ void sla_select_f32(const SlaSelectArgs a) {
  GRID_STRIDE(e, a.rows * a.kblocks) {
    const u64 j = e % a.kblocks;
    const float* row = a.scores + (e - j);
    const float s = row[j];
    unsigned rank = 0;
    for (unsigned b = 0; b < a.kblocks; ++b) {
      const float t = row[b];
      rank += (t > s) || (t == s && b < j);
    }
    a.mask[e] = rank < a.keep;
  }
}

// kv[h, d1, d2] = sum_t phi_k[t, h, d1] * v[t, h, d2] and ksum[h, d1] = sum_t phi_k[t, h, d1]:
// block (d1, h), thread d2 (threads beyond Dh idle; thread 0 also sums ksum).
struct SlaKvArgs {
  float* kv;          // [H, Dh, Dh]
  float* ksum;        // [H, Dh]
  const float* phik;  // [L, H, Dh]
  const float* v;     // [L, H, Dh]
  unsigned len;
  unsigned heads;
  unsigned dh;
};

extern "C" __global__ void sla_kv_f32(const SlaKvArgs a) {
  const unsigned d1 = blockIdx.x, h = blockIdx.y, d2 = threadIdx.x;
  if (d2 >= a.dh) return;
  const u64 stride = (u64)a.heads * a.dh;
  const float* fk = a.phik + (u64)h * a.dh + d1;
  const float* v = a.v + (u64)h * a.dh + d2;
  float acc = 0.0f, ks = 0.0f;
  for (unsigned t = 0; t < a.len; ++t) {
    const float f = fk[t * stride];
    acc += f * v[t * stride];
    ks += f;
  }
  a.kv[((u64)h * a.dh + d1) * a.dh + d2] = acc;
  if (d2 == 0) a.ksum[(u64)h * a.dh + d1] = ks;
}

// out[t, h, :] = phi_q[t, h] . kv[h] / (phi_q[t, h] . ksum[h] + 1e-5): block (t, h), thread d2.
struct SlaLinearArgs {
  float* out;         // [L, H, Dh]
  const float* phiq;  // [L, H, Dh]
  const float* kv;    // [H, Dh, Dh]
  const float* ksum;  // [H, Dh]
  unsigned heads;
  unsigned dh;
};

extern "C" __global__ void sla_linear_f32(const SlaLinearArgs a) {
  const unsigned h = blockIdx.y, d2 = threadIdx.x;
  const u64 t = blockIdx.x;
  if (d2 >= a.dh) return;
  const float* fq = a.phiq + (t * a.heads + h) * a.dh;
  const float* kv = a.kv + (u64)h * a.dh * a.dh + d2;
  const float* ks = a.ksum + (u64)h * a.dh;
  float num = 0.0f, den = 0.0f;
  for (unsigned d1 = 0; d1 < a.dh; ++d1) {
    num += fq[d1] * kv[(u64)d1 * a.dh];
    den += fq[d1] * ks[d1];
  }
  a.out[(t * a.heads + h) * a.dh + d2] = num / (den + 1e-5f);
}
