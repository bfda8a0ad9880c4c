// Row kernels that hold a whole row of a [rows, cols] matrix in registers, so they read it from
// memory once however many passes their arithmetic makes over it (a norm's mean, variance and
// output; a quantizer's maximum and output).
//
// `warps_per_row` warps hold a row, ROW_CHUNKS chunks of eight consecutive columns a lane: chunk u
// of lane t of the row covers columns 8 (t + 32 u warps_per_row) .. + 8, so a warp's loads of a
// chunk are one contiguous stretch and rows up to 1024 · warps_per_row columns fit (32768 with 32
// warps). `rows_per_block` rows share a block. cols must be a multiple of 8 and every row pointer
// 16-byte aligned (the launchers check both).
//
// Four chunks a lane rather than eight: the unrolled chunk loops hold registers for every chunk
// whether a row fills it or not, and at eight a 1536-wide row on one warp (six chunks) kept
// layer_norm_rows at 114 registers, 16 warps an SM and a third of DRAM's bandwidth.
#pragma once
#include "common.cuh"

#define ROW_CHUNKS 4
#define E4M3_MAX 448.0f
#define AMAX_FLOOR 1e-8f

// This thread's place: its row, its lane among the row's 32 · warps lanes, and whether the row
// exists (a block's last rows may not; such threads still take part in the block's barriers).
struct RowSlot {
  u64 row;
  unsigned lane;
  unsigned lanes;
  unsigned slot;
  unsigned warps;
  bool live;
};

__device__ __forceinline__ RowSlot row_slot(unsigned warps_per_row, unsigned rows_per_block,
                                            unsigned rows) {
  RowSlot s;
  s.warps = warps_per_row;
  s.lanes = 32 * warps_per_row;
  s.slot = threadIdx.x / s.lanes;
  s.lane = threadIdx.x % s.lanes;
  s.row = (u64)blockIdx.x * rows_per_block + s.slot;
  s.live = s.row < rows;
  return s;
}

// The first column of chunk u, and whether this thread holds it.
__device__ __forceinline__ unsigned chunk_col(const RowSlot& s, int u) {
  return 8 * (s.lane + u * s.lanes);
}

__device__ __forceinline__ bool has_chunk(const RowSlot& s, int u, unsigned cols) {
  return s.live && chunk_col(s, u) < cols;
}

// p[i .. i + 8) as f32; `i` is a multiple of 8, so the loads are aligned.
__device__ __forceinline__ void load8(const void* p, int dt, u64 i, float v[8]) {
  if (dt == DT_BF16) {
    unpack_bf16x8(*reinterpret_cast<const uint4*>((const bf16_t*)p + i), v);
  } else {
    const float4 a = *reinterpret_cast<const float4*>((const float*)p + i);
    const float4 b = *reinterpret_cast<const float4*>((const float*)p + i + 4);
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
    v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
  }
}

// v as p[i .. i + 8) in type dt (bf16 rounded to nearest even).
__device__ __forceinline__ void store8(void* p, int dt, u64 i, const float v[8]) {
  if (dt == DT_BF16) {
    *reinterpret_cast<uint4*>((bf16_t*)p + i) =
        make_uint4(pack_bf16x2(v[0], v[1]), pack_bf16x2(v[2], v[3]), pack_bf16x2(v[4], v[5]),
                   pack_bf16x2(v[6], v[7]));
  } else {
    *reinterpret_cast<float4*>((float*)p + i) = make_float4(v[0], v[1], v[2], v[3]);
    *reinterpret_cast<float4*>((float*)p + i + 4) = make_float4(v[4], v[5], v[6], v[7]);
  }
}

// The sum (or with MAX the maximum) of `v` over the row's lanes, returned to all of them. Every
// thread of the block must call it: with several warps a row it meets the others at a barrier.
// `scratch` holds 32 floats, a kernel's reductions one each (so one barrier apiece suffices).
template <bool MAX>
__device__ __forceinline__ float row_reduce(float v, const RowSlot& s, float* scratch) {
  v = MAX ? warp_max(v) : warp_sum(v);
  if (s.warps == 1) return v;
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  const float* mine = scratch + s.slot * s.warps;
  float r = mine[0];
  for (unsigned i = 1; i < s.warps; ++i) r = MAX ? fmaxf(r, mine[i]) : r + mine[i];
  return r;
}

// The row in registers quantized to FP8 e4m3 with the row's scale: out[c] = e4m3(w[c] · 448 /
// amax) and scales[row] = amax / 448, amax (the row's max |w|, from row_reduce<true>) floored at
// 1e-8. The host quantizer (shared/tensor/src/fp8.rs) does the same f32 operations.
__device__ __forceinline__ void store_fp8_row(u8* out, float* scales, const RowSlot& s,
                                              unsigned cols, const float w[ROW_CHUNKS][8],
                                              float amax) {
  if (!s.live) return;
  amax = fmaxf(amax, AMAX_FLOOR);
  const float inv = E4M3_MAX / amax;
  if (s.lane == 0) scales[s.row] = amax / E4M3_MAX;
  const u64 first = s.row * cols;
#pragma unroll
  for (int u = 0; u < ROW_CHUNKS; ++u) {
    const unsigned c = chunk_col(s, u);
    if (c < cols) {
      const float* v = w[u];
      uint2 packed;
      packed.x = fp8x4(v[0] * inv, v[1] * inv, v[2] * inv, v[3] * inv);
      packed.y = fp8x4(v[4] * inv, v[5] * inv, v[6] * inv, v[7] * inv);
      *reinterpret_cast<uint2*>(out + first + c) = packed;
    }
  }
}
