// Direct 3-D convolution of a channels-last video x: [F, H, W, Cin] with w: [Cout, kt, kh, kw,
// Cin], zero padding (before, after) per dim, optional bias [Cout]. One thread per output element
// with the output channel fastest, so a warp reads one input pixel's channels (broadcast) against
// consecutive filters. The fallback when cuDNN cannot be loaded (shared/tensor/src/cuda/conv.rs):
// slow, f32 only, but exact to f32 rounding.
#include "common.cuh"

struct Conv3dArgs {
  float* out;              // [Fo, Ho, Wo, Cout]
  const float* x;          // [F, H, W, Cin]
  const float* w;          // [Cout, kt, kh, kw, Cin]
  const float* bias;       // [Cout] or null
  u64 n;                   // output elements
  int cin, f, h, w_;       // input
  int cout, fo, ho, wo;    // output
  int kt, kh, kw;          // kernel
  int st, sh, sw;          // stride
  int pt, ph, pw;          // leading zero padding
};

extern "C" __global__ void conv3d_f32(const Conv3dArgs a) {
  GRID_STRIDE(i, a.n) {
    const int co = i % a.cout;
    const u64 p = i / a.cout;
    const int xo = p % a.wo;
    const int yo = (p / a.wo) % a.ho;
    const int to = p / ((u64)a.wo * a.ho);
    const float* wc = a.w + (u64)co * a.kt * a.kh * a.kw * a.cin;
    float acc = 0.0f;
    for (int dt = 0; dt < a.kt; ++dt) {
      const int fi = to * a.st + dt - a.pt;
      if (fi < 0 || fi >= a.f) continue;
      for (int dy = 0; dy < a.kh; ++dy) {
        const int yi = yo * a.sh + dy - a.ph;
        if (yi < 0 || yi >= a.h) continue;
        for (int dx = 0; dx < a.kw; ++dx) {
          const int xi = xo * a.sw + dx - a.pw;
          if (xi < 0 || xi >= a.w_) continue;
          const float* px = a.x + (((u64)fi * a.h + yi) * a.w_ + xi) * a.cin;
          const float* wt = wc + ((dt * a.kh + dy) * a.kw + dx) * a.cin;
          for (int ci = 0; ci < a.cin; ++ci) acc += px[ci] * wt[ci];
        }
      }
    }
    a.out[i] = acc + (a.bias ? a.bias[co] : 0.0f);
  }
}

// Implicit-GEMM 3-D convolution onto few output channels (cout <= 8: the VAE's 3-channel head),
// bf16 channels-last, stride 1, on mma.sync tensor cores (sm_80 and later). cuDNN's kernels
// tile the output channels 32 or more wide and ran this shape at 17 TFLOP/s; here the output
// channels are one n8 column of m16n8k16 MMAs whose rows are output pixels and whose k runs over
// input channels, tap by tap.
//
// A CTA computes NC_FRAMES output frames x NC_ROWS rows x NC_BW pixels; warp r takes row r, all
// its pixels (four m16 tiles) and frames (64 accumulator floats a thread). The CTA walks the
// input rows its outputs read, one (frame, row) strip of NC_BW + kw - 1 pixels at a time,
// double-buffered by cp.async (zero-filled past the row's ends: the spatial padding). A strip
// reaches warp r through one dh, or not at all (the warp skips it), and output frame j through
// dt = fi + pt - fo0 - j: each A fragment read from it (16 pixels shifted by the tap's dw) serves
// up to kt MMAs. The filter sits in shared memory as ready B fragments, one 8-byte word a lane
// and (tap, 16 channels).
//
// Summation is f32; the bias and the residual are added in f32 and the sum rounded to bf16
// once, as cuDNN's fused epilogue does.
#include "mma.cuh"

#define NC_ROWS 4
#define NC_THREADS (NC_ROWS * 32)
#define NC_TILES 4
#define NC_BW (NC_TILES * 16)
#define NC_FRAMES 4

struct NarrowConvArgs {
  bf16_t* out;             // [Fo, Ho, Wo, cout]
  const bf16_t* x;         // [F, H, W, cin]
  const bf16_t* w;         // [cout, kt, kh, kw, cin]
  const bf16_t* bias;      // [cout] or null
  const bf16_t* residual;  // [Fo, Ho, Wo, cout] or null
  int cin, f, h, w_;       // input; cin a multiple of 16
  int cout, fo, ho, wo;    // output; cout <= 8
  int kt, kh, kw;          // kernel
  int pt, ph, pw;          // leading zero padding
};

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
// Bytes of a strip pixel in shared memory: its channels and 16 more, an odd number of 16-byte
// chunks (cin / 8 is even), so the eight rows one ldmatrix matrix reads fall in eight different
// bank groups.
__device__ __forceinline__ int nc_pitch(int cin) { return 2 * cin + 16; }

// Stages input row (fi, hi), pixels wo0 - pw .. wo0 - pw + NC_BW + kw - 2, at `strip`.
__device__ __forceinline__ void nc_load_strip(const NarrowConvArgs& a, unsigned strip, int fi,
                                              int hi, int wo0) {
  const int chunks = a.cin >> 3, pixels = NC_BW + a.kw - 1, pitch = nc_pitch(a.cin);
  const bf16_t* row = a.x + ((u64)fi * a.h + hi) * a.w_ * a.cin;
  for (int i = threadIdx.x; i < pixels * chunks; i += NC_THREADS) {
    const int p = i / chunks, c = i - p * chunks;
    const int wi = wo0 - a.pw + p;
    const bool inside = wi >= 0 && wi < a.w_;
    cp_async16(strip + p * pitch + c * 16, row + (inside ? (u64)wi * a.cin + c * 8 : 0),
               inside ? 16 : 0);
  }
}
#endif

extern "C" __global__ void __launch_bounds__(NC_THREADS, 3)
    conv3d_narrow_bf16(const NarrowConvArgs a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  extern __shared__ __align__(16) unsigned char nc_smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int wo0 = blockIdx.x * NC_BW, ho0 = blockIdx.y * NC_ROWS, fo0 = blockIdx.z * NC_FRAMES;
  const int k16 = a.cin >> 4, taps = a.kt * a.kh * a.kw;
  const unsigned strips = smem_addr(nc_smem) + taps * k16 * 256;
  const int pitch = nc_pitch(a.cin), strip_bytes = (NC_BW + a.kw - 1) * pitch;

  // The input frames and rows this CTA's outputs read, clipped to the input.
  const int frames = min(NC_FRAMES, a.fo - fo0), rows = min(NC_ROWS, a.ho - ho0);
  const int f_lo = max(0, fo0 - a.pt), f_hi = min(a.f - 1, fo0 + frames - 1 + a.kt - 1 - a.pt);
  const int h_lo = max(0, ho0 - a.ph), h_hi = min(a.h - 1, ho0 + rows - 1 + a.kh - 1 - a.ph);
  const int nh = h_hi - h_lo + 1, n = (f_hi - f_lo + 1) * nh;
  if (n > 0) {
    nc_load_strip(a, strips, f_lo, h_lo, wo0);
  }
  cp_async_commit();

  // B fragments: lane 4g + q holds w[g][tap][16 c + 2q, +1] (low word) and
  // w[g][tap][16 c + 8 + 2q, +1] (high word) at word ((tap k16 + c) 32 + lane) 2 + high. Read in
  // w's own order, a warp's loads coalesce; lanes past cout hold zeros.
  {
    const unsigned* w32 = (const unsigned*)a.w;
    unsigned* dst = (unsigned*)nc_smem;
    const int half = a.cin >> 1, per_co = taps * half;
    for (int i = threadIdx.x; i < 8 * per_co; i += NC_THREADS) {
      const int co = i / per_co, rest = i - co * per_co;
      const int tap = rest / half, k = 2 * (rest - tap * half);
      const int c = k >> 4, within = k & 15, high = within >> 3;
      const int l = 4 * co + ((within & 7) >> 1);
      dst[((tap * k16 + c) * 32 + l) * 2 + high] = co < a.cout ? w32[(u64)co * per_co + rest] : 0u;
    }
  }

  float acc[NC_FRAMES][NC_TILES][4];
#pragma unroll
  for (int j = 0; j < NC_FRAMES; ++j)
#pragma unroll
    for (int t = 0; t < NC_TILES; ++t)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[j][t][e] = 0.0f;

  // ldmatrix rows: lane l reads pixel (l & 7) + 8 ((l >> 3) & 1) of each 16-pixel tile, channel
  // chunk l >> 4 of each 16-channel step.
  const int m = lane >> 3;
  const unsigned lane_off = ((lane & 7) + (m & 1) * 8) * pitch + (m >> 1) * 16;

  for (int s = 0; s < n; ++s) {
    if (s + 1 < n) {
      nc_load_strip(a, strips + ((s + 1) & 1) * strip_bytes, f_lo + (s + 1) / nh,
                    h_lo + (s + 1) % nh, wo0);
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const int fi = f_lo + s / nh, dh = h_lo + s % nh + a.ph - ho0 - warp;
    if (warp < rows && dh >= 0 && dh < a.kh) {
      // Output frame j takes this strip through dt = fi + pt - fo0 - j: the byte offset of tap
      // (dt, dh, dw = 0)'s fragments, or -1 where no such tap exists.
      int tap_at[NC_FRAMES];
#pragma unroll
      for (int j = 0; j < NC_FRAMES; ++j) {
        const int dt = fi + a.pt - fo0 - j;
        tap_at[j] = j < frames && dt >= 0 && dt < a.kt ? (dt * a.kh + dh) * a.kw * k16 * 256 : -1;
      }
      const unsigned base = strips + (s & 1) * strip_bytes + lane_off;
      for (int dw = 0; dw < a.kw; ++dw) {
        for (int c = 0; c < k16; ++c) {
          unsigned af[NC_TILES][4];
#pragma unroll
          for (int t = 0; t < NC_TILES; ++t)
            ldmatrix_x4(af[t], base + (16 * t + dw) * pitch + c * 32);
          const unsigned char* b_at = nc_smem + (dw * k16 + c) * 256 + lane * 8;
#pragma unroll
          for (int j = 0; j < NC_FRAMES; ++j)
            if (tap_at[j] >= 0) {
              const uint2 b = *(const uint2*)(b_at + tap_at[j]);
#pragma unroll
              for (int t = 0; t < NC_TILES; ++t) mma_bf16(acc[j][t], af[t], b.x, b.y);
            }
        }
      }
    }
    __syncthreads();
  }

  // Accumulator e of lane 4g + q: pixel g + 8 (e >> 1) of its tile, channel 2q + (e & 1).
  const int g = lane >> 2, q = lane & 3;
  if (warp >= rows) return;
#pragma unroll
  for (int j = 0; j < NC_FRAMES; ++j) {
    if (j >= frames) continue;
#pragma unroll
    for (int t = 0; t < NC_TILES; ++t)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int px = wo0 + 16 * t + g + 8 * (e >> 1), co = 2 * q + (e & 1);
        if (px >= a.wo || co >= a.cout) continue;
        const u64 o = (((u64)(fo0 + j) * a.ho + ho0 + warp) * a.wo + px) * a.cout + co;
        float v = acc[j][t][e];
        if (a.bias) v += bf16_to_f32(a.bias[co]);
        if (a.residual) v += bf16_to_f32(a.residual[o]);
        a.out[o] = f32_to_bf16(v);
      }
  }
#endif
}
