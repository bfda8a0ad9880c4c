// Hopper (sm_90a) building blocks of the warp-specialized tensor-core kernels: mbarriers, bulk
// copies, wgmma shared-memory descriptors and the wgmma fence/commit/wait protocol. Everything
// here is inline PTX that only sm_90a accepts, so it compiles only for that target; files include
// it unconditionally and guard their Hopper kernels' bodies the same way.
#pragma once
#include "async.cuh"

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

// mbarriers (shared::cta): the producer warp's loads complete `full[stage]`, the consumer
// warpgroups' releases complete `empty[stage]`; waits poll a phase parity.
__device__ __forceinline__ void mbar_init(unsigned bar, unsigned count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}

__device__ __forceinline__ void mbar_arrive(unsigned bar) {
  asm volatile("{\n.reg .b64 state;\nmbarrier.arrive.shared::cta.b64 state, [%0];\n}\n" ::"r"(bar)
               : "memory");
}

__device__ __forceinline__ void mbar_wait(unsigned bar, unsigned parity) {
  asm volatile(
      "{\n.reg .pred done;\nWAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT;\n}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}
// Arms `bar` for `bytes` of bulk copies and arrives on it (the producer's half of a stage).
__device__ __forceinline__ void mbar_expect(unsigned bar, unsigned bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes)
               : "memory");
}

// `bytes` (a multiple of 16, both addresses 16-byte aligned) global -> shared by the copy engine;
// completion is counted on `bar`'s transaction count.
__device__ __forceinline__ void bulk_copy(unsigned dst, const void* src, unsigned bytes,
                                          unsigned bar) {
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
          dst),
      "l"(src), "r"(bytes), "r"(bar)
      : "memory");
}

// The box of `map` (a host-made CUtensorMap, e.g. in a __grid_constant__ parameter) at
// coordinates (c0, c1, c2), innermost first, into shared memory at `dst` by the copy engine, laid
// out and swizzled as the map says; elements past the tensor's extent arrive as zeros, and the
// whole box's bytes count on `bar`'s transaction count.
__device__ __forceinline__ void tma_load_3d(unsigned dst, const void* map, int c0, int c1, int c2,
                                            unsigned bar) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, "
      "{%2, %3, %4}], [%5];" ::"r"(dst),
      "l"(map), "r"(c0), "r"(c1), "r"(c2), "r"(bar)
      : "memory");
}

// A wgmma shared-memory matrix descriptor with the 128-byte swizzle. `lbo`/`sbo` in bytes: for a
// K-major operand sbo is the step between 8-row groups (lbo unused); for an MN-major one lbo is
// the step between 64-element atoms along MN and sbo the step between 8-row groups along K.
__device__ __forceinline__ u64 smem_desc(unsigned addr, unsigned lbo, unsigned sbo) {
  return (u64)((addr & 0x3FFFF) >> 4) | ((u64)((lbo & 0x3FFFF) >> 4) << 16) |
         ((u64)((sbo & 0x3FFFF) >> 4) << 32) | (1ull << 62);
}

// Descriptor `d` moved `bytes` (a multiple of 16) further on: shared memory lies below the 256 KB
// that the 14-bit address field spans, so the sum never carries into the next field, and a loop
// steps its descriptors with one add instead of rebuilding them.
__device__ __forceinline__ u64 desc_add(u64 d, unsigned bytes) {
  return (d & 0xFFFFFFFF00000000ull) | (unsigned)((unsigned)d + (bytes >> 4));
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

// The 64 accumulator registers of an m64n128 wgmma (operands %0 .. %63; `WG_REGS64_OPEN` leaves
// the list open for wider tiles), and for int32 ones their constraints.
#define WG_REGS64 WG_REGS64_OPEN "}"
#define WG_REGS64_OPEN                                                                        \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, " \
  "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, "  \
  "%38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, "  \
  "%56, %57, %58, %59, %60, %61, %62, %63"
#define WG_D8(i)                                                                              \
  "+r"(d[(i)]), "+r"(d[(i) + 1]), "+r"(d[(i) + 2]), "+r"(d[(i) + 3]), "+r"(d[(i) + 4]),         \
      "+r"(d[(i) + 5]), "+r"(d[(i) + 6]), "+r"(d[(i) + 7])
#define WG_D64 WG_D8(0), WG_D8(8), WG_D8(16), WG_D8(24), WG_D8(32), WG_D8(40), WG_D8(48), WG_D8(56)

// d[64x128] (+)= A[64x32] · B[128x32]ᵀ in INT8 (int32 accumulators), both K-major in shared
// memory; `accumulate` 0 overwrites d.
__device__ __forceinline__ void wgmma_s8(int* d, u64 a, u64 b, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 " WG_REGS64 ", %64, %65, p;\n}\n"
      : WG_D64
      : "l"(a), "l"(b), "r"(accumulate));
}

// Keeps the compiler from moving accesses of accumulator registers across the asynchronous
// wgmma window (it cannot see that the hardware writes them until the wait).
template <int N = 64>
__device__ __forceinline__ void pin(float* d) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

__device__ __forceinline__ void pin(int* d) {
#pragma unroll
  for (int i = 0; i < 64; ++i) asm volatile("" : "+r"(d[i])::"memory");
}

#endif
