// Block-scaled INT8 GEMM of TurboDiffusion's W8A8 linears (upstream `gemm_cuda`,
// shared/reference/turbodiffusion.md §3, kernels.md §8.1):
//
//   out[i, j] = bf16( Σ_kb acc_kb[i, j] · (xs[i/128, kb] · ws[j/128, kb]) + bias[j] )
//
// or, added into a residual stream (a DiT branch's last layer, gated per output channel):
//
//   out[i, j] = bf16( (Σ_kb … + bias[j]) · gate[j] + residual[i, j] )
//
// with x [m, k] and w [n, k] int8 in 128x128 tiles of their quantizer (kernels/quant.cu) and acc_kb
// the exact int32 dot product over K block kb. The CTA tile is 128x128 and a K step is 128 deep,
// so a CTA's rows and columns each fall in one scale tile and a K step is one scale block: after
// each K step one scalar xs·ws promotes the int32 accumulators into f32 by one FMA each (upstream's
// per-K-block promotion). The f32 operations are explicit (__fmul_rn, __fmaf_rn, __fadd_rn) so
// that the host reference (shared/tensor/src/int8.rs) repeats them exactly.
//
// Operands arrive as tile images (`tile_offset` in shared/tensor/src/cuda/int8.rs): tile (t, kb),
// rows 128t .. 128t + 127 and bytes 128kb .. 128kb + 127, is 16 KB at offset (t·k/128 + kb)·16384,
// row r's 16-byte chunk c at r·128 + ((c ^ (r % 8)) · 16) (the 128-byte swizzle that both
// ldmatrix and wgmma read without bank conflicts); rows past the matrix are zeros. A K step's
// operands are thus two contiguous 16 KB copies, and rows past m and n need no guard until the
// store. k % 128 == 0 and n % 8 == 0 are the caller's to check (upstream's `can_implement`; the
// backend refuses such layers with an error).
//
// Two kernels: int8_gemm_sm90 (wgmma, sm_90a) and int8_gemm_bf16 (mma.sync m16n8k32, sm_80 and
// later: every other target).
#include "mma.cuh"
#include "wgmma.cuh"

#define BM 128
#define BN 128
#define BK 128
#define GROUP_M 8
#define TILE_BYTES (BM * BK)

struct Int8GemmArgs {
  bf16_t* out;            // [m, n]
  const signed char* x;   // tile images of [m, k]
  const signed char* w;   // tile images of [n, k]
  const float* x_scales;  // [ceil(m / 128), k / 128]
  const float* w_scales;  // [ceil(n / 128), k / 128]
  const bf16_t* bias;     // [n], or null
  const bf16_t* residual; // [m, n] added to the output, or null
  const float* gate;      // [n] multiplying the output before the residual, or null (1)
  unsigned m;
  unsigned n;  // multiple of 8
  unsigned k;  // multiple of 128
};

// Output tile `t` as (row tile, column tile): GROUP_M row tiles sweep the column tiles together,
// so their x tiles and the weight's column tiles are reused from L2.
__device__ __forceinline__ void tile_of(unsigned t, unsigned m, unsigned n, unsigned& tm,
                                        unsigned& tn) {
  const unsigned tiles_m = (m + BM - 1) / BM, tiles_n = (n + BN - 1) / BN;
  const unsigned per_group = GROUP_M * tiles_n;
  const unsigned first_m = t / per_group * GROUP_M;
  const unsigned group_m = min(tiles_m - first_m, (unsigned)GROUP_M);
  const unsigned in_group = t % per_group;
  tm = first_m + in_group % group_m;
  tn = in_group / group_m;
}

// The bias pair (bf16x2) of output columns `col`, `col + 1`, or 0 past n or without a bias. Loaded
// before the main loop: loads in the epilogue would wait one by one behind its stores (`out` may
// alias `bias` as far as the compiler knows).
__device__ __forceinline__ unsigned bias_pair(const Int8GemmArgs& a, unsigned col) {
  return a.bias && col < a.n ? __ldg(reinterpret_cast<const unsigned*>(a.bias + col)) : 0u;
}

// What one m16n8 fragment's stores add: the residual pairs (bf16x2) of its rows `row` and
// `row + 8` at column pair `col` and the gate pair of those columns. Loaded for all of a thread's
// fragments before the first store, so that the loads go out together rather than each behind
// the stores before it (`out` may alias `residual` as far as the compiler knows).
struct Addend {
  unsigned r[2];
  float g0, g1;
};

__device__ __forceinline__ Addend addend(const Int8GemmArgs& a, unsigned row, unsigned col) {
  Addend d{{0u, 0u}, 1.0f, 1.0f};
  if (!a.residual || col >= a.n) return d;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const unsigned r = row + 8 * h;
    if (r < a.m) d.r[h] = __ldg(reinterpret_cast<const unsigned*>(a.residual + (u64)r * a.n + col));
  }
  if (a.gate) {
    const float2 g = __ldg(reinterpret_cast<const float2*>(a.gate + col));
    d.g0 = g.x;
    d.g1 = g.y;
  }
  return d;
}

// Rows `row` and `row + 8` of one m16n8 accumulator fragment (v[0..1], v[2..3]) at column pair
// `col`, plus the bias pair `bias`, then (with a residual) times the gate plus the residual of
// `add`, rounded to bf16; columns at or past n and rows at or past m are not stored.
__device__ __forceinline__ void store_fragment(const Int8GemmArgs& a, unsigned row, unsigned col,
                                               const float* v, unsigned bias, const Addend& add) {
  if (col >= a.n) return;
  const float b0 = __uint_as_float(bias << 16), b1 = __uint_as_float(bias & 0xffff0000u);
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const unsigned r = row + 8 * h;
    if (r >= a.m) continue;
    float v0 = v[2 * h], v1 = v[2 * h + 1];
    if (a.bias) v0 = __fadd_rn(v0, b0), v1 = __fadd_rn(v1, b1);
    if (a.residual) {
      v0 = __fmaf_rn(v0, add.g0, __uint_as_float(add.r[h] << 16));
      v1 = __fmaf_rn(v1, add.g1, __uint_as_float(add.r[h] & 0xffff0000u));
    }
    *reinterpret_cast<unsigned*>(a.out + (u64)r * a.n + col) = pack_bf16x2(v0, v1);
  }
}

// ---- sm_90a: wgmma ----
//
// Persistent: grid min(tiles, SMs), 384 threads, I8_SMEM bytes of dynamic shared memory. Warp 8's
// lane 0 (the producer) streams every K step of the CTA's tiles, x tile and w tile by one bulk
// copy each, into a ring of I8_STAGES stages; it runs on into the next tile while the consumers
// store this one. Warpgroups 0 and 1 (the consumers) compute rows 0-63 and 64-127 of the tile: per
// K step four m64n128k32 s8 wgmmas into a fresh int32 accumulator, then the promotion. A
// consumer's two accumulators alternate: step s + 1's wgmmas run while step s is promoted.
#define I8_STAGES 6
#define I8_STAGE_BYTES (2 * TILE_BYTES)
#define I8_SMEM (I8_STAGES * I8_STAGE_BYTES + 1024)
#define I8_PRODUCER_REGS 40
#define I8_CONSUMER_REGS 232

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
// One K step: acc = A (64 rows at shared address `xa`) · B (128 rows at `wb`)ᵀ over 128 bytes of K.
__device__ __forceinline__ void issue_step(int* acc, unsigned xa, unsigned wb) {
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < BK / 32; ++kk)
    wgmma_s8(acc, smem_desc(xa + kk * 32, 16, 1024), smem_desc(wb + kk * 32, 16, 1024), kk);
  wgmma_commit();
}

// Waits for global K step `it`'s stage and issues its wgmmas into `acc`.
__device__ __forceinline__ void issue_k(int* acc, unsigned it, unsigned base, unsigned xoff,
                                        unsigned full0) {
  const unsigned st = it % I8_STAGES, stage = base + st * I8_STAGE_BYTES;
  mbar_wait(full0 + 8 * st, (it / I8_STAGES) & 1);
  issue_step(acc, stage + xoff, stage + TILE_BYTES);
}

// Once global K step `it`'s wgmmas are done: releases its stage and adds acc · (its scale) into
// sum, element by element (|acc| <= 2^21: the conversion is exact).
__device__ __forceinline__ void retire(float* sum, int* acc, unsigned it, const float* stage_scale,
                                       unsigned empty0) {
  pin(acc);
  const unsigned st = it % I8_STAGES;
  const float scale = stage_scale[st];
  mbar_arrive(empty0 + 8 * st);
#pragma unroll
  for (int i = 0; i < 64; ++i) sum[i] = __fmaf_rn((float)acc[i], scale, sum[i]);
}
#endif

extern "C" __global__ void __launch_bounds__(384, 1) int8_gemm_sm90(const Int8GemmArgs a) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ u8 smem_raw[];
  __shared__ __align__(8) u64 bars[2 * I8_STAGES];
  // Per stage: xs · ws of its K step, written by the producer before it arms the stage.
  __shared__ float stage_scale[I8_STAGES];
  const unsigned base = (smem_addr(smem_raw) + 1023u) & ~1023u;
  const unsigned full0 = smem_addr(bars), empty0 = full0 + 8 * I8_STAGES;
  const unsigned steps = a.k / BK;
  const unsigned tiles = ((a.m + BM - 1) / BM) * ((a.n + BN - 1) / BN);
  const int wg = threadIdx.x >> 7;
  if (threadIdx.x == 0) {
    for (int s = 0; s < I8_STAGES; ++s) {
      mbar_init(full0 + 8 * s, 1);
      mbar_init(empty0 + 8 * s, 256);
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();

  if (wg == 2) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(I8_PRODUCER_REGS));
    if (threadIdx.x != 256) return;
    unsigned it = 0;
    for (unsigned t = blockIdx.x; t < tiles; t += gridDim.x) {
      unsigned tm, tn;
      tile_of(t, a.m, a.n, tm, tn);
      const signed char* xg = a.x + (u64)tm * steps * TILE_BYTES;
      const signed char* wgl = a.w + (u64)tn * steps * TILE_BYTES;
      const float* xs = a.x_scales + (u64)tm * steps;
      const float* ws = a.w_scales + (u64)tn * steps;
      for (unsigned s = 0; s < steps; ++s, ++it) {
        const unsigned st = it % I8_STAGES, stage = base + st * I8_STAGE_BYTES;
        const float scale = __fmul_rn(__ldg(xs + s), __ldg(ws + s));
        if (it >= I8_STAGES) mbar_wait(empty0 + 8 * st, ((it / I8_STAGES) - 1) & 1);
        stage_scale[st] = scale;
        mbar_expect(full0 + 8 * st, I8_STAGE_BYTES);
        bulk_copy(stage, xg + (u64)s * TILE_BYTES, TILE_BYTES, full0 + 8 * st);
        bulk_copy(stage + TILE_BYTES, wgl + (u64)s * TILE_BYTES, TILE_BYTES, full0 + 8 * st);
      }
    }
    return;
  }

  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(I8_CONSUMER_REGS));
  const int warp = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31;
  // This warpgroup's 64 rows of a stage's x tile.
  const unsigned xoff = wg * (TILE_BYTES / 2);
  int acc0[64], acc1[64];
  float sum[64];
  unsigned it = 0;
  for (unsigned t = blockIdx.x; t < tiles; t += gridDim.x) {
    unsigned tm, tn;
    tile_of(t, a.m, a.n, tm, tn);
    const unsigned col0 = tn * BN + 2 * (lane & 3);
    unsigned bias[16];
#pragma unroll
    for (int j = 0; j < 16; ++j) bias[j] = bias_pair(a, col0 + 8 * j);
#pragma unroll
    for (int i = 0; i < 64; ++i) sum[i] = 0.0f;
    // K steps alternate between acc0 and acc1: step s + 1 is issued before step s is promoted.
    // `it` counts K steps over all of this CTA's tiles, as the producer's does.
    issue_k(acc0, it, base, xoff, full0);
    unsigned s = 0;
    for (; s + 2 < steps; s += 2) {
      issue_k(acc1, it + s + 1, base, xoff, full0);
      wgmma_wait<1>();
      retire(sum, acc0, it + s, stage_scale, empty0);
      issue_k(acc0, it + s + 2, base, xoff, full0);
      wgmma_wait<1>();
      retire(sum, acc1, it + s + 1, stage_scale, empty0);
    }
    if (s + 1 < steps) {
      issue_k(acc1, it + s + 1, base, xoff, full0);
      wgmma_wait<1>();
      retire(sum, acc0, it + s, stage_scale, empty0);
      wgmma_wait<0>();
      retire(sum, acc1, it + s + 1, stage_scale, empty0);
    } else {
      wgmma_wait<0>();
      retire(sum, acc0, it + s, stage_scale, empty0);
    }
    it += steps;

    // Accumulator fragment j (of 16) of warp `warp`: rows 16·warp + lane/4 (+ 8), columns
    // 8j + 2·(lane % 4) + (0, 1).
    const unsigned row = tm * BM + wg * 64 + warp * 16 + (lane >> 2);
    Addend add[16];
#pragma unroll
    for (int j = 0; j < 16; ++j) add[j] = addend(a, row, col0 + 8 * j);
#pragma unroll
    for (int j = 0; j < 16; ++j)
      store_fragment(a, row, col0 + 8 * j, sum + 4 * j, bias[j], add[j]);
  }
#else
  __trap();
#endif
}

// ---- portable: mma.sync (sm_80 and later) ----
//
// One CTA a tile (GROUP_M order), 256 threads: 8 warps as 4 (m) x 2 (n) of 32x64, ldmatrix from the
// swizzled tile images, a 3-stage cp.async pipeline (96 KB of shared memory, within sm_89/sm_120's
// 99 KB).
#define STAGES 3
#define THREADS 256

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
// The 16 KB tile image at `src` into shared memory at `dst`.
__device__ __forceinline__ void load_tile(unsigned dst, const signed char* src) {
#pragma unroll
  for (int i = 0; i < TILE_BYTES / 16 / THREADS; ++i) {
    const int idx = threadIdx.x + THREADS * i;
    cp_async16(dst + 16 * idx, src + 16 * idx, 16);
  }
}
#endif

extern "C" __global__ void __launch_bounds__(THREADS, 1) int8_gemm_bf16(const Int8GemmArgs a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  extern __shared__ __align__(128) unsigned char smem[];
  unsigned tm, tn;
  tile_of(blockIdx.x, a.m, a.n, tm, tn);

  const unsigned base = smem_addr(smem);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int wm = warp >> 1, wn = warp & 1;
  const unsigned steps = a.k / BK;
  const float* xs = a.x_scales + (u64)tm * steps;
  const float* ws = a.w_scales + (u64)tn * steps;
  const signed char* xg = a.x + (u64)tm * steps * TILE_BYTES;
  const signed char* wgl = a.w + (u64)tn * steps * TILE_BYTES;

  auto load_stage = [&](unsigned step) {
    const unsigned s = base + (step % STAGES) * 2 * TILE_BYTES;
    load_tile(s, xg + (u64)step * TILE_BYTES);
    load_tile(s + TILE_BYTES, wgl + (u64)step * TILE_BYTES);
  };

  const unsigned col0 = tn * BN + wn * 64 + (lane & 3) * 2;
  unsigned bias[8];
#pragma unroll
  for (int ni = 0; ni < 8; ++ni) bias[ni] = bias_pair(a, col0 + ni * 8);
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
  const unsigned row0 = tm * BM + wm * 32 + (lane >> 2);
  Addend add[2][8];
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int ni = 0; ni < 8; ++ni) add[mi][ni] = addend(a, row0 + mi * 16, col0 + ni * 8);
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int ni = 0; ni < 8; ++ni)
      store_fragment(a, row0 + mi * 16, col0 + ni * 8, sum[mi][ni], bias[ni], add[mi][ni]);
#endif
}
