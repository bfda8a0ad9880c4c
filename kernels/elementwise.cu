// Elementwise ops over contiguous row-major tensors: activations, broadcast arithmetic, the DiT
// gated residual, the sampler's linear combination, clamping and per-channel affine maps.
//
// Symbols are `{op}_{dtype}`, generated per storage type by the DEFINE_* macros below; arithmetic
// is f32. Every kernel is a grid-stride loop over `n` output elements, so any grid size is valid.
#include "common.cuh"

__device__ __forceinline__ float gelu_tanh(float x) {
  const float sqrt_2_over_pi = 0.7978845608028654f;
  return 0.5f * x * (1.0f + tanhf(sqrt_2_over_pi * (x + 0.044715f * x * x * x)));
}

__device__ __forceinline__ float silu(float x) { return x / (1.0f + expf(-x)); }

struct UnaryArgs {
  float* out;
  const float* x;
  u64 n;
};

// `b` broadcasts over the leading dims of `a`: its `nb` elements repeat along `a`.
struct BroadcastArgs {
  float* out;
  const float* a;
  const float* b;
  u64 n;
  u64 nb;
};

struct ClampArgs {
  float* out;
  const float* x;
  u64 n;
  float lo;
  float hi;
};

// x + y * gate, gate: [cols] broadcast over rows.
struct GatedResidualArgs {
  float* out;
  const float* x;
  const float* y;
  const float* gate;
  u64 n;
  u64 cols;
};

// x[c, ...] * scale[c] + shift[c], `inner` elements per channel.
struct ChannelAffineArgs {
  float* out;
  const float* x;
  const float* scale;
  const float* shift;
  u64 n;
  u64 inner;
};

#define DEFINE_UNARY(NAME, SUF, EXPR)                                                      \
  extern "C" __global__ void NAME##_##SUF(const UnaryArgs a) {                            \
    GRID_STRIDE(i, a.n) {                                                                  \
      const float v = a.x[i];                                                              \
      a.out[i] = (EXPR);                                                                   \
    }                                                                                      \
  }

#define DEFINE_BROADCAST(NAME, SUF, OP)                                                    \
  extern "C" __global__ void NAME##_##SUF(const BroadcastArgs a) {                        \
    GRID_STRIDE(i, a.n) { a.out[i] = a.a[i] OP a.b[i % a.nb]; }                            \
  }

// The op set for one storage type; the args structs above are the f32 ones.
#define DEFINE_ELEMENTWISE(SUF)                                                            \
  DEFINE_UNARY(gelu_tanh, SUF, gelu_tanh(v))                                               \
  DEFINE_UNARY(silu, SUF, silu(v))                                                         \
  DEFINE_BROADCAST(add, SUF, +)                                                            \
  DEFINE_BROADCAST(mul, SUF, *)                                                            \
                                                                                           \
  extern "C" __global__ void clamp_##SUF(const ClampArgs a) {                             \
    GRID_STRIDE(i, a.n) { a.out[i] = fminf(fmaxf(a.x[i], a.lo), a.hi); }                   \
  }                                                                                        \
                                                                                           \
  extern "C" __global__ void gated_residual_##SUF(const GatedResidualArgs a) {            \
    GRID_STRIDE(i, a.n) { a.out[i] = a.x[i] + a.y[i] * a.gate[i % a.cols]; }               \
  }                                                                                        \
                                                                                           \
  extern "C" __global__ void channel_affine_##SUF(const ChannelAffineArgs a) {            \
    GRID_STRIDE(i, a.n) {                                                                  \
      const u64 c = i / a.inner;                                                           \
      a.out[i] = a.x[i] * a.scale[c] + a.shift[c];                                         \
    }                                                                                      \
  }

DEFINE_ELEMENTWISE(f32)

// Terms per lincomb launch; longer combinations accumulate over several launches.
#define LINCOMB_TERMS 8

// out = sum_t coef[t] * term[t], summed in term order as the CPU backend does. `accumulate`
// adds the previous contents of `out` first (the running sum of earlier launches).
struct LincombArgs {
  float* out;
  const float* terms[LINCOMB_TERMS];
  float coefs[LINCOMB_TERMS];
  u64 n;
  int count;
  int accumulate;
};

extern "C" __global__ void lincomb_f32(const LincombArgs a) {
  GRID_STRIDE(i, a.n) {
    float acc = a.accumulate ? a.out[i] : 0.0f;
#pragma unroll
    for (int t = 0; t < LINCOMB_TERMS; ++t) {
      if (t < a.count) acc += a.coefs[t] * a.terms[t][i];
    }
    a.out[i] = acc;
  }
}
