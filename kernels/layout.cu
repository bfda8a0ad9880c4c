// Data movement: strided 2-D copies (slice, concat), dimension permutes, the DiT's patch
// layout, nearest-neighbour upsampling and zero padding. Pure copies: results are bit-exact. One
// thread per output element, grid-stride.
#include "common.cuh"

// Pure copies move elements of `esize` bytes (4: f32, 2: bf16) without looking at them.
template <typename T>
__device__ __forceinline__ void copy_elem(void* dst, u64 di, const void* src, u64 si) {
  ((T*)dst)[di] = ((const T*)src)[si];
}

__device__ __forceinline__ void copy_elem(int esize, void* dst, u64 di, const void* src, u64 si) {
  if (esize == 2) {
    copy_elem<unsigned short>(dst, di, src, si);
  } else {
    copy_elem<unsigned>(dst, di, src, si);
  }
}

// dst[r * dst_pitch + c] = src[r * src_pitch + c] for r < rows, c < cols (elements; the
// pointers already carry the start offsets).
struct Copy2dArgs {
  void* dst;
  const void* src;
  u64 rows;
  u64 cols;
  u64 dst_pitch;
  u64 src_pitch;
  int esize;
};

extern "C" __global__ void copy2d(const Copy2dArgs a) {
  GRID_STRIDE(i, a.rows * a.cols) {
    const u64 r = i / a.cols, c = i % a.cols;
    copy_elem(a.esize, a.dst, r * a.dst_pitch + c, a.src, r * a.src_pitch + c);
  }
}

#define PERMUTE_MAX_RANK 8

// out[i] = x[sum_d index_d(i) * src_strides[d]] with index_d the row-major digits of i over
// out_shape: output dimension d is input dimension perm[d], whose stride the host put in
// src_strides[d].
struct PermuteArgs {
  void* out;
  const void* x;
  u64 n;
  u64 out_shape[PERMUTE_MAX_RANK];
  u64 src_strides[PERMUTE_MAX_RANK];
  int rank;
  int esize;
};

extern "C" __global__ void permute(const PermuteArgs a) {
  GRID_STRIDE(i, a.n) {
    u64 rest = i, src = 0;
    for (int d = a.rank - 1; d >= 0; --d) {
      src += (rest % a.out_shape[d]) * a.src_strides[d];
      rest /= a.out_shape[d];
    }
    copy_elem(a.esize, a.out, i, a.x, src);
  }
}

// The token grid and patch of patchify / unpatchify: a [C, F, H, W] video of gf x gh x gw
// patches of pt x ph x pw.
struct PatchArgs {
  float* out;
  const float* x;
  u64 n;  // output elements
  unsigned c, gf, gh, gw, pt, ph, pw;
};

// [C, F, H, W] -> [gf*gh*gw, C*pt*ph*pw], features ordered (c, kt, kh, kw).
extern "C" __global__ void patchify_f32(const PatchArgs a) {
  const u64 f = (u64)a.gf * a.pt, h = (u64)a.gh * a.ph, w = (u64)a.gw * a.pw;
  const u64 feat = (u64)a.c * a.pt * a.ph * a.pw;
  GRID_STRIDE(i, a.n) {
    const u64 token = i / feat, j = i % feat;
    const u64 kw = j % a.pw, kh = (j / a.pw) % a.ph, kt = (j / ((u64)a.pw * a.ph)) % a.pt;
    const u64 ci = j / ((u64)a.pw * a.ph * a.pt);
    const u64 tw = token % a.gw, th = (token / a.gw) % a.gh, tf = token / ((u64)a.gw * a.gh);
    a.out[i] = a.x[((ci * f + tf * a.pt + kt) * h + th * a.ph + kh) * w + tw * a.pw + kw];
  }
}

// [gf*gh*gw, pt*ph*pw*C] -> [C, F, H, W], features ordered (kt, kh, kw, c).
extern "C" __global__ void unpatchify_f32(const PatchArgs a) {
  const u64 f = (u64)a.gf * a.pt, h = (u64)a.gh * a.ph, w = (u64)a.gw * a.pw;
  const u64 feat = (u64)a.c * a.pt * a.ph * a.pw;
  GRID_STRIDE(i, a.n) {
    const u64 xo = i % w, yo = (i / w) % h, fo = (i / (w * h)) % f, ci = i / (w * h * f);
    const u64 token = ((fo / a.pt) * a.gh + yo / a.ph) * a.gw + xo / a.pw;
    const u64 j = (((fo % a.pt) * a.ph + yo % a.ph) * a.pw + xo % a.pw) * a.c + ci;
    a.out[i] = a.x[token * feat + j];
  }
}

// [C, F, H, W] -> [C, F*sf, H*sh, W*sw], each output reading its nearest source element.
struct UpsampleArgs {
  void* out;
  const void* x;
  u64 n;  // output elements
  unsigned f, h, w;
  unsigned sf, sh, sw;
  int esize;
};

extern "C" __global__ void upsample_nearest(const UpsampleArgs a) {
  const u64 fo = (u64)a.f * a.sf, ho = (u64)a.h * a.sh, wo = (u64)a.w * a.sw;
  GRID_STRIDE(i, a.n) {
    const u64 xo = i % wo, yo = (i / wo) % ho, to = (i / (wo * ho)) % fo, ci = i / (wo * ho * fo);
    copy_elem(a.esize, a.out, i, a.x, ((ci * a.f + to / a.sf) * a.h + yo / a.sh) * a.w + xo / a.sw);
  }
}

// [C, F, H, W] -> [C, F + pf, H + ph, W + pw] with x placed at (f0, h0, w0) and zeros around:
// the asymmetric part of a convolution's padding, which cuDNN does not take.
struct PadArgs {
  void* out;
  const void* x;
  u64 n;  // output elements
  unsigned f, h, w;     // input
  unsigned fo, ho, wo;  // output
  unsigned f0, h0, w0;  // leading padding
  int esize;
};

extern "C" __global__ void pad_zero(const PadArgs a) {
  GRID_STRIDE(i, a.n) {
    const long long xo = (long long)(i % a.wo) - a.w0;
    const long long yo = (long long)((i / a.wo) % a.ho) - a.h0;
    const long long to = (long long)((i / ((u64)a.wo * a.ho)) % a.fo) - a.f0;
    const u64 ci = i / ((u64)a.wo * a.ho * a.fo);
    if (xo < 0 || xo >= a.w || yo < 0 || yo >= a.h || to < 0 || to >= a.f) {
      if (a.esize == 2) {
        ((unsigned short*)a.out)[i] = 0;
      } else {
        ((unsigned*)a.out)[i] = 0;
      }
    } else {
      copy_elem(a.esize, a.out, i, a.x, ((ci * a.f + to) * a.h + yo) * a.w + xo);
    }
  }
}

// out[b, c, r] = x[b, r, c] (+ bias[c]) for x: [batch, rows, cols]: the moves between channel-
// first and channels-last around cuDNN's convolutions, whose tensor-core kernels want channels
// last; the way back adds the convolution's bias (through f32, a no-op rounding for bf16 copies
// without one). One 32x8 block per 32x32 tile, through shared memory, so both the reads and the
// writes are coalesced.
struct TransposeArgs {
  void* out;
  const void* x;
  const void* bias;  // [cols] or null
  u64 batch, rows, cols;
  int dt;
  int bias_dt;
};

extern "C" __global__ void transpose_tiles(const TransposeArgs a) {
  __shared__ float tile[32][33];
  const u64 col_tiles = (a.cols + 31) / 32, row_tiles = (a.rows + 31) / 32;
  const u64 t = blockIdx.x;
  const u64 tc = t % col_tiles, tr = (t / col_tiles) % row_tiles, b = t / (col_tiles * row_tiles);
  const u64 base = b * a.rows * a.cols;
  for (unsigned j = threadIdx.y; j < 32; j += 8) {
    const u64 r = tr * 32 + j, c = tc * 32 + threadIdx.x;
    if (r < a.rows && c < a.cols) tile[j][threadIdx.x] = load_elem(a.x, a.dt, base + r * a.cols + c);
  }
  __syncthreads();
  for (unsigned j = threadIdx.y; j < 32; j += 8) {
    const u64 c = tc * 32 + j, r = tr * 32 + threadIdx.x;
    if (r < a.rows && c < a.cols) {
      float v = tile[threadIdx.x][j];
      if (a.bias) v += load_elem(a.bias, a.bias_dt, c);
      store_elem(a.out, a.dt, base + c * a.rows + r, v);
    }
  }
}
