// Row and channel norms with f32 statistics.
//
// layer_norm / rms_norm: one block per row of a [rows, cols] tensor. LayerNorm uses two passes
// (mean, then the centred variance) like the CPU reference, which stays accurate on rows with a
// large mean; the row is re-read from L1/L2 rather than held in registers, so any `cols` works.
// channel_rms_norm: one thread per spatial position of a channel-first [C, ...] tensor.
#include "common.cuh"

// out = LN(x) * (mul + mul_offset) + add, each of mul/add optional ([cols] or null):
// affine LayerNorm is (weight, 0, bias), DiT modulation is (scale, 1, shift).
struct LayerNormArgs {
  float* out;        // [rows, cols]
  const float* x;    // [rows, cols]
  const float* mul;  // [cols] or null
  const float* add;  // [cols] or null
  float mul_offset;
  float eps;
  unsigned rows;
  unsigned cols;
};

extern "C" __global__ void layer_norm_f32(const LayerNormArgs a) {
  __shared__ float scratch[32];
  const u64 row = blockIdx.x;
  const float* x = a.x + row * a.cols;
  float* out = a.out + row * a.cols;
  const float n = (float)a.cols;

  float s = 0.0f;
  for (unsigned j = threadIdx.x; j < a.cols; j += blockDim.x) s += x[j];
  const float mean = block_sum(s, scratch) / n;

  float ss = 0.0f;
  for (unsigned j = threadIdx.x; j < a.cols; j += blockDim.x) {
    const float d = x[j] - mean;
    ss += d * d;
  }
  const float inv = 1.0f / sqrtf(block_sum(ss, scratch) / n + a.eps);

  for (unsigned j = threadIdx.x; j < a.cols; j += blockDim.x) {
    float v = (x[j] - mean) * inv;
    if (a.mul) v *= a.mul[j] + a.mul_offset;
    if (a.add) v += a.add[j];
    out[j] = v;
  }
}

// out = x * rsqrt(mean(x^2) + eps) * weight over each row.
struct RmsNormArgs {
  float* out;           // [rows, cols]
  const float* x;       // [rows, cols]
  const float* weight;  // [cols]
  float eps;
  unsigned rows;
  unsigned cols;
};

extern "C" __global__ void rms_norm_f32(const RmsNormArgs a) {
  __shared__ float scratch[32];
  const u64 row = blockIdx.x;
  const float* x = a.x + row * a.cols;
  float* out = a.out + row * a.cols;

  float ss = 0.0f;
  for (unsigned j = threadIdx.x; j < a.cols; j += blockDim.x) ss += x[j] * x[j];
  const float inv = 1.0f / sqrtf(block_sum(ss, scratch) / (float)a.cols + a.eps);

  for (unsigned j = threadIdx.x; j < a.cols; j += blockDim.x) out[j] = x[j] * inv * a.weight[j];
}

// The Wan VAE's RMS_norm: x / max(||x||_2, 1e-12) * sqrt(C) * gamma, the norm taken over the
// channel dim of x: [C, inner]. Consecutive threads take consecutive positions, so each channel
// row is read coalesced.
struct ChannelRmsNormArgs {
  float* out;          // [C, inner]
  const float* x;      // [C, inner]
  const float* gamma;  // [C]
  u64 inner;
  unsigned channels;
};

extern "C" __global__ void channel_rms_norm_f32(const ChannelRmsNormArgs a) {
  GRID_STRIDE(p, a.inner) {
    float ss = 0.0f;
    for (unsigned c = 0; c < a.channels; ++c) {
      const float v = a.x[c * a.inner + p];
      ss += v * v;
    }
    const float scale = sqrtf((float)a.channels) / fmaxf(sqrtf(ss), 1e-12f);
    for (unsigned c = 0; c < a.channels; ++c) {
      const u64 at = c * a.inner + p;
      a.out[at] = a.x[at] * scale * a.gamma[c];
    }
  }
}
