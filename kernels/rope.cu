// Rotary position embedding on interleaved pairs (x[2j], x[2j+1]) of x: [L, H, Dh], with
// per-token tables cos/sin: [L, Dh/2] shared by all heads (Wan's 3-D RoPE, flattened).
// One thread per pair.
#include "common.cuh"

struct RopeArgs {
  void* out;         // [L, H, Dh], element type dt
  const void* x;     // [L, H, Dh], element type dt
  const float* cos;  // [L, Dh/2]
  const float* sin;  // [L, Dh/2]
  u64 pairs;         // L * H * Dh/2
  unsigned heads;
  unsigned half;     // Dh/2
  int dt;
};

extern "C" __global__ void rope(const RopeArgs a) {
  GRID_STRIDE(p, a.pairs) {
    const u64 j = p % a.half;
    const u64 t = p / ((u64)a.half * a.heads);
    const float c = a.cos[t * a.half + j], s = a.sin[t * a.half + j];
    const float re = load_elem(a.x, a.dt, 2 * p), im = load_elem(a.x, a.dt, 2 * p + 1);
    store_elem(a.out, a.dt, 2 * p, re * c - im * s);
    store_elem(a.out, a.dt, 2 * p + 1, re * s + im * c);
  }
}
