// The online softmax of the flash-attention kernels (bf16 and 8-bit) in the m16n8 accumulator
// layout that wgmma and mma.sync share.
#pragma once
#include "async.cuh"

// The online softmax on one tile of scores in the m16n8 accumulator layout shared by wgmma and
// mma.sync: this thread holds rows r and r + 8 of its warp's 16, and in each group g of 8 keys the
// columns 2(lane % 4) and +1 (`s[4g]`, `s[4g+1]` for row r; `s[4g+2]`, `s[4g+3]` for row r + 8).
// The tile's G·8 scores become unnormalised probabilities in place: keys past `lk` are masked, the
// running row maxima `m0`/`m1` (exp2 domain) move up, and the factors that rescale earlier
// partial sums come back in `c0`/`c1` (0 on the first tile). Row sums `l0`/`l1` are updated,
// unless SUMS is false (the 8-bit wgmma kernel has the tensor cores add them up). The
// probabilities are scaled by 2^shift (the same factor in the sums, so it cancels): 8-bit
// attention uses log2(448) to fill FP8 e4m3's range. The scores may arrive offset by `seed` (the
// 8-bit kernels' seeded integer accumulators read as floats): the offset folds into the maxima's
// and the exponents' FMAs, so removing it costs no instruction of its own.
// With SLACK > 0 a row's running max moves only when the tile's exceeds it by more than SLACK
// (exp2 domain; FlashAttention-4's lazy rescaling): the probabilities may then reach
// 2^(SLACK + shift), and the factors stay exactly 1 on all but a row's first tiles, so the
// caller's rescale is skipped.
template <int G, bool SUMS = true, int SLACK = 0>
__device__ __forceinline__ void online_softmax(float* s, int key0, int lk, float scale_log2,
                                               float shift, float& m0, float& m1, float& l0,
                                               float& l1, float& c0, float& c1,
                                               float seed = 0.0f) {
  const int lane = threadIdx.x & 31;
  if (key0 + G * 8 > lk) {
#pragma unroll
    for (int g = 0; g < G; ++g) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        if (key0 + g * 8 + (lane & 3) * 2 + e >= lk) {
          s[4 * g + e] = -TURBINE_INF;
          s[4 * g + 2 + e] = -TURBINE_INF;
        }
      }
    }
  }
  float r0 = -TURBINE_INF, r1 = -TURBINE_INF;
#pragma unroll
  for (int g = 0; g < G; ++g) {
    r0 = fmaxf(r0, fmaxf(s[4 * g], s[4 * g + 1]));
    r1 = fmaxf(r1, fmaxf(s[4 * g + 2], s[4 * g + 3]));
  }
  r0 = fmaxf(r0, __shfl_xor_sync(0xffffffffu, r0, 1));
  r0 = fmaxf(r0, __shfl_xor_sync(0xffffffffu, r0, 2));
  r1 = fmaxf(r1, __shfl_xor_sync(0xffffffffu, r1, 1));
  r1 = fmaxf(r1, __shfl_xor_sync(0xffffffffu, r1, 2));
  const float off = seed * scale_log2;
  float n0 = fmaxf(m0, r0 * scale_log2 - off), n1 = fmaxf(m1, r1 * scale_log2 - off);
  if (SLACK > 0) {
    n0 = n0 > m0 + SLACK ? n0 : m0;
    n1 = n1 > m1 + SLACK ? n1 : m1;
  }
  c0 = ex2(m0 - n0);
  c1 = ex2(m1 - n1);
  m0 = n0;
  m1 = n1;
  const float b0 = (shift - n0) - off, b1 = (shift - n1) - off;
  float t0 = 0.0f, t1 = 0.0f;
#pragma unroll
  for (int g = 0; g < G; ++g) {
    s[4 * g] = ex2(fmaf(s[4 * g], scale_log2, b0));
    s[4 * g + 1] = ex2(fmaf(s[4 * g + 1], scale_log2, b0));
    s[4 * g + 2] = ex2(fmaf(s[4 * g + 2], scale_log2, b1));
    s[4 * g + 3] = ex2(fmaf(s[4 * g + 3], scale_log2, b1));
    if (SUMS) {
      t0 += s[4 * g] + s[4 * g + 1];
      t1 += s[4 * g + 2] + s[4 * g + 3];
    }
  }
  if (SUMS) {
    l0 = l0 * c0 + t0;
    l1 = l1 * c1 + t1;
  }
}

// O[16 rows of a warp][8G] (m16n8 layout, G groups) times the rows' rescale factors. Late tiles
// rarely raise a row's max: the multiply is skipped when no row of the warp moved (3-4 % of the
// wgmma kernel's time at Wan shapes).
template <int G = 16>
__device__ __forceinline__ void rescale(float* o, float c0, float c1) {
  if (__any_sync(0xffffffffu, c0 != 1.0f || c1 != 1.0f)) {
#pragma unroll
    for (int g = 0; g < G; ++g) {
      o[4 * g] *= c0;
      o[4 * g + 1] *= c0;
      o[4 * g + 2] *= c1;
      o[4 * g + 3] *= c1;
    }
  }
}

// A row's sum over the four lanes that hold its columns (lanes 4g .. 4g + 3 in the m16n8 layout).
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}
