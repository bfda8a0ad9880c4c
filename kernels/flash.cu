// Dense flash attention for bf16 q/k/v with head dim 128 on Hopper tensor cores (wgmma, sm_90a):
// softmax(scale · q kᵀ) v with an online softmax, f32 accumulation, bf16 output.
//
// Tensors are [L, H, 128] row-major (the DiT's layout after the head split): no transposes before
// or after. One CTA takes 128 query rows of one head with two consumer warpgroups of 64 rows
// each; both share every 128-key K/V tile, which one thread of a producer warpgroup has the copy
// engine (TMA) stage into shared memory, three stages deep (the next tiles load while this one
// computes), so loads take no issue slots from the consumers.
//
// Per tile and warpgroup: S = Q Kᵀ is 8 wgmma m64n128k16 (Q and K from shared memory, both
// K-major), the online softmax runs on S in registers (exp2 with the scale folded in), and
// O += P V is 8 wgmma m64n128k16 with P from registers as bf16 and V from shared memory read
// MN-major (transposed by the instruction). Keys past Lk score -inf; query rows past Lq are
// computed on zero-filled rows and not stored.
//
// Where the output feeds an FP8 linear (the cross-attention's o), the persistent kernel's e4m3
// form writes it as e4m3 under one scale from a bound, max |V| (which `flash_v_max` finds
// beforehand): a row of the output holds every head's values, written by different CTAs, so no
// per-row scale can be known in the epilogue.
//
// Shared-memory tiles use the 128-byte swizzle wgmma expects: a [rows, 128] bf16 tile is two
// [rows, 64] halves (one 128-byte row each), and the 16-byte chunk c of row r sits at chunk
// c ^ (r % 8). Every tile starts 1024-byte aligned, so the hardware's swizzle (address bits 4-6
// XOR bits 7-9) sees the same pattern the loads wrote.
#include "mma.cuh"
#include "softmax.cuh"
#include "split.cuh"
#include "wgmma.cuh"

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

// A TMA descriptor (CUtensorMap) encoded on the host: 128 opaque bytes, 64-byte aligned.
struct __align__(64) TensorMap {
  u64 opaque[16];
};

struct FlashArgs {
  // q, k, v as bf16 [L][H][128] for the wgmma kernels' TMA loads: boxes of one head's 64
  // channels (128-byte rows, 128-byte swizzle) by 64 rows (q) or FA_BK rows (k, v); rows past
  // the end arrive as zeros. Unused by the other kernels.
  TensorMap q_map;
  TensorMap k_map;
  TensorMap v_map;
  bf16_t* out;        // [Lq, H, 128]
  const bf16_t* q;    // [Lq, H, 128]
  const bf16_t* k;    // [Lk, H, 128]
  const bf16_t* v;    // [Lk, H, 128]
  float scale_log2;   // softmax scale · log2(e)
  int lq;
  int lk;
  int heads;
  // Relative-position bias [H, Lq + Lk - 1] (T5) or null: score (i, j) of head h gets
  // rel[h][j - i + Lq - 1], added after the scale. Read by the mma.sync kernel only.
  const float* rel;
  // flash_attention_bf16's split items (split.cuh): the pieces' state, items not split, pieces
  // per split item. Read by that kernel and flash_merge only.
  float* part;
  int whole;
  int pieces;
  // The persistent kernel's e4m3 form: the output [Lq, H, 128] as e4m3 (`out` unused) under one
  // scale from the bound max |V| (`vmax`, float bits from flash_v_max); head 0's CTAs write every
  // row's scale into `out8_scales` [Lq].
  u8* out8;
  float* out8_scales;
  const unsigned* vmax;
};

// Over max |V| for the e4m3 output's bound: every output row averages rows of V (P ≥ 0, O = Σ P V
// / Σ P), so no exact output value exceeds it; the slack covers P's bf16 rounding in P V against
// the f32 row sum (2⁻⁸). A value past the bound would saturate at 448, not overflow.
#define FA_OUT_SLACK 1.0625f

// The e4m3 output's bound from max |V|.
__device__ __forceinline__ float out8_bound(const FlashArgs& a) {
  return fmaxf(__uint_as_float(*a.vmax) * FA_OUT_SLACK, 1e-8f);
}

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

// The producer's copy of query rows [row0, row0 + 128) of head `head` into the Q tile at `sq`:
// two 64-row blocks, one per consumer, each [2][64][128 B]; four boxes, completing on `bar`.
__device__ __forceinline__ void load_q(const FlashArgs& a, unsigned sq, int head, int row0,
                                       unsigned bar) {
  mbar_expect(bar, FA_BQ * FA_D * 2);
#pragma unroll
  for (int b = 0; b < 4; ++b) {
    tma_load_3d(sq + b * (64 * 128), &a.q_map, (b & 1) * 64, head, row0 + (b >> 1) * 64, bar);
  }
}

// The producer's copy of key/value tile `tile` of head `head` into the stage at `kb` (K) and
// `kb + FA_TILE_BYTES` (V), each [2][FA_BK][128 B]: four boxes, completing on `bar`.
__device__ __forceinline__ void load_kv(const FlashArgs& a, unsigned kb, int head, int tile,
                                        unsigned bar) {
  mbar_expect(bar, 2 * FA_TILE_BYTES);
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    tma_load_3d(kb + half * (FA_BK * 128), &a.k_map, half * 64, head, tile * FA_BK, bar);
    tma_load_3d(kb + FA_TILE_BYTES + half * (FA_BK * 128), &a.v_map, half * 64, head,
                tile * FA_BK, bar);
  }
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

// P as the A operand of m·k16 steps: step kk takes S columns 16kk..16kk+15 (groups 2kk, 2kk+1).
template <int G>
__device__ __forceinline__ void pack_p(unsigned* p, const float* s) {
#pragma unroll
  for (int g = 0; g < G; ++g) {
    p[4 * (g >> 1) + 2 * (g & 1)] = pack_bf16x2(s[4 * g], s[4 * g + 1]);
    p[4 * (g >> 1) + 2 * (g & 1) + 1] = pack_bf16x2(s[4 * g + 2], s[4 * g + 3]);
  }
}

// O[16 rows of a warp][D] (m16n8 layout, D/8 groups) / row sums, as rows `row0`, `row0+8` of
// head `head`: bf16, or with E4M3 e4m3 pairs into `out8` under `bound`'s scale (and, for head 0,
// the rows' scales). The bound is read by the caller once, not at every item's stores, whose
// global load would stall each epilogue.
template <int D, bool E4M3 = false>
__device__ __forceinline__ void store_rows(const FlashArgs& a, const float* o, float l0, float l1,
                                           int row0, int head, float bound = 448.0f) {
  const int lane = threadIdx.x & 31;
  l0 = quad_sum(l0);
  l1 = quad_sum(l1);
  const float f = E4M3 ? 448.0f / bound : 1.0f;
  if (E4M3 && head == 0 && (lane & 3) == 0) {
    if (row0 < a.lq) a.out8_scales[row0] = bound / 448.0f;
    if (row0 + 8 < a.lq) a.out8_scales[row0 + 8] = bound / 448.0f;
  }
  const float i0 = f / l0, i1 = f / l1;
  const u64 stride = (u64)a.heads * D;
  const int row1 = row0 + 8;
  const u64 at = (u64)head * D + (lane & 3) * 2;
#pragma unroll
  for (int g = 0; g < D / 8; ++g) {
    const float x[4] = {o[4 * g] * i0, o[4 * g + 1] * i0, o[4 * g + 2] * i1, o[4 * g + 3] * i1};
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int row = h ? row1 : row0;
      if (row >= a.lq) continue;
      const u64 i = (u64)row * stride + at + g * 8;
      if (E4M3) {
        *(unsigned short*)(a.out8 + i) = (unsigned short)e4m3x2(x[2 * h], x[2 * h + 1]);
      } else {
        *(unsigned*)(a.out + i) = pack_bf16x2(x[2 * h], x[2 * h + 1]);
      }
    }
  }
}

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
// S = Q Kᵀ for this warpgroup's 64 rows against one 128-key tile, issued asynchronously, from
// the descriptors of the Q tile and the stage's K tile (K-major, 128-byte swizzle).
__device__ __forceinline__ void issue_qk(float* s, u64 qd, u64 kd) {
#pragma unroll
  for (int kk = 0; kk < 8; ++kk) {
    wgmma_ss(s, desc_add(qd, (kk >> 2) * (64 * 128) + (kk & 3) * 32),
             desc_add(kd, (kk >> 2) * (FA_BK * 128) + (kk & 3) * 32), kk > 0);
  }
  wgmma_commit();
}

// O += P V for one 128-key tile, issued asynchronously, from the descriptor of the stage's V tile
// (MN-major).
__device__ __forceinline__ void issue_pv(float* o, const unsigned* p, u64 vd) {
#pragma unroll
  for (int kk = 0; kk < 8; ++kk) wgmma_rs(o, p + 4 * kk, desc_add(vd, kk * 16 * 128));
  wgmma_commit();
}
#endif

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
// One consumer warpgroup's pass over key tiles first .. first + tiles − 1 of a work item, which
// the producer stages in ring slots t0 .. t0 + tiles − 1 (`full`/`empty` mbarriers at
// `full0`/`empty0`): O, the row sums and the row maxima of its 64 query rows (the Q tile at
// `qa`). Iteration j issues S_j = Q K_jᵀ and O += P_{j-1} V_{j-1} back to back, waits for S_j
// only, and runs the softmax of S_j while P_{j-1} V_{j-1} still occupies the tensor cores. Every
// slot is released; `qempty`, when not 0, is arrived on once the item's last Q Kᵀ has completed
// (the Q tile may then be overwritten).
// (Explicit ping-pong between the two consumers, FlashAttention-3 style, measured no faster
// here: bench/results notes.)
__device__ __forceinline__ void consume_item(const FlashArgs& a, float* o, float& l0, float& l1,
                                             float& m0, float& m1, unsigned qa, unsigned skv,
                                             unsigned full0, unsigned empty0, unsigned qempty,
                                             int t0, int first, int tiles) {
#define FA_STAGE(t) ((t) % FA_STAGES)
#define FA_K_STAGE(t) (skv + FA_STAGE(t) * 2 * FA_TILE_BYTES)
  // The descriptors of the Q tile and of stage 0's K and V tiles (stage t's are t · 2 tiles on).
  const u64 qd = smem_desc(qa, 16, 1024), kd0 = smem_desc(skv, 16, 1024);
  const u64 vd0 = smem_desc(skv + FA_TILE_BYTES, FA_BK * 128, 1024);
#define FA_KDESC(t) desc_add(kd0, FA_STAGE(t) * 2 * FA_TILE_BYTES)
#define FA_VDESC(t) desc_add(vd0, FA_STAGE(t) * 2 * FA_TILE_BYTES)
  float s[64];
  unsigned p[32];
#pragma unroll
  for (int i = 0; i < 64; ++i) o[i] = 0.0f;
  // Running max (exp2 domain) and sum of this thread's two rows, and the rescale factors.
  float c0, c1;
  m0 = -TURBINE_INF;
  m1 = -TURBINE_INF;
  l0 = 0.0f;
  l1 = 0.0f;

  mbar_wait(full0 + 8 * FA_STAGE(t0), (t0 / FA_STAGES) & 1);
  wgmma_fence();
  issue_qk(s, qd, FA_KDESC(t0));
  wgmma_wait<0>();
  pin(s);
  if (qempty && tiles == 1) mbar_arrive(qempty);
  online_softmax<16>(s, first * FA_BK, a.lk, a.scale_log2, 0.0f, m0, m1, l0, l1, c0, c1);
  pack_p<16>(p, s);

  for (int j = 1; j < tiles; ++j) {
    const int t = t0 + j;
    mbar_wait(full0 + 8 * FA_STAGE(t), (t / FA_STAGES) & 1);
    wgmma_fence();
    issue_qk(s, qd, FA_KDESC(t));
    issue_pv(o, p, FA_VDESC(t - 1));
    wgmma_wait<1>();
    pin(s);
    if (qempty && j == tiles - 1) mbar_arrive(qempty);
    online_softmax<16>(s, (first + j) * FA_BK, a.lk, a.scale_log2, 0.0f, m0, m1, l0, l1, c0,
                       c1);
    wgmma_wait<0>();
    pin(o);
    mbar_arrive(empty0 + 8 * FA_STAGE(t - 1));
    rescale(o, c0, c1);
    pack_p<16>(p, s);
  }
  wgmma_fence();
  issue_pv(o, p, FA_VDESC(t0 + tiles - 1));
  wgmma_wait<0>();
  pin(o);
  mbar_arrive(empty0 + 8 * FA_STAGE(t0 + tiles - 1));
#undef FA_KDESC
#undef FA_VDESC
}

// The producer thread's part of a work item: key tiles first .. first + tiles − 1 of one head
// into ring slots t0 ..; slot t goes into stage t % 3 once both consumers have released slot t − 3.
__device__ __forceinline__ void produce_item(const FlashArgs& a, int head, unsigned skv,
                                             unsigned full0, unsigned empty0, int t0, int first,
                                             int tiles) {
  for (int j = 0; j < tiles; ++j) {
    const int t = t0 + j;
    if (t >= FA_STAGES) mbar_wait(empty0 + 8 * FA_STAGE(t), ((t / FA_STAGES) - 1) & 1);
    load_kv(a, FA_K_STAGE(t), head, first + j, full0 + 8 * FA_STAGE(t));
  }
#undef FA_STAGE
#undef FA_K_STAGE
}
#endif

// Grid (units), FA_THREADS threads, FA_SMEM_BYTES dynamic shared memory. A work item is 128 query
// rows of one head, item i = (head i / ⌈Lq / 128⌉, rows 128·(i mod ⌈Lq / 128⌉)); the last items
// may be split into pieces of their key tiles (split.cuh), which leave their state in `part` for
// flash_merge. CTA b takes unit b.
//
// Warpgroups 0 and 1 are consumers of 64 query rows each; warpgroup 2 is the producer, whose
// first thread has the copy engine load Q (`qfull`) and stream the K/V tiles through three
// shared-memory stages (`full`/`empty` mbarriers), so the consumers neither issue loads nor wait
// on each other.
extern "C" __global__ void __launch_bounds__(FA_THREADS, 1)
    flash_attention_bf16(const __grid_constant__ FlashArgs a) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ u8 smem_raw[];
  // full[stages], empty[stages], then the Q tile's full.
  __shared__ __align__(8) u64 bars[2 * FA_STAGES + 1];
  const unsigned base = (smem_addr(smem_raw) + 1023u) & ~1023u;
  const unsigned sq = base;
  const unsigned skv = base + FA_TILE_BYTES;  // stage t: K at skv + 2·t·TILE, V one TILE later
  const unsigned full0 = smem_addr(bars), empty0 = full0 + 8 * FA_STAGES;
  const unsigned qfull = empty0 + 8 * FA_STAGES;
  const int qtiles = (a.lq + FA_BQ - 1) / FA_BQ;
  const Unit w = split_unit(blockIdx.x, a.whole, a.pieces, (a.lk + FA_BK - 1) / FA_BK);
  const int head = w.item / qtiles, q0 = (w.item % qtiles) * FA_BQ;
  const int wg = threadIdx.x >> 7, warp = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31;

  if (threadIdx.x == 0) {
    for (int t = 0; t < FA_STAGES; ++t) {
      mbar_init(full0 + 8 * t, 1);
      mbar_init(empty0 + 8 * t, FA_CONSUMERS);
    }
    mbar_init(qfull, 1);
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();

  if (wg == 2) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(FA_PRODUCER_REGS));
    if (threadIdx.x == FA_CONSUMERS) {
      load_q(a, sq, head, q0, qfull);
      produce_item(a, head, skv, full0, empty0, 0, w.j0, w.j1 - w.j0);
    }
    return;
  }

  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(FA_CONSUMER_REGS));
  float o[64], l0, l1, m0, m1;
  mbar_wait(qfull, 0);
  consume_item(a, o, l0, l1, m0, m1, sq + wg * (64 * 256), skv, full0, empty0, 0, 0, w.j0,
               w.j1 - w.j0);
  if (w.piece >= 0)
    store_partial(a.part, w.piece, wg, o, l0, l1, m0, m1);
  else
    store_rows<FA_D>(a, o, l0, l1, q0 + wg * 64 + warp * 16 + (lane >> 2), head);
#else
  // Built for a GPU without wgmma: the backend never launches this kernel there.
  __trap();
#endif
}

// The kernel above, persistent, for short key sequences (the cross-attention's 512 text tokens:
// four tiles), where a CTA's prologue and epilogue would otherwise take as long as its tiles.
// Grid (min(work items, SMs)), FA_THREADS threads, FA_SMEM_BYTES dynamic shared memory. A work
// item is 128 query rows of one head, item i = (head i / ⌈Lq / 128⌉, rows 128·(i mod ⌈Lq / 128⌉));
// CTA b takes items b, b + grid, … The producer also stages each item's Q tile, once both
// consumers have issued their last Q Kᵀ of the item before, and the ring of K/V stages runs on
// across items, so the next item's Q and first tiles load while the consumers finish the last.
template <bool E4M3>
__device__ __forceinline__ void flash_persistent(const FlashArgs& a) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ u8 smem_raw[];
  // full[stages], empty[stages], then the Q tile's full and empty.
  __shared__ __align__(8) u64 bars[2 * FA_STAGES + 2];
  const unsigned base = (smem_addr(smem_raw) + 1023u) & ~1023u;
  const unsigned sq = base;
  const unsigned skv = base + FA_TILE_BYTES;
  const unsigned full0 = smem_addr(bars), empty0 = full0 + 8 * FA_STAGES;
  const unsigned qfull = empty0 + 8 * FA_STAGES, qempty = qfull + 8;
  const int wg = threadIdx.x >> 7, warp = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31;
  const int tiles = (a.lk + FA_BK - 1) / FA_BK;
  const int qtiles = (a.lq + FA_BQ - 1) / FA_BQ, items = qtiles * a.heads;

  if (threadIdx.x == 0) {
    for (int t = 0; t < FA_STAGES; ++t) {
      mbar_init(full0 + 8 * t, 1);
      mbar_init(empty0 + 8 * t, FA_CONSUMERS);
    }
    mbar_init(qfull, 1);
    mbar_init(qempty, FA_CONSUMERS);
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();

  if (wg == 2) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(FA_PRODUCER_REGS));
    if (threadIdx.x != FA_CONSUMERS) return;
    for (int n = 0, item = blockIdx.x; item < items; ++n, item += gridDim.x) {
      const int head = item / qtiles;
      if (n > 0) mbar_wait(qempty, (n - 1) & 1);
      load_q(a, sq, head, (item % qtiles) * FA_BQ, qfull);
      produce_item(a, head, skv, full0, empty0, n * tiles, 0, tiles);
    }
    return;
  }

  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(FA_CONSUMER_REGS));
  const float bound = E4M3 ? out8_bound(a) : 448.0f;
  for (int n = 0, item = blockIdx.x; item < items; ++n, item += gridDim.x) {
    float o[64], l0, l1, m0, m1;
    mbar_wait(qfull, n & 1);
    consume_item(a, o, l0, l1, m0, m1, sq + wg * (64 * 256), skv, full0, empty0, qempty, n * tiles,
                 0, tiles);
    store_rows<FA_D, E4M3>(a, o, l0, l1,
                           (item % qtiles) * FA_BQ + wg * 64 + warp * 16 + (lane >> 2),
                           item / qtiles, bound);
  }
#else
  __trap();
#endif
}

extern "C" __global__ void __launch_bounds__(FA_THREADS, 1)
    flash_attention_persistent_bf16(const __grid_constant__ FlashArgs a) {
  flash_persistent<false>(a);
}

// The same with the output in e4m3 (`out8`, under max |V|'s scale): its own instance, so the
// bf16 kernel compiles as before.
extern "C" __global__ void __launch_bounds__(FA_THREADS, 1)
    flash_attention_persistent_e4m3(const __grid_constant__ FlashArgs a) {
  flash_persistent<true>(a);
}

struct FlashVMaxArgs {
  unsigned* vmax;      // max |v| as float bits, zeroed beforehand (atomicMax)
  const bf16_t* v;     // [Lk, H, 128]
  int values;          // Lk · H · 128, a multiple of 8
};

// Grid ⌈values / FA_VMAX_SPAN⌉, 256 threads: max |v| for the e4m3 output's bound, each CTA over a
// span of v (eight 16-byte loads a thread in flight), one atomicMax a CTA.
#define FA_VMAX_SPAN (256 * 8 * 8)
extern "C" __global__ void __launch_bounds__(256) flash_v_max(const FlashVMaxArgs a) {
  __shared__ float scratch[32];
  unsigned m = 0u;
  // 64-bit offsets: a span's end may pass 2^31 when `values` comes near it.
  const u64 end = min((u64)a.values, (u64)(blockIdx.x + 1) * FA_VMAX_SPAN);
#pragma unroll 8
  for (u64 i = (u64)blockIdx.x * FA_VMAX_SPAN + 8 * threadIdx.x; i < end; i += 8 * 256) {
    m = abs_max_bf16x8(m, *(const uint4*)(a.v + i));
  }
  const float v = block_reduce<true>(abs_max_value(m), scratch);
  if (threadIdx.x == 0) atomicMax(a.vmax, __float_as_uint(v));
}

// Grid (split items), 256 threads: the split items' pieces combined (split.cuh) and stored as
// flash_attention_bf16 stores a whole item, thread i of the item's rows 64·(i / 128) .. + 63 in
// the place of consumer i / 128's thread.
extern "C" __global__ void __launch_bounds__(256) flash_merge(const FlashArgs a) {
  const int qtiles = (a.lq + FA_BQ - 1) / FA_BQ, item = a.whole + blockIdx.x, c = threadIdx.x >> 7;
  float o[64], l0, l1;
  merge_partials(a.part, blockIdx.x, a.pieces, c, o, l0, l1);
  const int row = (item % qtiles) * FA_BQ + c * 64 + ((threadIdx.x >> 5) & 3) * 16 +
                  ((threadIdx.x & 31) >> 2);
  store_rows<FA_D>(a, o, l0, l1, row, item / qtiles);
}

// ---- portable kernels: mma.sync (sm_80 and later: A100, RTX 4090/5090; also runs on Hopper) ----
//
// FlashAttention-2's layout: one CTA = 64 query rows of one head, four warps of 16 rows; 64-key K/V
// tiles double-buffered by cp.async into shared memory, 2D-byte rows with the 16-byte chunks
// XOR-swizzled by row % 8 so ldmatrix reads them without bank conflicts. Q stays in registers as
// mma A fragments; S = Q Kᵀ and O += P V are m16n8k16 bf16 MMAs with f32 accumulation (K through
// ldmatrix, V through ldmatrix.trans), the softmax and the epilogue are the ones above.
//
// Two instances: the DiT's head dim 128, and umT5's head dim 64 with its relative-position bias
// (`FlashArgs::rel`), which is added to the scaled scores of each tile before the softmax.
#define FM_BQ 64
#define FM_BK 64
#define FM_THREADS 128
// Q, then two stages of (K, V): 80 KB at D = 128, 40 KB at D = 64.
#define FM_TILE_BYTES(D) (FM_BK * (D) * 2)
#define FM_SMEM_BYTES(D) (5 * FM_TILE_BYTES(D))
#define FA_LOG2E 1.4426950408889634f

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
// Rows [row0, row0 + 64) of one head into a swizzled tile, zero-filled at or past `limit`.
template <int D>
__device__ __forceinline__ void fm_load(unsigned tile, const bf16_t* g, u64 stride, int row0,
                                        int limit) {
  constexpr int CHUNKS = D / 8, ROWS = FM_THREADS / CHUNKS;
  const int c = threadIdx.x % CHUNKS;
#pragma unroll
  for (int i = 0; i < FM_BQ / ROWS; ++i) {
    const int r = threadIdx.x / CHUNKS + ROWS * i, row = row0 + r;
    const bool inside = row < limit;
    cp_async16(tile + fm_offset<D>(r, c), g + (u64)(inside ? row : 0) * stride + c * 8,
               inside ? 16 : 0);
  }
}

// The scores of one key tile (`s`, m16n8 layout, rows `row0` and `row0 + 8`) turned into the
// exp2-domain logits scale·log2(e)·s + log2(e)·bias, so the softmax runs with scale 1.
__device__ __forceinline__ void add_rel_bias(float* s, const FlashArgs& a, int key0, int row0) {
  const int lane = threadIdx.x & 31;
  const float* rel = a.rel + (u64)blockIdx.y * (a.lq + a.lk - 1) + a.lq - 1;
#pragma unroll
  for (int g = 0; g < 8; ++g) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int key = key0 + g * 8 + (lane & 3) * 2 + (e & 1), row = row0 + (e >> 1) * 8;
      // Keys past Lk are masked by the softmax; rows past Lq are not stored.
      const float bias = key < a.lk && row < a.lq ? __ldg(rel + key - row) : 0.0f;
      s[4 * g + e] = fmaf(s[4 * g + e], a.scale_log2, bias * FA_LOG2E);
    }
  }
}
#endif

template <int D, bool REL>
__device__ __forceinline__ void flash_mma(const FlashArgs& a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  extern __shared__ __align__(128) u8 fm_smem[];
  constexpr int TILE = FM_TILE_BYTES(D), KS = D / 16;
  const unsigned sq = smem_addr(fm_smem), skv = sq + TILE;
  const int head = blockIdx.y, q0 = blockIdx.x * FM_BQ;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, m = lane >> 3;
  const int row0 = q0 + warp * 16 + (lane >> 2);
  const u64 stride = (u64)a.heads * D;
  const bf16_t* kg = a.k + (u64)head * D;
  const bf16_t* vg = a.v + (u64)head * D;
  const int tiles = (a.lk + FM_BK - 1) / FM_BK;
  // With a bias the logits come out of add_rel_bias already scaled.
  const float softmax_scale = REL ? 1.0f : a.scale_log2;
#define FM_K(t) (skv + ((t) & 1) * 2 * TILE)

  fm_load<D>(sq, a.q + (u64)head * D, stride, q0, a.lq);
  fm_load<D>(FM_K(0), kg, stride, 0, a.lk);
  fm_load<D>(FM_K(0) + TILE, vg, stride, 0, a.lk);
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();

  // Q fragments of this warp's 16 rows: matrices (rows 0-7 | 8-15) x (k 0-7 | 8-15) of each step.
  unsigned qf[KS][4];
#pragma unroll
  for (int kk = 0; kk < KS; ++kk)
    ldmatrix_x4(qf[kk],
                sq + fm_offset<D>(warp * 16 + (lane & 7) + (m & 1) * 8, 2 * kk + (m >> 1)));

  float o[D / 2], s[32];
  unsigned p[16];
#pragma unroll
  for (int i = 0; i < D / 2; ++i) o[i] = 0.0f;
  float m0 = -TURBINE_INF, m1 = -TURBINE_INF, l0 = 0.0f, l1 = 0.0f, c0, c1;

  for (int j = 0; j < tiles; ++j) {
    if (j + 1 < tiles) {
      // The other stage was last read by tile j - 1, which every warp finished (barrier below).
      fm_load<D>(FM_K(j + 1), kg, stride, (j + 1) * FM_BK, a.lk);
      fm_load<D>(FM_K(j + 1) + TILE, vg, stride, (j + 1) * FM_BK, a.lk);
      cp_async_commit();
    }
    const unsigned kb = FM_K(j), vb = kb + TILE;
#pragma unroll
    for (int i = 0; i < 32; ++i) s[i] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < KS; ++kk) {
#pragma unroll
      for (int np = 0; np < 4; ++np) {
        // Key groups 2np and 2np+1 (rows of K), head-dim chunks 2kk and 2kk+1.
        unsigned b[4];
        ldmatrix_x4(b, kb + fm_offset<D>((2 * np + (m >> 1)) * 8 + (lane & 7), 2 * kk + (m & 1)));
        mma_bf16(s + 8 * np, qf[kk], b[0], b[1]);
        mma_bf16(s + 8 * np + 4, qf[kk], b[2], b[3]);
      }
    }
    if (REL) add_rel_bias(s, a, j * FM_BK, row0);
    online_softmax<8>(s, j * FM_BK, a.lk, softmax_scale, 0.0f, m0, m1, l0, l1, c0, c1);
    rescale<D / 8>(o, c0, c1);
    pack_p<8>(p, s);
#pragma unroll
    for (int ks = 0; ks < 4; ++ks) {
#pragma unroll
      for (int dp = 0; dp < KS; ++dp) {
        // Keys 16ks..16ks+15 (rows of V), head-dim groups 2dp and 2dp+1, transposed on load.
        unsigned b[4];
        ldmatrix_x4_trans(
            b, vb + fm_offset<D>(16 * ks + (m & 1) * 8 + (lane & 7), 2 * dp + (m >> 1)));
        mma_bf16(o + 8 * dp, p + 4 * ks, b[0], b[1]);
        mma_bf16(o + 8 * dp + 4, p + 4 * ks, b[2], b[3]);
      }
    }
    cp_async_wait<0>();
    __syncthreads();
  }
#undef FM_K
  store_rows<D>(a, o, l0, l1, row0, blockIdx.y);
#else
  __trap();
#endif
}

// Grid (ceil(Lq / 64), H), FM_THREADS threads, FM_SMEM_BYTES(128) dynamic shared memory.
extern "C" __global__ void __launch_bounds__(FM_THREADS)
    flash_attention_mma_bf16(const FlashArgs a) {
  flash_mma<FA_D, false>(a);
}

// Head dim 64 with the relative-position bias `a.rel` (umT5). Grid (ceil(Lq / 64), H),
// FM_THREADS threads, FM_SMEM_BYTES(64) dynamic shared memory.
extern "C" __global__ void __launch_bounds__(FM_THREADS)
    flash_attention_rel_mma_bf16(const FlashArgs a) {
  flash_mma<64, true>(a);
}
