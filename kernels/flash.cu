// Dense flash attention for bf16 q/k/v with head dim 128 on Hopper tensor cores (wgmma, sm_90a):
// softmax(scale · q kᵀ) v with an online softmax, f32 accumulation, bf16 output.
//
// Tensors are [L, H, 128] row-major (the DiT's layout after the head split): no transposes before
// or after. One CTA takes 128 query rows of one head with two consumer warpgroups of 64 rows
// each; both share every 128-key K/V tile, which a producer warpgroup stages with cp.async into
// shared memory, three stages deep (the next tiles load while this one computes).
//
// Per tile and warpgroup: S = Q Kᵀ is 8 wgmma m64n128k16 (Q and K from shared memory, both
// K-major), the online softmax runs on S in registers (exp2 with the scale folded in), and
// O += P V is 8 wgmma m64n128k16 with P from registers as bf16 and V from shared memory read
// MN-major (transposed by the instruction). Keys past Lk score -inf; query rows past Lq are
// computed on zero-filled rows and not stored.
//
// Shared-memory tiles use the 128-byte swizzle wgmma expects: a [rows, 128] bf16 tile is two
// [rows, 64] halves (one 128-byte row each), and the 16-byte chunk c of row r sits at chunk
// c ^ (r % 8). Every tile starts 1024-byte aligned, so the hardware's swizzle (address bits 4-6
// XOR bits 7-9) sees the same pattern the loads wrote.
#include "common.cuh"

#define FA_D 128
#define FA_BQ 128
#define FA_BK 128
// Two consumer warpgroups and a producer warpgroup: registers are allocated per warpgroup, and
// the producer gives most of its share to the consumers.
#define FA_CONSUMERS 256
#define FA_THREADS (FA_CONSUMERS + 128)
#define FA_PRODUCER_REGS 56
#define FA_CONSUMER_REGS 224
#define FA_TILE_BYTES (FA_BK * FA_D * 2)
#define FA_STAGES 3
// Q, then three stages of (K, V), plus slack to align the base to 1024 bytes: 225 KB.
#define FA_SMEM_BYTES ((1 + 2 * FA_STAGES) * FA_TILE_BYTES + 1024)

struct FlashArgs {
  bf16_t* out;        // [Lq, H, 128]
  const bf16_t* q;    // [Lq, H, 128]
  const bf16_t* k;    // [Lk, H, 128]
  const bf16_t* v;    // [Lk, H, 128]
  float scale_log2;   // softmax scale · log2(e)
  int lq;
  int lk;
  int heads;
};

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

__device__ __forceinline__ unsigned smem_addr(const void* p) {
  unsigned a;
  asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
  return a;
}

// 16 bytes global -> shared, zero-filled when `bytes` is 0 (rows past the tensor's end).
__device__ __forceinline__ void cp_async16(unsigned dst, const void* src, int bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(bytes)
               : "memory");
}

__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;" ::: "memory");
}

template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

__device__ __forceinline__ float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// Stages the query rows [row0, row0 + 128) of one head (`g` points at the head's first element,
// rows `stride` elements apart) as two 64-row blocks, one per warpgroup, each [2][64][128 B];
// rows at or past `limit` are zero-filled. Once per CTA, so plain index arithmetic.
__device__ __forceinline__ void load_q(unsigned tile, const bf16_t* g, u64 stride, int row0,
                                       int limit) {
  for (int i = threadIdx.x; i < FA_BQ * 16; i += FA_CONSUMERS) {
    const int r = i >> 4, c = i & 15, br = r & 63;
    const int row = row0 + r;
    const bool inside = row < limit;
    const bf16_t* src = g + (u64)(inside ? row : 0) * stride + c * 8;
    const unsigned dst = tile + (r >> 6) * (64 * 256) + (c >> 3) * (64 * 128) + br * 128 +
                         (((c & 7) ^ (br & 7)) << 4);
    cp_async16(dst, src, inside ? 16 : 0);
  }
}

// mbarriers (shared::cta): the producer warp's loads complete `full[stage]`, the consumer
// warpgroups' releases complete `empty[stage]`; waits poll a phase parity.
__device__ __forceinline__ void mbar_init(unsigned bar, unsigned count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}

__device__ __forceinline__ void mbar_arrive(unsigned bar) {
  asm volatile("{\n.reg .b64 state;\nmbarrier.arrive.shared::cta.b64 state, [%0];\n}\n" ::"r"(bar)
               : "memory");
}

// Arrives on `bar` once all of this thread's earlier cp.async copies have landed.
__device__ __forceinline__ void mbar_arrive_on_copies(unsigned bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];" ::"r"(bar) : "memory");
}

__device__ __forceinline__ void mbar_wait(unsigned bar, unsigned parity) {
  asm volatile(
      "{\n.reg .pred done;\nWAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT;\n}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}

// The producer warpgroup's copy of key/value tile `tile` into the stage at `kb` (K) and
// `kb + FA_TILE_BYTES` (V) ([2][128][128 B] each): thread t of the warpgroup copies 16-byte chunk
// t % 16 of rows t / 16 + 8 i (i < 16), so its shared-memory offsets are fixed (the swizzle phase
// of a row is row % 8, the same for all its rows) and its global addresses advance by eight rows
// per copy. Rows at or past `lk` (only in the last tile) are zero-filled.
__device__ __forceinline__ void load_kv(const bf16_t* kg, const bf16_t* vg, u64 stride,
                                        unsigned kb, int tile, int lk) {
  const int t = threadIdx.x & 127, c = t & 15, r0 = t >> 4;
  const unsigned dst = kb + (c >> 3) * (FA_BK * 128) + r0 * 128 + (((c & 7) ^ r0) << 4);
  const u64 first = ((u64)tile * FA_BK + r0) * stride + c * 8;
  const u64 step = 8 * stride;
  if ((tile + 1) * FA_BK <= lk) {
#pragma unroll 4
    for (int i = 0; i < 16; ++i) {
      cp_async16(dst + i * 1024, kg + first + i * step, 16);
      cp_async16(dst + i * 1024 + FA_TILE_BYTES, vg + first + i * step, 16);
    }
  } else {
#pragma unroll 4
    for (int i = 0; i < 16; ++i) {
      const bool inside = tile * FA_BK + r0 + 8 * i < lk;
      const u64 at = inside ? first + i * step : 0;
      cp_async16(dst + i * 1024, kg + at, inside ? 16 : 0);
      cp_async16(dst + i * 1024 + FA_TILE_BYTES, vg + at, inside ? 16 : 0);
    }
  }
}

// A wgmma shared-memory matrix descriptor with the 128-byte swizzle. `lbo`/`sbo` in bytes: for a
// K-major operand sbo is the step between 8-row groups (lbo unused); for an MN-major one lbo is
// the step between 64-element atoms along MN and sbo the step between 8-row groups along K.
__device__ __forceinline__ u64 smem_desc(unsigned addr, unsigned lbo, unsigned sbo) {
  return (u64)((addr & 0x3FFFF) >> 4) | ((u64)((lbo & 0x3FFFF) >> 4) << 16) |
         ((u64)((sbo & 0x3FFFF) >> 4) << 32) | (1ull << 62);
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
}
// Waits until at most N committed wgmma groups of this warpgroup are still in flight.
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}

// Keeps the compiler from moving accesses of accumulator registers across the asynchronous
// wgmma window (it cannot see that the hardware writes them until the wait).
__device__ __forceinline__ void pin(float* d) {
#pragma unroll
  for (int i = 0; i < 64; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

#define FA_D8(i)                                                                              \
  "+f"(d[(i)]), "+f"(d[(i) + 1]), "+f"(d[(i) + 2]), "+f"(d[(i) + 3]), "+f"(d[(i) + 4]),         \
      "+f"(d[(i) + 5]), "+f"(d[(i) + 6]), "+f"(d[(i) + 7])
#define FA_D64 FA_D8(0), FA_D8(8), FA_D8(16), FA_D8(24), FA_D8(32), FA_D8(40), FA_D8(48), FA_D8(56)
#define FA_REGS64                                                                             \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, " \
  "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, "  \
  "%38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, "  \
  "%56, %57, %58, %59, %60, %61, %62, %63}"

// d[64x128] (+)= A[64x16] · B[16x128]ᵀ, A and B K-major in shared memory.
__device__ __forceinline__ void wgmma_ss(float* d, u64 a, u64 b, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " FA_REGS64
      ", %64, %65, p, 1, 1, 0, 0;\n}\n"
      : FA_D64
      : "l"(a), "l"(b), "r"(accumulate));
}

// d[64x128] += A[64x16] · B[16x128], A from registers (bf16 pairs), B MN-major in shared memory.
__device__ __forceinline__ void wgmma_rs(float* d, const unsigned* a, u64 b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.eq.u32 p, 1, 1;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " FA_REGS64
      ", {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
      : FA_D64
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b));
}

#endif

// One tile's scores `s` (64 rows x 128 keys of this warpgroup, in the wgmma accumulator layout)
// become unnormalised probabilities in place: keys past `lk` are masked, the running row maxima
// `m0`/`m1` (exp2 domain) move up, and the factors that rescale earlier partial sums come back
// in `c0`/`c1` (0 on the first tile). Row sums `l0`/`l1` are updated.
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
__device__ __forceinline__ void online_softmax(float* s, int key0, int lk, float scale_log2,
                                               float& m0, float& m1, float& l0, float& l1,
                                               float& c0, float& c1) {
  const int lane = threadIdx.x & 31;
  if (key0 + FA_BK > lk) {
#pragma unroll
    for (int g = 0; g < 16; ++g) {
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
  for (int g = 0; g < 16; ++g) {
    r0 = fmaxf(r0, fmaxf(s[4 * g], s[4 * g + 1]));
    r1 = fmaxf(r1, fmaxf(s[4 * g + 2], s[4 * g + 3]));
  }
  r0 = fmaxf(r0, __shfl_xor_sync(0xffffffffu, r0, 1));
  r0 = fmaxf(r0, __shfl_xor_sync(0xffffffffu, r0, 2));
  r1 = fmaxf(r1, __shfl_xor_sync(0xffffffffu, r1, 1));
  r1 = fmaxf(r1, __shfl_xor_sync(0xffffffffu, r1, 2));
  const float n0 = fmaxf(m0, r0 * scale_log2), n1 = fmaxf(m1, r1 * scale_log2);
  c0 = ex2(m0 - n0);
  c1 = ex2(m1 - n1);
  m0 = n0;
  m1 = n1;
  float t0 = 0.0f, t1 = 0.0f;
#pragma unroll
  for (int g = 0; g < 16; ++g) {
    s[4 * g] = ex2(fmaf(s[4 * g], scale_log2, -n0));
    s[4 * g + 1] = ex2(fmaf(s[4 * g + 1], scale_log2, -n0));
    s[4 * g + 2] = ex2(fmaf(s[4 * g + 2], scale_log2, -n1));
    s[4 * g + 3] = ex2(fmaf(s[4 * g + 3], scale_log2, -n1));
    t0 += s[4 * g] + s[4 * g + 1];
    t1 += s[4 * g + 2] + s[4 * g + 3];
  }
  l0 = l0 * c0 + t0;
  l1 = l1 * c1 + t1;
}

// P as the A operand of m64k16: step kk takes S columns 16kk..16kk+15 (groups 2kk, 2kk+1).
__device__ __forceinline__ void pack_p(unsigned* p, const float* s) {
#pragma unroll
  for (int g = 0; g < 16; ++g) {
    p[4 * (g >> 1) + 2 * (g & 1)] = pack_bf16x2(s[4 * g], s[4 * g + 1]);
    p[4 * (g >> 1) + 2 * (g & 1) + 1] = pack_bf16x2(s[4 * g + 2], s[4 * g + 3]);
  }
}

// S = Q Kᵀ for this warpgroup's 64 rows against one 128-key tile, issued asynchronously.
__device__ __forceinline__ void issue_qk(float* s, unsigned qa, unsigned kb) {
#pragma unroll
  for (int kk = 0; kk < 8; ++kk) {
    wgmma_ss(s, smem_desc(qa + (kk >> 2) * (64 * 128) + (kk & 3) * 32, 16, 1024),
             smem_desc(kb + (kk >> 2) * (FA_BK * 128) + (kk & 3) * 32, 16, 1024), kk > 0);
  }
  wgmma_commit();
}

// O += P V for one 128-key tile, issued asynchronously.
__device__ __forceinline__ void issue_pv(float* o, const unsigned* p, unsigned vb) {
#pragma unroll
  for (int kk = 0; kk < 8; ++kk) {
    wgmma_rs(o, p + 4 * kk, smem_desc(vb + kk * 16 * 128, FA_BK * 128, 1024));
  }
  wgmma_commit();
}
#endif

// Grid (ceil(Lq / 128), H), FA_THREADS threads, FA_SMEM_BYTES dynamic shared memory.
//
// Warpgroups 0 and 1 are consumers of 64 query rows each; warpgroup 2 is the producer, which
// streams K/V tiles through three shared-memory stages (`full`/`empty` mbarriers), so the
// consumers neither issue loads nor wait on each other. Within a consumer, iteration j issues
// S_j = Q K_jᵀ and O += P_{j-1} V_{j-1} back to back, waits for S_j only, and runs the softmax of
// S_j while P_{j-1} V_{j-1} still occupies the tensor cores. (Explicit ping-pong between the two
// consumers, FlashAttention-3 style, measured no faster here: bench/results notes.)
extern "C" __global__ void __launch_bounds__(FA_THREADS, 1)
    flash_attention_bf16(const FlashArgs a) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ u8 smem_raw[];
  __shared__ __align__(8) u64 bars[2 * FA_STAGES];
  const unsigned base = (smem_addr(smem_raw) + 1023u) & ~1023u;
  const unsigned sq = base;
  const unsigned skv = base + FA_TILE_BYTES;  // stage t: K at skv + 2·t·TILE, V one TILE later
  const unsigned full0 = smem_addr(bars), empty0 = full0 + 8 * FA_STAGES;
#define FA_STAGE(t) ((t) % FA_STAGES)
#define FA_K_STAGE(t) (skv + FA_STAGE(t) * 2 * FA_TILE_BYTES)

  const int head = blockIdx.y, q0 = blockIdx.x * FA_BQ;
  const int wg = threadIdx.x >> 7, warp = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31;
  const u64 stride = (u64)a.heads * FA_D;
  const int tiles = (a.lk + FA_BK - 1) / FA_BK;

  if (threadIdx.x == 0) {
    for (int t = 0; t < FA_STAGES; ++t) {
      mbar_init(full0 + 8 * t, 128);
      mbar_init(empty0 + 8 * t, FA_CONSUMERS);
    }
  }
  if (threadIdx.x < FA_CONSUMERS) {
    load_q(sq, a.q + (u64)head * FA_D, stride, q0, a.lq);
    cp_async_commit();
    cp_async_wait<0>();
    // cp.async writes through the generic proxy; wgmma reads through the async proxy.
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  }
  __syncthreads();

  if (wg == 2) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(FA_PRODUCER_REGS));
    // Producer: tile t goes into stage t % 3 once both warpgroups have released tile t - 3.
    const bf16_t* kg = a.k + (u64)head * FA_D;
    const bf16_t* vg = a.v + (u64)head * FA_D;
    for (int t = 0; t < tiles; ++t) {
      if (t >= FA_STAGES) mbar_wait(empty0 + 8 * FA_STAGE(t), ((t / FA_STAGES) - 1) & 1);
      load_kv(kg, vg, stride, FA_K_STAGE(t), t, a.lk);
      mbar_arrive_on_copies(full0 + 8 * FA_STAGE(t));
    }
    return;
  }

  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(FA_CONSUMER_REGS));
  const unsigned qa = sq + wg * (64 * 256);
  float o[64], s[64];
  unsigned p[32];
#pragma unroll
  for (int i = 0; i < 64; ++i) o[i] = 0.0f;
  // Running max (exp2 domain) and sum of this thread's two rows, and the rescale factors.
  float m0 = -TURBINE_INF, m1 = -TURBINE_INF, l0 = 0.0f, l1 = 0.0f, c0, c1;

  mbar_wait(full0, 0);
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  wgmma_fence();
  issue_qk(s, qa, FA_K_STAGE(0));
  wgmma_wait<0>();
  pin(s);
  online_softmax(s, 0, a.lk, a.scale_log2, m0, m1, l0, l1, c0, c1);
  pack_p(p, s);

  for (int j = 1; j < tiles; ++j) {
    mbar_wait(full0 + 8 * FA_STAGE(j), (j / FA_STAGES) & 1);
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    wgmma_fence();
    issue_qk(s, qa, FA_K_STAGE(j));
    issue_pv(o, p, FA_K_STAGE(j - 1) + FA_TILE_BYTES);
    wgmma_wait<1>();
    pin(s);
    online_softmax(s, j * FA_BK, a.lk, a.scale_log2, m0, m1, l0, l1, c0, c1);
    wgmma_wait<0>();
    pin(o);
    mbar_arrive(empty0 + 8 * FA_STAGE(j - 1));
    // Late tiles rarely raise a row's max: skip the rescale when no row of the warp moved
    // (3-4 % of the kernel's time at Wan shapes).
    if (__any_sync(0xffffffffu, c0 != 1.0f || c1 != 1.0f)) {
#pragma unroll
      for (int g = 0; g < 16; ++g) {
        o[4 * g] *= c0;
        o[4 * g + 1] *= c0;
        o[4 * g + 2] *= c1;
        o[4 * g + 3] *= c1;
      }
    }
    pack_p(p, s);
  }
  wgmma_fence();
  issue_pv(o, p, FA_K_STAGE(tiles - 1) + FA_TILE_BYTES);
  wgmma_wait<0>();
  pin(o);
#undef FA_STAGE
#undef FA_K_STAGE

  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  const float i0 = 1.0f / l0, i1 = 1.0f / l1;
  const int row0 = q0 + wg * 64 + warp * 16 + (lane >> 2), row1 = row0 + 8;
  bf16_t* out = a.out + (u64)head * FA_D + (lane & 3) * 2;
#pragma unroll
  for (int g = 0; g < 16; ++g) {
    if (row0 < a.lq)
      *(unsigned*)(out + (u64)row0 * stride + g * 8) = pack_bf16x2(o[4 * g] * i0, o[4 * g + 1] * i0);
    if (row1 < a.lq)
      *(unsigned*)(out + (u64)row1 * stride + g * 8) =
          pack_bf16x2(o[4 * g + 2] * i1, o[4 * g + 3] * i1);
  }
#else
  // Built for a GPU without wgmma: the backend never launches this kernel there.
  __trap();
#endif
}
