// Quantizers of the 8-bit linear layers.
//
// quantize_fp8_rows: per-row FP8 e4m3 for the FP8 linears: weights per output channel (rows of
// W[N, K], once at load) and activations per token (rows of x[M, K], before every GEMM).
//
// out[r, c] = e4m3(x[r, c] * (448 / amax_r)) and scales[r] = amax_r / 448, amax_r = max |x[r, .]|
// floored at 1e-8; the e4m3 conversion rounds to nearest even and saturates at +-448. The host
// reference (shared/tensor/src/fp8.rs) does the same f32 operations, so the two agree bit for bit.
// A row is read once, held in registers (rows.cuh): Wan's 13824-wide FFN inputs take 14 warps.
//
// With `common`, every row takes one given scale instead (the rows of a matrix quantized as a
// whole, which cuBLASLt's FP8 GEMMs need to write an e4m3 output).
//
// fp8_norm_bound / fp8_weight_bound / fp8_hidden_scale: the FFN's hidden activations written by
// its first GEMM straight in e4m3, which cuBLASLt does only with one scale for each operand and
// one for the output, so the scales come from bounds instead of a pass over the values. The norm
// before the FFN, LN(x)·m + a with ||LN(x)|| <= sqrt(K), has |y_c| <= sqrt(K)·max|m| + max|a|
// (one scale for all its rows) and ||y|| <= sqrt(K)·max|m| + ||a||; the layer's output obeys
// |gelu(h)| <= |h| and |h[t, n]| <= ||x_t||·||w_n|| + |b_n| (Cauchy-Schwarz on the dequantized
// operands the GEMM multiplies), so no exact output exceeds bound = max_t ||x_t||·max_n ||w_n|| +
// max|b|. The GEMM's own rounding (its FP8 accumulator keeps ~14 bits) is left out of the bound:
// it moves a sum by far less than the bound's headroom over real outputs (28-50x for the largest
// values of random-weight FFNs, H200 checks),
// and a value that reached 448 would saturate, not overflow. The bounds overshoot typical values by
// about sqrt(K) (a random dot product grows as sqrt(K), Cauchy-Schwarz as K) times a few: e4m3's
// exponent absorbs that, typical values landing near 1 of its 448 range, 2^6 above its smallest
// normal, with e4m3's relative precision intact.
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
  unsigned cols;  // multiple of 8, at most 1024 * warps_per_row
  unsigned warps_per_row;
  unsigned rows_per_block;
  int x_dt;
  const float* common;  // [1]: one scale for every row, or null for each row's amax / 448
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
  if (a.common) amax = *a.common * E4M3_MAX;
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

// An e4m3 byte as a float (FP8 e4m3fn: bias 7, subnormals below 2^-6, no infinities).
__device__ __forceinline__ float e4m3_to_f32(unsigned b) {
  const int e = (b >> 3) & 15, m = b & 7;
  const float v = e ? ldexpf(1.0f + 0.125f * m, e - 7) : ldexpf(0.125f * m, -6);
  return (b & 0x80) ? -v : v;
}

// Rounding slack of the bounds: the norm rounds a value to bf16 (up by at most 2^-8 of it), then
// to e4m3 (2^-4).
#define BOUND_SLACK ((1.0f + 0.00390625f) * (1.0f + 0.0625f))

struct Fp8NormBoundArgs {
  float* out;          // [2]: the rows' one scale, a bound on every dequantized row's 2-norm
  const void* mul;     // [cols] or null (1)
  const void* add;     // [cols] or null (0)
  float mul_offset;
  int param_dt;
  unsigned cols;
};

// One block of 1024 threads: the bounds of a LayerNorm's output LN(x)·(mul + mul_offset) + add.
extern "C" __global__ void __launch_bounds__(1024) fp8_norm_bound(const Fp8NormBoundArgs a) {
  __shared__ float scratch[32];
  // Without `mul` the norm multiplies by nothing (layer_norm_rows).
  float m = a.mul ? 0.0f : 1.0f, amax = 0.0f, ss = 0.0f;
  for (unsigned c = threadIdx.x; c < a.cols; c += 1024) {
    if (a.mul) m = fmaxf(m, fabsf(load_elem(a.mul, a.param_dt, c) + a.mul_offset));
    if (a.add) {
      const float v = load_elem(a.add, a.param_dt, c);
      amax = fmaxf(amax, fabsf(v));
      ss += v * v;
    }
  }
  m = block_reduce<true>(m, scratch);
  amax = block_reduce<true>(amax, scratch);
  ss = block_sum(ss, scratch);
  if (threadIdx.x == 0) {
    const float r = sqrtf((float)a.cols) * m;
    a.out[0] = fmaxf((r + amax) * BOUND_SLACK, AMAX_FLOOR) / E4M3_MAX;
    a.out[1] = (r + sqrtf(ss)) * BOUND_SLACK;
  }
}

struct Fp8WeightBoundArgs {
  float* bound;          // [2], zeroed: max_n ||w_n||, max_n |b_n|
  const u8* values;      // [rows, cols] e4m3
  const float* scales;   // [rows]
  const void* bias;      // [rows] of bias_dt, or null
  int bias_dt;
  unsigned rows;
  unsigned cols;         // multiple of 4
};

// Grid (ceil(rows / 8)), 256 threads: a warp per row of an FP8 layer's weight, at load. The
// maxima are non-negative floats, whose bit patterns order as integers do.
extern "C" __global__ void fp8_weight_bound(const Fp8WeightBoundArgs a) {
  const unsigned row = blockIdx.x * 8 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (row >= a.rows) return;
  const unsigned* w = (const unsigned*)(a.values + (u64)row * a.cols);
  float sum = 0.0f;
  for (unsigned i = lane; i < a.cols / 4; i += 32) {
    const unsigned q = w[i];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float v = e4m3_to_f32((q >> (8 * j)) & 0xff);
      sum += v * v;
    }
  }
  sum = warp_sum(sum);
  if (lane == 0) {
    atomicMax((int*)a.bound, __float_as_int(sqrtf(sum) * a.scales[row]));
    if (a.bias) atomicMax((int*)a.bound + 1, __float_as_int(fabsf(load_elem(a.bias, a.bias_dt, row))));
  }
}

struct Fp8HiddenScaleArgs {
  float* out_scale;        // [1]: 448 / bound, the GEMM's output scale
  float* scales;           // [rows]: bound / 448, the hidden rows' scales
  float* common;           // [2]: bound / 448, a bound on every hidden row's 2-norm
  const float* x_common;   // [2] of the input rows (fp8_norm_bound)
  const float* w_bound;    // [2] from fp8_weight_bound
  unsigned rows;
  unsigned cols;           // the hidden rows' width
};

// Grid (ceil(rows / 1024)), 1024 threads: the hidden rows' scales under the bound.
extern "C" __global__ void __launch_bounds__(1024) fp8_hidden_scale(const Fp8HiddenScaleArgs a) {
  const float b = fmaxf(a.x_common[1] * a.w_bound[0] + a.w_bound[1], 1e-30f);
  const float s = b / E4M3_MAX;
  const unsigned r = blockIdx.x * 1024 + threadIdx.x;
  if (r < a.rows) a.scales[r] = s;
  if (r == 0) {
    *a.out_scale = E4M3_MAX / b;
    a.common[0] = s;
    a.common[1] = sqrtf((float)a.cols) * b * BOUND_SLACK;
  }
}
