// Splitting an attention kernel's last items over the SMs the last round leaves idle.
//
// N equal items (a block of query rows of one head, over all its key blocks) on G SMs take
// ⌈N / G⌉ rounds, the last with N mod G items while the other SMs wait: at 1.3B 480p, 3072 items
// on 132 SMs are 23.27 rounds of work in 24. The host (cuda/split.rs) cuts each of the last
// N mod G items into `pieces` ranges of its key blocks, as many as the idle SMs take. Unit u is a
// whole item while u < `whole`, else piece (u − whole) mod pieces of item whole + (u − whole) /
// pieces. A piece leaves its unnormalised state, in the m16n8 layout of online_softmax, in a
// workspace; a merge kernel combines an item's pieces in piece order (the same sums whichever
// finished first) and stores the rows as the whole item would have.
#pragma once
#include "async.cuh"

// Per consumer thread of a piece: O's 64 accumulators, then the row sums l0, l1 and the row
// maxima m0, m1 (exp2 domain), each value's 128 threads side by side (coalesced). The workspace
// holds a slot of them per piece and consumer warpgroup (both kernels have two an item): piece k's
// consumer c at slot SPLIT_CONSUMERS · k + c, so an item's pieces lie SPLIT_CONSUMERS slots apart.
#define SPLIT_VALUES 68
#define SPLIT_THREADS 128
#define SPLIT_CONSUMERS 2
#define SPLIT_SLOT (SPLIT_VALUES * SPLIT_THREADS)

struct Unit {
  int item;
  int j0, j1;  // the key blocks (or LUT entries) [j0, j1) of the item
  int piece;   // the piece's index among all pieces (workspace slot), or −1 for a whole item
};

__device__ __forceinline__ Unit split_unit(int u, int whole, int pieces, int blocks) {
  if (u < whole) return {u, 0, blocks, -1};
  const int k = u - whole, p = k % pieces;
  return {whole + k / pieces, p * blocks / pieces, (p + 1) * blocks / pieces, k};
}

// Units of `items` items: the whole ones and every piece of the rest.
__device__ __forceinline__ int split_units(int items, int whole, int pieces) {
  return whole + (items - whole) * pieces;
}

// This thread's share of the state of piece `piece` (a Unit's) for consumer warpgroup `consumer`.
__device__ __forceinline__ void store_partial(float* part, int piece, int consumer, const float* o,
                                              float l0, float l1, float m0, float m1) {
  float* p = part + (u64)(SPLIT_CONSUMERS * piece + consumer) * SPLIT_SLOT +
             (threadIdx.x & (SPLIT_THREADS - 1));
#pragma unroll
  for (int i = 0; i < 64; ++i) p[i * SPLIT_THREADS] = o[i];
  p[64 * SPLIT_THREADS] = l0;
  p[65 * SPLIT_THREADS] = l1;
  p[66 * SPLIT_THREADS] = m0;
  p[67 * SPLIT_THREADS] = m1;
}

// The state of split item `item`'s (0 for the first split item) `pieces` pieces for consumer
// warpgroup `consumer`, rescaled to their common row maxima and added up in piece order: O and
// the row sums of the whole item.
__device__ __forceinline__ void merge_partials(const float* part, int item, int pieces,
                                               int consumer, float* o, float& l0, float& l1) {
  const u64 stride = SPLIT_CONSUMERS * SPLIT_SLOT;
  const float* p = part + ((u64)item * pieces * SPLIT_CONSUMERS + consumer) * SPLIT_SLOT +
                   (threadIdx.x & (SPLIT_THREADS - 1));
  float m0 = -TURBINE_INF, m1 = -TURBINE_INF;
  for (int i = 0; i < pieces; ++i) {
    m0 = fmaxf(m0, p[i * stride + 66 * SPLIT_THREADS]);
    m1 = fmaxf(m1, p[i * stride + 67 * SPLIT_THREADS]);
  }
#pragma unroll
  for (int i = 0; i < 64; ++i) o[i] = 0.0f;
  l0 = 0.0f;
  l1 = 0.0f;
  for (int i = 0; i < pieces; ++i) {
    const float* q = p + i * stride;
    const float c0 = ex2(q[66 * SPLIT_THREADS] - m0), c1 = ex2(q[67 * SPLIT_THREADS] - m1);
#pragma unroll
    for (int g = 0; g < 16; ++g) {
      o[4 * g] += c0 * q[(4 * g) * SPLIT_THREADS];
      o[4 * g + 1] += c0 * q[(4 * g + 1) * SPLIT_THREADS];
      o[4 * g + 2] += c1 * q[(4 * g + 2) * SPLIT_THREADS];
      o[4 * g + 3] += c1 * q[(4 * g + 3) * SPLIT_THREADS];
    }
    l0 += c0 * q[64 * SPLIT_THREADS];
    l1 += c1 * q[65 * SPLIT_THREADS];
  }
}
