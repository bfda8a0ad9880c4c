// Elementwise ops over contiguous row-major tensors: activations, broadcast arithmetic, the DiT
// gated residual, the sampler's linear combination, clamping, per-channel affine maps and biases.
//
// Arithmetic is f32 whatever the storage type. Every kernel is a grid-stride loop over `n` output
// elements, so any grid size is valid.
#include "common.cuh"

__device__ __forceinline__ float gelu_tanh(float x) {
  const float sqrt_2_over_pi = 0.7978845608028654f;
  return 0.5f * x * (1.0f + tanhf(sqrt_2_over_pi * (x + 0.044715f * x * x * x)));
}

__device__ __forceinline__ float silu(float x) { return x / (1.0f + expf(-x)); }

// The activations, the broadcast arithmetic and the gated residual take their tensors' element
// types as DT_* codes (f32 or bf16, mixed freely: an f32 residual plus a bf16 branch).
struct UnaryArgs {
  void* out;
  const void* x;
  u64 n;
  int out_dt;
  int x_dt;
};

// `b` broadcasts over the leading dims of `a`: its `nb` elements repeat along `a`.
struct BroadcastArgs {
  void* out;
  const void* a;
  const void* b;
  u64 n;
  u64 nb;
  int out_dt;
  int a_dt;
  int b_dt;
};

// x + y * gate, gate: [cols] broadcast over rows.
struct GatedResidualArgs {
  void* out;
  const void* x;
  const void* y;
  const void* gate;
  u64 n;
  u64 cols;
  int out_dt;
  int x_dt;
  int y_dt;
  int gate_dt;
};

#define DEFINE_UNARY(NAME, EXPR)                                                           \
  extern "C" __global__ void NAME(const UnaryArgs a) {                                    \
    GRID_STRIDE(i, a.n) {                                                                  \
      const float v = load_elem(a.x, a.x_dt, i);                                           \
      store_elem(a.out, a.out_dt, i, (EXPR));                                              \
    }                                                                                      \
  }

#define DEFINE_BROADCAST(NAME, OP)                                                         \
  extern "C" __global__ void NAME(const BroadcastArgs a) {                                \
    GRID_STRIDE(i, a.n) {                                                                  \
      store_elem(a.out, a.out_dt, i,                                                       \
                 load_elem(a.a, a.a_dt, i) OP load_elem(a.b, a.b_dt, i % a.nb));           \
    }                                                                                      \
  }

DEFINE_UNARY(gelu_tanh, gelu_tanh(v))
DEFINE_UNARY(silu, silu(v))
// Element type conversion (bf16 rounds to nearest even).
DEFINE_UNARY(cast, v)
DEFINE_BROADCAST(add, +)
DEFINE_BROADCAST(mul, *)

extern "C" __global__ void gated_residual(const GatedResidualArgs a) {
  GRID_STRIDE(i, a.n) {
    const float x = load_elem(a.x, a.x_dt, i), y = load_elem(a.y, a.y_dt, i);
    store_elem(a.out, a.out_dt, i, x + y * load_elem(a.gate, a.gate_dt, i % a.cols));
  }
}

// The sampler's and the VAE's f32-only ops.
struct ClampArgs {
  float* out;
  const float* x;
  u64 n;
  float lo;
  float hi;
};

extern "C" __global__ void clamp_f32(const ClampArgs a) {
  GRID_STRIDE(i, a.n) { a.out[i] = fminf(fmaxf(a.x[i], a.lo), a.hi); }
}

// x[..., c] * scale[c] + shift[c] over a channels-last tensor.
struct ChannelAffineArgs {
  void* out;
  const void* x;
  const void* scale;
  const void* shift;
  u64 n;
  u64 channels;
  int out_dt, x_dt, scale_dt, shift_dt;
};

extern "C" __global__ void channel_affine(const ChannelAffineArgs a) {
  GRID_STRIDE(i, a.n) {
    const u64 c = i % a.channels;
    const float v = load_elem(a.x, a.x_dt, i) * load_elem(a.scale, a.scale_dt, c) +
                    load_elem(a.shift, a.shift_dt, c);
    store_elem(a.out, a.out_dt, i, v);
  }
}

// out[..., c] += bias[c] in place: the bias of a convolution whose library call has none.
struct ChannelBiasArgs {
  void* out;
  const void* bias;
  u64 n;
  u64 channels;
  int out_dt, bias_dt;
};

extern "C" __global__ void channel_bias(const ChannelBiasArgs a) {
  GRID_STRIDE(i, a.n) {
    const float v = load_elem(a.out, a.out_dt, i) + load_elem(a.bias, a.bias_dt, i % a.channels);
    store_elem(a.out, a.out_dt, i, v);
  }
}

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
