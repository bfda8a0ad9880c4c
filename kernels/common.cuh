// Helpers shared by every kernel file. NVRTC compiles without the CUDA toolkit's headers, so the
// few types and constants the kernels need are defined here; the Rust side hands this file to
// NVRTC as an in-memory header and hashes it into every compile-cache key.
#pragma once

typedef unsigned long long u64;
typedef long long i64;
typedef unsigned char u8;

// math.h's INFINITY is not available under NVRTC without system headers.
#define TURBINE_INF __int_as_float(0x7f800000)

// Element indices are 64-bit: a VAE activation chunk can exceed 2^31 elements.
#define GRID_STRIDE(i, n)                                                                  \
  for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < (u64)(n);                  \
       i += (u64)blockDim.x * gridDim.x)

// The statement after (i, n) for every i < n, grid-stride, with i an unsigned where n ≤ 2^31 − 1
// (so i plus the grid's threads stays below 2^32) and a u64 otherwise: index arithmetic on 32-bit
// digits takes several times fewer instructions than on 64-bit ones.
#define GRID_STRIDE_NARROW(i, n, ...)                                                          \
  if ((u64)(n) <= 0x7fffffffull) {                                                             \
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < (unsigned)(n);                \
         i += blockDim.x * gridDim.x) {                                                        \
      __VA_ARGS__;                                                                             \
    }                                                                                          \
  } else {                                                                                     \
    GRID_STRIDE(i, n) { __VA_ARGS__; }                                                         \
  }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum (or with MAX the maximum) of `v` over the whole block, returned to every thread. blockDim.x
// must be a multiple of 32 (at most 1024); `scratch` holds 32 floats. The leading barrier lets
// callers reuse `scratch` for consecutive reductions. The maximum is of non-negative values (the
// absent warps' slots read 0).
template <bool MAX>
__device__ __forceinline__ float block_reduce(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = MAX ? warp_max(v) : warp_sum(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < (int)(blockDim.x >> 5) ? scratch[lane] : 0.0f;
  return MAX ? warp_max(v) : warp_sum(v);
}

__device__ __forceinline__ float block_sum(float v, float* scratch) {
  return block_reduce<false>(v, scratch);
}

// `m` with the magnitudes of eight bf16 values: two 16-bit maxima of the bits with the signs
// cleared (non-negative bf16 values order as their bits do).
__device__ __forceinline__ unsigned abs_max_bf16x8(unsigned m, uint4 y) {
  m = __vmaxu2(m, y.x & 0x7fff7fffu);
  m = __vmaxu2(m, y.y & 0x7fff7fffu);
  m = __vmaxu2(m, y.z & 0x7fff7fffu);
  return __vmaxu2(m, y.w & 0x7fff7fffu);
}

// The larger of `abs_max_bf16x8`'s two maxima as a float (bf16 is the top half of an f32), whose
// bits order as the values do, so an `atomicMax` on them keeps the largest.
__device__ __forceinline__ float abs_max_value(unsigned m) {
  return __uint_as_float(max(m & 0xffffu, m >> 16) << 16);
}

// ---- element types ----
// Memory-bound kernels take their tensors' element types as run-time codes in the args struct
// (a warp-uniform branch per access costs nothing next to the memory traffic), so one kernel
// serves f32 and bf16 tensors and mixes of them (an f32 residual plus a bf16 branch).
#define DT_F32 0
#define DT_BF16 1

typedef unsigned short bf16_t;

__device__ __forceinline__ float bf16_to_f32(bf16_t h) {
  return __uint_as_float(((unsigned)h) << 16);
}

// Round to nearest even, as PyTorch's `.to(torch.bfloat16)`.
__device__ __forceinline__ bf16_t f32_to_bf16(float f) {
  bf16_t r;
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(f));
  return r;
}

// Two floats as a bf16 pair: `lo` in the low half (the lower address / column).
__device__ __forceinline__ unsigned pack_bf16x2(float lo, float hi) {
  unsigned r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}

// Eight bf16 (16 bytes, the lower address in each word's low half) as floats.
__device__ __forceinline__ void unpack_bf16x8(uint4 u, float* x) {
  const unsigned w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    x[2 * k] = __uint_as_float(w[k] << 16);
    x[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
  }
}

__device__ __forceinline__ float load_elem(const void* p, int dt, u64 i) {
  return dt == DT_BF16 ? bf16_to_f32(((const bf16_t*)p)[i]) : ((const float*)p)[i];
}

__device__ __forceinline__ void store_elem(void* p, int dt, u64 i, float v) {
  if (dt == DT_BF16) {
    ((bf16_t*)p)[i] = f32_to_bf16(v);
  } else {
    ((float*)p)[i] = v;
  }
}

// Two floats as an FP8 e4m3 pair, `lo` in the low byte (the lower address), rounded to nearest
// even and saturating at ±448. The conversion exists from sm_89; the backend runs FP8 code only
// there, but every module compiles for every GPU, so older targets get a trap.
__device__ __forceinline__ unsigned e4m3x2(float lo, float hi) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  unsigned short r;
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(r) : "f"(hi), "f"(lo));
  return r;
#else
  __trap();
  return 0;
#endif
}

// Four floats as FP8 e4m3 bytes, `a` in the lowest.
__device__ __forceinline__ unsigned fp8x4(float a, float b, float c, float d) {
  return e4m3x2(a, b) | (e4m3x2(c, d) << 16);
}
