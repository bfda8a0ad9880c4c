// Row and channel norms with f32 statistics.
//
// layer_norm / rms_norm / rms_norm_rope: one block per row of a [rows, cols] tensor. LayerNorm
// uses two passes (mean, then the centred variance) like the CPU reference, which stays accurate
// on rows with a large mean; the row is re-read from L1/L2, so any `cols` and alignment work.
// layer_norm_rows / rms_norm_rope_rows: the same arithmetic on rows held in registers (rows.cuh),
// for the DiT's rows (cols a multiple of 8, aligned): one read of the row, 16-byte accesses, and
// for layer_norm_rows optionally FP8 output, the norm and an FP8 layer's input quantization in one
// pass.
// channel_rms_norm: one warp per position of a channels-last [..., C] tensor (a row of C).
#include "rows.cuh"

// out = LN(x) * (mul + mul_offset) + add, each of mul/add optional ([cols] or null):
// affine LayerNorm is (weight, 0, bias), DiT modulation is (scale, 1, shift). Element types are
// DT_* codes: the DiT reads its f32 residual stream and writes bf16 for the next GEMM.
struct LayerNormArgs {
  void* out;        // [rows, cols]
  const void* x;    // [rows, cols]
  const void* mul;  // [cols] or null
  const void* add;  // [cols] or null
  float mul_offset;
  float eps;
  unsigned rows;
  unsigned cols;
  int out_dt;
  int x_dt;
  int param_dt;     // of mul and add
};

extern "C" __global__ void layer_norm(const LayerNormArgs a) {
  __shared__ float scratch[32];
  const u64 first = (u64)blockIdx.x * a.cols;
  const float n = (float)a.cols;

  float s = 0.0f;
  for (unsigned j = threadIdx.x; j < a.cols; j += blockDim.x) s += load_elem(a.x, a.x_dt, first + j);
  const float mean = block_sum(s, scratch) / n;

  float ss = 0.0f;
  for (unsigned j = threadIdx.x; j < a.cols; j += blockDim.x) {
    const float d = load_elem(a.x, a.x_dt, first + j) - mean;
    ss += d * d;
  }
  const float inv = 1.0f / sqrtf(block_sum(ss, scratch) / n + a.eps);

  for (unsigned j = threadIdx.x; j < a.cols; j += blockDim.x) {
    float v = (load_elem(a.x, a.x_dt, first + j) - mean) * inv;
    if (a.mul) v *= load_elem(a.mul, a.param_dt, j) + a.mul_offset;
    if (a.add) v += load_elem(a.add, a.param_dt, j);
    store_elem(a.out, a.out_dt, first + j, v);
  }
}

// layer_norm on rows in registers. The result is rounded to out_dt; with `scales` set it is then
// quantized per row to FP8 e4m3 into `out` (bf16-rounded values quantized as quantize_fp8_rows
// quantizes a bf16 tensor, so the fused pass equals the two-pass one bit for bit). With `y` set
// the row normalized is the residual sum x + y · gate (x + y without a gate), as gated_residual
// computes it, which is also written to `sum`: the DiT's residual add and the norm after it.
struct LayerNormRowsArgs {
  void* out;         // [rows, cols]: out_dt, or e4m3 with `scales`
  float* scales;     // [rows] or null
  const void* x;     // [rows, cols]
  const void* y;     // [rows, cols] or null
  const void* gate;  // [cols] or null
  void* sum;         // [rows, cols] (with y)
  const void* mul;   // [cols] or null
  const void* add;   // [cols] or null
  float mul_offset;
  float eps;
  unsigned rows;
  unsigned cols;
  unsigned warps_per_row;
  unsigned rows_per_block;
  int out_dt;
  int x_dt;
  int y_dt;
  int gate_dt;
  int sum_dt;
  int param_dt;
  const float* common;  // [1]: with `scales`, one scale for every row (fp8_norm_bound), or null
};

extern "C" __global__ void layer_norm_rows(const LayerNormRowsArgs a) {
  __shared__ float scratch[3][32];
  const RowSlot s = row_slot(a.warps_per_row, a.rows_per_block, a.rows);
  const u64 first = s.row * a.cols;
  const float n = (float)a.cols;
  float w[ROW_CHUNKS][8];
  float sum = 0.0f;
#pragma unroll
  for (int u = 0; u < ROW_CHUNKS; ++u) {
    if (has_chunk(s, u, a.cols)) load8(a.x, a.x_dt, first + chunk_col(s, u), w[u]);
  }
  if (a.y) {
#pragma unroll
    for (int u = 0; u < ROW_CHUNKS; ++u) {
      if (!has_chunk(s, u, a.cols)) continue;
      const unsigned c = chunk_col(s, u);
      float y[8], g[8];
      load8(a.y, a.y_dt, first + c, y);
      if (a.gate) load8(a.gate, a.gate_dt, c, g);
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        float v = a.gate ? w[u][k] + y[k] * g[k] : w[u][k] + y[k];
        if (a.sum_dt == DT_BF16) v = bf16_to_f32(f32_to_bf16(v));
        w[u][k] = v;
      }
      store8(a.sum, a.sum_dt, first + c, w[u]);
    }
  }
#pragma unroll
  for (int u = 0; u < ROW_CHUNKS; ++u) {
    if (has_chunk(s, u, a.cols)) {
#pragma unroll
      for (int k = 0; k < 8; ++k) sum += w[u][k];
    }
  }
  const float mean = row_reduce<false>(sum, s, scratch[0]) / n;
  float ss = 0.0f;
#pragma unroll
  for (int u = 0; u < ROW_CHUNKS; ++u) {
    if (has_chunk(s, u, a.cols)) {
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        const float d = w[u][k] - mean;
        ss += d * d;
      }
    }
  }
  const float inv = 1.0f / sqrtf(row_reduce<false>(ss, s, scratch[1]) / n + a.eps);
  float amax = 0.0f;
#pragma unroll
  for (int u = 0; u < ROW_CHUNKS; ++u) {
    if (!has_chunk(s, u, a.cols)) continue;
    const unsigned c = chunk_col(s, u);
    float m[8], b[8];
    if (a.mul) load8(a.mul, a.param_dt, c, m);
    if (a.add) load8(a.add, a.param_dt, c, b);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      float v = (w[u][k] - mean) * inv;
      if (a.mul) v *= m[k] + a.mul_offset;
      if (a.add) v += b[k];
      if (a.out_dt == DT_BF16) v = bf16_to_f32(f32_to_bf16(v));
      w[u][k] = v;
      amax = fmaxf(amax, fabsf(v));
    }
  }
  if (a.scales) {
    amax = row_reduce<true>(amax, s, scratch[2]);
    store_fp8_row((u8*)a.out, a.scales, s, a.cols, w, a.common ? *a.common * E4M3_MAX : amax);
    return;
  }
#pragma unroll
  for (int u = 0; u < ROW_CHUNKS; ++u) {
    if (has_chunk(s, u, a.cols)) store8(a.out, a.out_dt, first + chunk_col(s, u), w[u]);
  }
}

// out = x * rsqrt(mean(x^2) + eps) * weight over each row.
struct RmsNormArgs {
  void* out;           // [rows, cols]
  const void* x;       // [rows, cols]
  const void* weight;  // [cols]
  float eps;
  unsigned rows;
  unsigned cols;
  int out_dt;
  int x_dt;
  int weight_dt;
};

extern "C" __global__ void rms_norm(const RmsNormArgs a) {
  __shared__ float scratch[32];
  const u64 first = (u64)blockIdx.x * a.cols;

  float ss = 0.0f;
  for (unsigned j = threadIdx.x; j < a.cols; j += blockDim.x) {
    const float v = load_elem(a.x, a.x_dt, first + j);
    ss += v * v;
  }
  const float inv = 1.0f / sqrtf(block_sum(ss, scratch) / (float)a.cols + a.eps);

  for (unsigned j = threadIdx.x; j < a.cols; j += blockDim.x) {
    const float v = load_elem(a.x, a.x_dt, first + j);
    store_elem(a.out, a.out_dt, first + j, v * inv * load_elem(a.weight, a.weight_dt, j));
  }
}

// The Wan VAE's RMS_norm: x / max(||x||_2, 1e-12) * sqrt(C) * gamma, the norm taken over the
// channel dim of x: [rows, C], then SiLU when `silu` is set (the residual blocks' norm -> SiLU in
// one pass over memory). A warp reads a row's channels coalesced; the second read comes from L1.
// Output rows are `width` ≥ C wide, channels C .. width − 1 zero: a convolution input stored wider
// than its channels (Backend::conv_input). With `taps` > 1 (bf16 kernel only) the output is a
// causal convolution's input with its time taps folded into channels, [frames, frame_rows,
// taps, width]: row p of x frame f goes to block dt of row p of output frame shift + f − dt, for
// each dt whose frame lies in [0, frames).
struct ChannelRmsNormArgs {
  void* out;           // [rows, width], or [frames, frame_rows, taps, width] folded
  const void* x;       // [rows, C]
  const void* gamma;   // [C]
  u64 rows;
  unsigned channels;
  unsigned width;
  int out_dt, x_dt, gamma_dt;
  int silu;
  u64 frame_rows;      // rows a frame (folded only)
  int taps, frames, shift;
  void* kept;          // bf16, or null (bf16 kernel only): folded, [rows − kept_from, C], x's rows
  u64 kept_from;       // from kept_from on as they came in; plain, [rows − kept_from, width],
                       // the output's rows from kept_from on
};

extern "C" __global__ void channel_rms_norm(const ChannelRmsNormArgs a) {
  const unsigned lane = threadIdx.x & 31;
  const u64 warps = (u64)gridDim.x * (blockDim.x / 32);
  for (u64 row = ((u64)blockIdx.x * blockDim.x + threadIdx.x) / 32; row < a.rows; row += warps) {
    const u64 base = row * a.channels;
    float ss = 0.0f;
    for (unsigned c = lane; c < a.channels; c += 32) {
      const float v = load_elem(a.x, a.x_dt, base + c);
      ss += v * v;
    }
    const float scale = sqrtf((float)a.channels) / fmaxf(sqrtf(warp_sum(ss)), 1e-12f);
    for (unsigned c = lane; c < a.channels; c += 32) {
      float v = load_elem(a.x, a.x_dt, base + c) * scale * load_elem(a.gamma, a.gamma_dt, c);
      if (a.silu) v = v / (1.0f + expf(-v));
      store_elem(a.out, a.out_dt, row * a.width + c, v);
    }
    for (unsigned c = a.channels + lane; c < a.width; c += 32) {
      store_elem(a.out, a.out_dt, row * a.width + c, 0.0f);
    }
  }
}

// channel_rms_norm for bf16 rows of C = 24·n channels with n dividing 32 (the Wan VAE's 96, 192,
// 384) into bf16 rows `width` wide, width a multiple of 8: n lanes share a row, 24 channels each,
// so a warp takes 32/n rows at a time with three 16-byte loads and stores a lane, where the
// one-warp-per-row kernel moves 2 bytes a lane and instruction. Lane j of a row holds its 16-byte
// chunks j, n + j and 2n + j, so each load and store instruction of a warp covers whole 32-byte
// sectors (24 contiguous channels a lane left every sector of an instruction half written).
//
// A warp takes two such groups of rows at a time, both groups' loads issued before either is
// normalized: with one, 24 warps an SM kept too few bytes in flight for the memory's latency
// (ncu: 67 % of DRAM's bandwidth folded, 54 % plain, at 480×832). gamma is staged in shared
// memory rather than held in 24 registers a lane. SiLU takes the fast exponential and division:
// their f32 errors (a few ulp) are far below the bf16 output's rounding.
//
// Folded, warps take their rows frame-minor: consecutive groups are the same 32/n positions of
// every input frame, so the taps of an output row, which come from different input frames, are
// all written while its cache lines are still in L2 (frame-major, they were written a frame's
// 77 MB apart at 480×832 and left L2 partly written, up to three times).
//
// With `kept`, the rows from `kept_from` on (a causal convolution's next cached frames) are also
// stored, folded as they were loaded (before the norm: the folded path caches its input), plain
// as they are written (the plain path caches the convolution's input): a copy of them made here
// instead of by a slice that would read them again.
#define CRN_MAX_CHANNELS 768

// Normalizes (and with `a.silu`, SiLUs) the group of rows whose chunks this lane loaded into
// `v` and stores them: position `p` of input frame `frame` (a row of x for taps == 1, where
// frame is 0; `live` when the row exists). Every lane calls it, live or not, for the row's sum
// of squares crosses lanes.
__device__ __forceinline__ void channel_norm_group(const ChannelRmsNormArgs& a, const float* sg,
                                                  const uint4 (&v)[3], u64 p, unsigned frame,
                                                  bool live, unsigned lanes, unsigned sub) {
  float f[24], ss = 0.0f;
#pragma unroll
  for (int k = 0; k < 3; ++k) unpack_bf16x8(v[k], f + 8 * k);
#pragma unroll
  for (int i = 0; i < 24; ++i) ss += f[i] * f[i];
  for (unsigned o = lanes / 2; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
  const float scale = sqrtf((float)a.channels) / fmaxf(sqrtf(ss), 1e-12f);
  if (!live) return;
  uint4 y[3];
#pragma unroll
  for (int k = 0; k < 3; ++k) {
    const float* g = sg + 8 * (k * lanes + sub);
    unsigned w[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      float y0 = f[8 * k + 2 * j] * scale * g[2 * j];
      float y1 = f[8 * k + 2 * j + 1] * scale * g[2 * j + 1];
      if (a.silu) {
        y0 = __fdividef(y0, 1.0f + __expf(-y0));
        y1 = __fdividef(y1, 1.0f + __expf(-y1));
      }
      w[j] = pack_bf16x2(y0, y1);
    }
    y[k] = make_uint4(w[0], w[1], w[2], w[3]);
  }
  if (a.taps == 1) {
    uint4* dst = (uint4*)((bf16_t*)a.out + p * a.width);
    uint4* copy = a.kept && p >= a.kept_from
                      ? (uint4*)((bf16_t*)a.kept + (p - a.kept_from) * a.width)
                      : nullptr;
#pragma unroll
    for (int k = 0; k < 3; ++k) {
      dst[k * lanes + sub] = y[k];
      if (copy) copy[k * lanes + sub] = y[k];
    }
    for (unsigned j = sub; j < (a.width - a.channels) / 8; j += lanes) {
      dst[a.channels / 8 + j] = make_uint4(0, 0, 0, 0);
      if (copy) copy[a.channels / 8 + j] = make_uint4(0, 0, 0, 0);
    }
    return;
  }
  for (int dt = 0; dt < a.taps; ++dt) {
    const long long t = (long long)frame + a.shift - dt;
    if (t < 0 || t >= a.frames) continue;
    uint4* dst = (uint4*)((bf16_t*)a.out + (((u64)t * a.frame_rows + p) * a.taps + dt) * a.width);
#pragma unroll
    for (int k = 0; k < 3; ++k) dst[k * lanes + sub] = y[k];
  }
}

extern "C" __global__ void channel_rms_norm_bf16(const ChannelRmsNormArgs a) {
  __shared__ float sg[CRN_MAX_CHANNELS];
  for (unsigned c = threadIdx.x; c < a.channels; c += blockDim.x) {
    sg[c] = load_elem(a.gamma, a.gamma_dt, c);
  }
  __syncthreads();
  const unsigned lanes = a.channels / 24, lane = threadIdx.x & 31, sub = lane % lanes;
  const u64 rows_per_warp = 32 / lanes;
  const unsigned warps = gridDim.x * (blockDim.x / 32);
  // Groups of 32/n rows, counted in 32 bits: the host launches under 2^31 rows, so a group plus
  // twice the grid's warps stays below 2^32.
  const bool folded = a.taps > 1;
  const unsigned in_frames = folded ? (unsigned)(a.rows / a.frame_rows) : 1u;
  const u64 span = folded ? a.frame_rows : a.rows;
  const unsigned items = in_frames * (unsigned)((span + rows_per_warp - 1) / rows_per_warp);
  const unsigned warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
  for (unsigned first = 2 * warp; first < items; first += 2 * warps) {
    uint4 v[2][3];
    u64 p[2];
    unsigned frame[2];
    bool live[2];
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      // Position `p` of input frame `frame` (for taps == 1, one frame of all rows).
      const unsigned item = first + u;
      frame[u] = folded ? item % in_frames : 0u;
      p[u] = (u64)(folded ? item / in_frames : item) * rows_per_warp + lane / lanes;
      live[u] = item < items && p[u] < span;
      const uint4* src =
          (const uint4*)((const bf16_t*)a.x + ((u64)frame[u] * span + p[u]) * a.channels) + sub;
#pragma unroll
      for (int k = 0; k < 3; ++k) v[u][k] = live[u] ? src[k * lanes] : make_uint4(0, 0, 0, 0);
      const u64 row = (u64)frame[u] * span + p[u];
      if (folded && a.kept && live[u] && row >= a.kept_from) {
        uint4* dst = (uint4*)((bf16_t*)a.kept + (row - a.kept_from) * a.channels) + sub;
#pragma unroll
        for (int k = 0; k < 3; ++k) dst[k * lanes] = v[u][k];
      }
    }
#pragma unroll
    for (int u = 0; u < 2; ++u) channel_norm_group(a, sg, v[u], p[u], frame[u], live[u], lanes, sub);
  }
}

// The DiT's q/k path in one pass: RMSNorm across all heads of a row of x: [L, H·Dh], then the
// rotary embedding on interleaved pairs of each head with per-token tables cos/sin: [L, Dh/2].
// One block per row; the output is [L, H, Dh] (the same memory as [L, H·Dh]).
struct RmsNormRopeArgs {
  void* out;           // [rows, cols]
  const void* x;       // [rows, cols]
  const void* weight;  // [cols]
  const float* cos;    // [rows, half]
  const float* sin;    // [rows, half]
  float eps;
  unsigned rows;
  unsigned cols;
  unsigned half;       // Dh/2
  int out_dt;
  int x_dt;
  int weight_dt;
};

extern "C" __global__ void rms_norm_rope(const RmsNormRopeArgs a) {
  __shared__ float scratch[32];
  const u64 row = blockIdx.x, first = row * a.cols;

  float ss = 0.0f;
  for (unsigned j = threadIdx.x; j < a.cols; j += blockDim.x) {
    const float v = load_elem(a.x, a.x_dt, first + j);
    ss += v * v;
  }
  const float inv = 1.0f / sqrtf(block_sum(ss, scratch) / (float)a.cols + a.eps);

  for (unsigned p = threadIdx.x; p < a.cols / 2; p += blockDim.x) {
    const unsigned j = p % a.half;
    const float c = a.cos[row * a.half + j], s = a.sin[row * a.half + j];
    const float re = load_elem(a.x, a.x_dt, first + 2 * p) * inv *
                     load_elem(a.weight, a.weight_dt, 2 * p);
    const float im = load_elem(a.x, a.x_dt, first + 2 * p + 1) * inv *
                     load_elem(a.weight, a.weight_dt, 2 * p + 1);
    store_elem(a.out, a.out_dt, first + 2 * p, re * c - im * s);
    store_elem(a.out, a.out_dt, first + 2 * p + 1, re * s + im * c);
  }
}

// rms_norm_rope on rows in registers: a chunk's eight columns are four whole rotary pairs of one
// head (Dh/2 a multiple of 4), whose cos/sin come as one 16-byte load each. Without tables
// (cos null) it is rms_norm.
struct RmsNormRopeRowsArgs {
  void* out;           // [rows, cols]
  const void* x;       // [rows, cols]
  const void* weight;  // [cols]
  const float* cos;    // [rows, half] or null
  const float* sin;    // [rows, half] or null
  float eps;
  unsigned rows;
  unsigned cols;
  unsigned half;       // Dh/2, a multiple of 4 (with tables)
  unsigned warps_per_row;
  unsigned rows_per_block;
  int out_dt;
  int x_dt;
  int weight_dt;
};

extern "C" __global__ void rms_norm_rope_rows(const RmsNormRopeRowsArgs a) {
  __shared__ float scratch[32];
  const RowSlot s = row_slot(a.warps_per_row, a.rows_per_block, a.rows);
  const u64 first = s.row * a.cols;
  float w[ROW_CHUNKS][8];
  float ss = 0.0f;
#pragma unroll
  for (int u = 0; u < ROW_CHUNKS; ++u) {
    if (has_chunk(s, u, a.cols)) load8(a.x, a.x_dt, first + chunk_col(s, u), w[u]);
  }
#pragma unroll
  for (int u = 0; u < ROW_CHUNKS; ++u) {
    if (has_chunk(s, u, a.cols)) {
#pragma unroll
      for (int k = 0; k < 8; ++k) ss += w[u][k] * w[u][k];
    }
  }
  const float inv = 1.0f / sqrtf(row_reduce<false>(ss, s, scratch) / (float)a.cols + a.eps);
#pragma unroll
  for (int u = 0; u < ROW_CHUNKS; ++u) {
    if (!has_chunk(s, u, a.cols)) continue;
    const unsigned c = chunk_col(s, u);
    float g[8], y[8];
    load8(a.weight, a.weight_dt, c, g);
    if (!a.cos) {
#pragma unroll
      for (int k = 0; k < 8; ++k) y[k] = w[u][k] * inv * g[k];
      store8(a.out, a.out_dt, first + c, y);
      continue;
    }
    const u64 t = s.row * a.half + (c / 2) % a.half;
    const float4 cs = *reinterpret_cast<const float4*>(a.cos + t);
    const float4 sn = *reinterpret_cast<const float4*>(a.sin + t);
    const float cv[4] = {cs.x, cs.y, cs.z, cs.w}, sv[4] = {sn.x, sn.y, sn.z, sn.w};
#pragma unroll
    for (int p = 0; p < 4; ++p) {
      const float re = w[u][2 * p] * inv * g[2 * p];
      const float im = w[u][2 * p + 1] * inv * g[2 * p + 1];
      y[2 * p] = re * cv[p] - im * sv[p];
      y[2 * p + 1] = re * sv[p] + im * cv[p];
    }
    store8(a.out, a.out_dt, first + c, y);
  }
}
