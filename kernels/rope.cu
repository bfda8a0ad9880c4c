// Rotary position embedding on interleaved pairs (x[2j], x[2j+1]) of x: [L, H, Dh], with
// per-token tables cos/sin: [L, Dh/2] shared by all heads (Wan's 3-D RoPE, flattened).
// One thread per pair.
#include "common.cuh"

struct RopeArgs {
  float* out;        // [L, H, Dh]
  const float* x;    // [L, H, Dh]
  const float* cos;  // [L, Dh/2]
  const float* sin;  // [L, Dh/2]
  u64 pairs;         // L * H * Dh/2
  unsigned heads;
  unsigned half;     // Dh/2
};

extern "C" __global__ void rope_f32(const RopeArgs a) {
  GRID_STRIDE(p, a.pairs) {
    const u64 j = p % a.half;
    const u64 t = p / ((u64)a.half * a.heads);
    const float c = a.cos[t * a.half + j], s = a.sin[t * a.half + j];
    const float re = a.x[2 * p], im = a.x[2 * p + 1];
    a.out[2 * p] = re * c - im * s;
    a.out[2 * p + 1] = re * s + im * c;
  }
}
