// Quantizers of the 8-bit linear layers.
//
// quantize_fp8_rows: per-row FP8 e4m3 for the FP8 linears: weights per output channel (rows of
// W[N, K], once at load) and activations per token (rows of x[M, K], before every GEMM).
//
// out[r, c] = e4m3(x[r, c] * (448 / amax_r)) and scales[r] = amax_r / 448, amax_r = max |x[r, .]|
// floored at 1e-8; the e4m3 conversion rounds to nearest even and saturates at +-448. The host
// reference (shared/tensor/src/fp8.rs) does the same f32 operations, so the two agree bit for bit.
// A row is read once, held in registers (rows.cuh): Wan's 13824-wide FFN inputs take 7 warps.
//
// quantize_int8_blocks: TurboDiffusion's W8A8 INT8 format (upstream `quant_cuda`), 128x128 tiles
// of x[rows, cols] (activations: 128 tokens x 128 channels; weights: 128 outputs x 128 inputs):
// out = cvt.rni.sat.s8(x * (128 / amax)), scale = amax / 128, amax = max(1e-8, max |tile|). The
// host reference (shared/tensor/src/int8.rs) does the same f32 operations: bit for bit. Each tile
// is written as the INT8 GEMM's tile image (kernels/int8_gemm.cu): 16 KB, rows swizzled, rows past
// the matrix zeros. int8_tiles writes a `-quant` checkpoint's int8 weights in the same images.
#include "rows.cuh"

struct QuantizeFp8Args {
  u8* out;        // [rows, cols] e4m3
  float* scales;  // [rows]
  const void* x;  // [rows, cols]
  unsigned rows;
  unsigned cols;  // multiple of 8, at most 2048 * warps_per_row
  unsigned warps_per_row;
  unsigned rows_per_block;
  int x_dt;
};

// Written out rather than with rows.cuh's RowSlot / row_reduce / store_fp8_row, which compile to
// the same instructions but 106 registers instead of 96 and measured 15-50 % slower on an H100
// (bench/results/2026-11-26-fused-norms.md).
extern "C" __global__ void quantize_fp8_rows(const QuantizeFp8Args a) {
  const unsigned per_row = 32 * a.warps_per_row;
  const unsigned slot = threadIdx.x / per_row;
  const unsigned t = threadIdx.x % per_row;
  const u64 row = (u64)blockIdx.x * a.rows_per_block + slot;
  const bool live = row < a.rows;
  const u64 first = row * a.cols;

  // All ROW_CHUNKS loads are issued before the first use, and the row stays in registers for the
  // second pass.
  float w[ROW_CHUNKS][8];
  float amax = 0.0f;
#pragma unroll
  for (int u = 0; u < ROW_CHUNKS; ++u) {
    const unsigned c = 8 * (t + u * per_row);
    if (live && c < a.cols) load8(a.x, a.x_dt, first + c, w[u]);
  }
#pragma unroll
  for (int u = 0; u < ROW_CHUNKS; ++u) {
    if (live && 8 * (t + u * per_row) < a.cols) {
#pragma unroll
      for (int k = 0; k < 8; ++k) amax = fmaxf(amax, fabsf(w[u][k]));
    }
  }
  amax = warp_max(amax);
  if (a.warps_per_row > 1) {
    __shared__ float warp_amax[32];
    if ((threadIdx.x & 31) == 0) warp_amax[threadIdx.x >> 5] = amax;
    __syncthreads();
    const float* mine = warp_amax + slot * a.warps_per_row;
    for (unsigned i = 0; i < a.warps_per_row; ++i) amax = fmaxf(amax, mine[i]);
  }
  if (!live) return;
  amax = fmaxf(amax, AMAX_FLOOR);
  const float inv = E4M3_MAX / amax;
  if (t == 0) a.scales[row] = amax / E4M3_MAX;

#pragma unroll
  for (int u = 0; u < ROW_CHUNKS; ++u) {
    const unsigned c = 8 * (t + u * per_row);
    if (c < a.cols) {
      const float* v = w[u];
      uint2 packed;
      packed.x = fp8x4(v[0] * inv, v[1] * inv, v[2] * inv, v[3] * inv);
      packed.y = fp8x4(v[4] * inv, v[5] * inv, v[6] * inv, v[7] * inv);
      *reinterpret_cast<uint2*>(a.out + first + c) = packed;
    }
  }
}

#define INT8_TILE 128
#define INT8_SCALE 128.0f

struct QuantizeInt8Args {
  signed char* out;  // tile images of [rows, cols]: ceil(rows / 128) * cols / 128 of 16 KB
  float* scales;     // [ceil(rows / 128), cols / 128]
  const void* x;     // [rows, cols]
  unsigned rows;
  unsigned cols;  // multiple of 128
  int x_dt;
};

// cvt.rni.sat.s8.f32 of four floats, packed `a` in the lowest byte.
__device__ __forceinline__ unsigned s8x4(float a, float b, float c, float d) {
  const float v[4] = {a, b, c, d};
  unsigned r = 0;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    unsigned q;
    asm("cvt.rni.sat.s8.f32 %0, %1;" : "=r"(q) : "f"(v[i]));
    r |= (q & 0xffu) << (8 * i);
  }
  return r;
}

// One 256-thread CTA per tile (grid: cols / 128, ceil(rows / 128)); per step a warp reads two
// whole tile rows, eight elements per lane, so the loads coalesce; rows past the end count as
// zeros (as upstream's loader zero-fills them) and are stored as zeros.
extern "C" __global__ void quantize_int8_blocks(const QuantizeInt8Args a) {
  __shared__ float warp_amax[8];
  const unsigned t = threadIdx.x, lane = t & 31, warp = t >> 5;
  const u64 row0 = (u64)blockIdx.y * INT8_TILE + (t >> 4);
  const u64 col = (u64)blockIdx.x * INT8_TILE + 8 * (t & 15);
  float v[8][8];
  float amax = AMAX_FLOOR;
#pragma unroll
  for (int s = 0; s < 8; ++s) {
    const u64 row = row0 + 16 * s;
    if (row < a.rows) {
      load8(a.x, a.x_dt, row * a.cols + col, v[s]);
    } else {
#pragma unroll
      for (int k = 0; k < 8; ++k) v[s][k] = 0.0f;
    }
#pragma unroll
    for (int k = 0; k < 8; ++k) amax = fmaxf(amax, fabsf(v[s][k]));
  }
  amax = warp_max(amax);
  if (lane == 0) warp_amax[warp] = amax;
  __syncthreads();
#pragma unroll
  for (int w = 0; w < 8; ++w) amax = fmaxf(amax, warp_amax[w]);
  const float inv = INT8_SCALE / amax;
  if (t == 0) a.scales[(u64)blockIdx.y * gridDim.x + blockIdx.x] = amax / INT8_SCALE;
  // This lane's 8 bytes: half (t % 2) of 16-byte chunk (t % 16) / 2 of tile row t / 16 + 16 s.
  signed char* tile = a.out + ((u64)blockIdx.y * gridDim.x + blockIdx.x) * (INT8_TILE * INT8_TILE);
  const unsigned chunk = (t & 15) >> 1, half = t & 1;
#pragma unroll
  for (int s = 0; s < 8; ++s) {
    const unsigned r = (t >> 4) + 16 * s;
    const float* w = v[s];
    uint2 packed;
    packed.x = s8x4(w[0] * inv, w[1] * inv, w[2] * inv, w[3] * inv);
    packed.y = s8x4(w[4] * inv, w[5] * inv, w[6] * inv, w[7] * inv);
    *reinterpret_cast<uint2*>(tile + r * 128 + ((chunk ^ (r & 7)) << 4) + 8 * half) = packed;
  }
}

struct Int8TilesArgs {
  signed char* out;     // tile images of [rows, cols], as quantize_int8_blocks writes them
  const uint4* values;  // row-major int8 [rows, cols]
  unsigned rows;
  unsigned cols;  // multiple of 128
};

// A `-quant` checkpoint's row-major int8 weight rewritten as tile images on the device, so the
// load does not pass over every weight byte on the host. One 256-thread CTA per tile (grid:
// cols / 128, ceil(rows / 128)); step s moves 16-byte chunk t + 256 s of the tile (row / 8,
// chunk % 8), consecutive lanes reading consecutive chunks of a row; rows past the end are zeros.
extern "C" __global__ void int8_tiles(const Int8TilesArgs a) {
  const unsigned t = threadIdx.x;
  const u64 row0 = (u64)blockIdx.y * INT8_TILE;
  const u64 chunks = a.cols / 16;  // a row's 16-byte chunks
  uint4* tile = reinterpret_cast<uint4*>(a.out + ((u64)blockIdx.y * gridDim.x + blockIdx.x) *
                                                     (INT8_TILE * INT8_TILE));
#pragma unroll
  for (int s = 0; s < 4; ++s) {
    const unsigned i = t + 256 * s, r = i >> 3, c = i & 7;
    const u64 row = row0 + r;
    const uint4 v = row < a.rows ? a.values[row * chunks + (u64)blockIdx.x * 8 + c]
                                 : make_uint4(0, 0, 0, 0);
    tile[r * 8 + (c ^ (r & 7))] = v;
  }
}
