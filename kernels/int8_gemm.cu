// Block-scaled INT8 GEMM of TurboDiffusion's W8A8 linears (upstream `gemm_cuda`,
// shared/reference/turbodiffusion.md §3, kernels.md §8.1):
//
//   out[i, j] = bf16( Σ_kb acc_kb[i, j] · (xs[i/128, kb] · ws[j/128, kb]) + bias[j] )
//
// with x [m, k] and w [n, k] int8 in 128x128 tiles of their quantizer (kernels/quant.cu) and acc_kb
// the exact int32 dot product over K block kb. The CTA tile is 128x128x128, so a CTA's rows and
// columns each fall in one scale tile and a K step is one scale block: after each K step one scalar
// xs·ws promotes the int32 accumulators into f32 by one FMA each (upstream's per-K-block
// promotion). The f32 operations are explicit (__fmul_rn, __fmaf_rn, __fadd_rn) so that the host
// reference (shared/tensor/src/int8.rs) repeats them exactly.
//
// mma.sync m16n8k32 s8 with int32 accumulation (sm_80 and later: the one path on every target),
// 8 warps as 4 (m) x 2 (n) of 32x64, ldmatrix from 128-byte swizzled rows, a 3-stage cp.async
// pipeline (96 KB of shared memory, within sm_89/sm_120's 99 KB). Rows of x and w past m and n are
// zero-filled and their outputs not stored; k % 128 == 0 and n % 8 == 0 are the caller's to check
// (upstream's `can_implement`; the backend refuses such layers with an error).
#include "mma.cuh"

#define BM 128
#define BN 128
#define BK 128
#define STAGES 3
#define THREADS 256
#define GROUP_M 8
#define TILE_BYTES (BM * BK)

struct Int8GemmArgs {
  bf16_t* out;            // [m, n]
  const signed char* x;   // [m, k]
  const signed char* w;   // [n, k]
  const float* x_scales;  // [ceil(m / 128), k / 128]
  const float* w_scales;  // [ceil(n / 128), k / 128]
  const bf16_t* bias;     // [n], or null
  unsigned m;
  unsigned n;  // multiple of 8
  unsigned k;  // multiple of 128
};

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
// Rows row0 .. row0 + 128 of `src` (row stride k bytes), bytes k0 .. k0 + 128, into the swizzled
// tile at shared address `dst`; rows at or past `rows` are zero-filled.
__device__ __forceinline__ void load_tile(unsigned dst, const signed char* src, unsigned row0,
                                          unsigned rows, unsigned k, unsigned k0) {
#pragma unroll
  for (int i = 0; i < TILE_BYTES / 16 / THREADS; ++i) {
    const int idx = threadIdx.x + THREADS * i;
    const int r = idx >> 3, c = idx & 7;
    const bool in = row0 + r < rows;
    const signed char* p = in ? src + (u64)(row0 + r) * k + k0 + 16 * c : src;
    cp_async16(dst + swz128_offset(r, c), p, in ? 16 : 0);
  }
}
#endif

extern "C" __global__ void __launch_bounds__(THREADS, 1) int8_gemm_bf16(const Int8GemmArgs a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  extern __shared__ __align__(128) unsigned char smem[];
  // GROUP_M row tiles sweep the column tiles together, so their x tiles and the weight's column
  // tiles are reused from L2.
  const unsigned tiles_m = (a.m + BM - 1) / BM, tiles_n = (a.n + BN - 1) / BN;
  const unsigned per_group = GROUP_M * tiles_n;
  const unsigned first_m = blockIdx.x / per_group * GROUP_M;
  const unsigned group_m = min(tiles_m - first_m, (unsigned)GROUP_M);
  const unsigned in_group = blockIdx.x % per_group;
  const unsigned tm = first_m + in_group % group_m, tn = in_group / group_m;
  const unsigned m0 = tm * BM, n0 = tn * BN;

  const unsigned base = smem_addr(smem);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int wm = warp >> 1, wn = warp & 1;
  const unsigned steps = a.k / BK;
  const float* xs = a.x_scales + (u64)tm * steps;
  const float* ws = a.w_scales + (u64)tn * steps;

  auto load_stage = [&](unsigned step) {
    const unsigned s = base + (step % STAGES) * 2 * TILE_BYTES;
    load_tile(s, a.x, m0, a.m, a.k, step * BK);
    load_tile(s + TILE_BYTES, a.w, n0, a.n, a.k, step * BK);
  };

  int acc[2][8][4];
  float sum[2][8][4];
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int ni = 0; ni < 8; ++ni)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mi][ni][e] = 0, sum[mi][ni][e] = 0.0f;

#pragma unroll
  for (unsigned s = 0; s < STAGES - 1; ++s) {
    if (s < steps) load_stage(s);
    cp_async_commit();
  }

  for (unsigned step = 0; step < steps; ++step) {
    cp_async_wait<STAGES - 2>();
    // Also: every warp is done with the stage the next load overwrites (read last step).
    __syncthreads();
    if (step + STAGES - 1 < steps) load_stage(step + STAGES - 1);
    cp_async_commit();

    const unsigned sx = base + (step % STAGES) * 2 * TILE_BYTES, sw = sx + TILE_BYTES;
#pragma unroll
    for (int ks = 0; ks < BK / 32; ++ks) {
      // A: matrices (rows 0-7, k 0-15), (8-15, 0-15), (0-7, 16-31), (8-15, 16-31) of a 16x32
      // fragment. B: per 16 columns, (n 0-7, k 0-15), (0-7, 16-31), (8-15, 0-15), (8-15, 16-31):
      // b0, b1 of two n8 fragments.
      unsigned af[2][4], bfr[4][4];
#pragma unroll
      for (int mi = 0; mi < 2; ++mi) {
        const int r = wm * 32 + mi * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
        ldmatrix_x4(af[mi], sx + swz128_offset(r, ks * 2 + (lane >> 4)));
      }
#pragma unroll
      for (int p = 0; p < 4; ++p) {
        const int r = wn * 64 + p * 16 + (lane & 7) + (lane >> 4) * 8;
        ldmatrix_x4(bfr[p], sw + swz128_offset(r, ks * 2 + ((lane >> 3) & 1)));
      }
#pragma unroll
      for (int mi = 0; mi < 2; ++mi)
#pragma unroll
        for (int ni = 0; ni < 8; ++ni)
          mma_s8(acc[mi][ni], af[mi], bfr[ni >> 1][(ni & 1) * 2], bfr[ni >> 1][(ni & 1) * 2 + 1]);
    }

    // |acc| <= 128 * 128 * 128 = 2^21: the conversion is exact.
    const float scale = __fmul_rn(__ldg(xs + step), __ldg(ws + step));
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
      for (int ni = 0; ni < 8; ++ni)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          sum[mi][ni][e] = __fmaf_rn((float)acc[mi][ni][e], scale, sum[mi][ni][e]);
          acc[mi][ni][e] = 0;
        }
  }

  // Accumulator e of an m16n8 fragment: row (lane / 4) + 8 (e / 2), column 2 (lane % 4) + e % 2.
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int ni = 0; ni < 8; ++ni) {
      const unsigned col = n0 + wn * 64 + ni * 8 + (lane & 3) * 2;
      if (col >= a.n) continue;
      const float b0 = a.bias ? bf16_to_f32(a.bias[col]) : 0.0f;
      const float b1 = a.bias ? bf16_to_f32(a.bias[col + 1]) : 0.0f;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const unsigned row = m0 + wm * 32 + mi * 16 + (lane >> 2) + 8 * h;
        if (row >= a.m) continue;
        float v0 = sum[mi][ni][2 * h], v1 = sum[mi][ni][2 * h + 1];
        if (a.bias) v0 = __fadd_rn(v0, b0), v1 = __fadd_rn(v1, b1);
        *reinterpret_cast<unsigned*>(a.out + (u64)row * a.n + col) = pack_bf16x2(v0, v1);
      }
    }
#endif
}
