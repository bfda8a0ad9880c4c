// Seeded random weights written straight into device memory: the benchmarks' random-weight
// presets, generated on the GPU instead of uploaded.
//
// seeded: out[i] = bf16(mean + c(i) * scale), c(i) an exact integer from the i-th output of
// SplitMix64 started at `key` (r = mix64(key + (i + 1) * GAMMA)):
//   uniform: c = (r >> 40) - 2^23, the top 24 bits centred;
//   normal:  c = 2 * (sum of r's four 16-bit quarters) - 4 * 0xFFFF (Irwin-Hall, centred).
// The host generator (shared/tensor/src/seeded.rs, which documents the distributions and computes
// `key`, `mean` and `scale`) does the same integer steps and the same two correctly rounded float
// operations, spelled out here with __fmul_rn/__fadd_rn because NVRTC would otherwise contract
// them into an FMA; bf16 rounds to nearest even on both sides: the two agree bit for bit. f32
// outputs hold the bf16 value widened (an f32 backend's copy of a bf16 checkpoint).
#include "common.cuh"

#define SPLITMIX_GAMMA 0x9E3779B97F4A7C15ull

struct SeededArgs {
  void* out;    // [n], out_dt
  u64 n;
  u64 key;      // per tensor, from the seed and the tensor's index
  float mean;   // 0 for uniform tensors
  float scale;  // of the centred integer
  int normal;   // 1: Irwin-Hall normal, 0: uniform
  int out_dt;
};

__device__ __forceinline__ u64 mix64(u64 z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

extern "C" __global__ void seeded(const SeededArgs a) {
  GRID_STRIDE(i, a.n) {
    const u64 r = mix64(a.key + (i + 1) * SPLITMIX_GAMMA);
    int c;
    if (a.normal) {
      const int sum = (int)(r & 0xFFFF) + (int)((r >> 16) & 0xFFFF) + (int)((r >> 32) & 0xFFFF) +
                      (int)(r >> 48);
      c = 2 * sum - 4 * 0xFFFF;
    } else {
      c = (int)(r >> 40) - (1 << 23);
    }
    // |c| <= 2^23: the conversion is exact.
    const float v = __fadd_rn(a.mean, __fmul_rn((float)c, a.scale));
    store_elem(a.out, a.out_dt, i, bf16_to_f32(f32_to_bf16(v)));
  }
}
