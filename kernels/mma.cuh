// Warp-level tensor-core building blocks (mma.sync, ldmatrix; sm_80 and later) of the portable
// kernels.
#pragma once
#include "async.cuh"

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
// Byte offset of 16-byte chunk `c` of row `r` in a swizzled tile of `D` bf16 per row ([rows][2D B],
// D = 64 or 128).
template <int D = 128>
__device__ __forceinline__ unsigned fm_offset(int r, int c) {
  return r * (2 * D) + ((c ^ (r & 7)) << 4);
}

// Byte offset of 16-byte chunk `c` (of 8) of row `r` in a swizzled [rows][128 B] tile: the eight
// rows one ldmatrix matrix reads sit in eight different bank groups.
__device__ __forceinline__ unsigned swz128_offset(int r, int c) {
  return r * 128 + ((c ^ (r & 7)) << 4);
}

__device__ __forceinline__ void ldmatrix_x4(unsigned* d, unsigned addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
               : "r"(addr));
}

__device__ __forceinline__ void ldmatrix_x4_trans(unsigned* d, unsigned addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
               : "r"(addr));
}

// d (16x8, f32) += a (16x16, bf16) · b (16x8, bf16).
__device__ __forceinline__ void mma_bf16(float* d, const unsigned* a, unsigned b0, unsigned b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// acc (16 x 128, f32: sixteen m16n8 C fragments) += a (a 16 x 16 A fragment) · rows k0 .. k0 + 15
// of the bf16 B tile [k][128] at shared address `tile`, stored k-major in fm_offset rows of
// 256 B and read with ldmatrix.trans.
__device__ __forceinline__ void mma_k16_n128(float* acc, const unsigned* a, unsigned tile, int k0) {
  const int lane = threadIdx.x & 31, m = lane >> 3;
#pragma unroll
  for (int dp = 0; dp < 8; ++dp) {
    unsigned b[4];
    ldmatrix_x4_trans(b, tile + fm_offset(k0 + (m & 1) * 8 + (lane & 7), 2 * dp + (m >> 1)));
    mma_bf16(acc + 8 * dp, a, b[0], b[1]);
    mma_bf16(acc + 8 * dp + 4, a, b[2], b[3]);
  }
}

// d (16x8, s32) += a (16x32, s8) · b (32x8, s8).
__device__ __forceinline__ void mma_s8(int* d, const unsigned* a, unsigned b0, unsigned b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
#endif
