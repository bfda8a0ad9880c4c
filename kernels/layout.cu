// Data movement: strided 2-D copies (slice, concat), dimension permutes, the DiT's patch
// layout, the VAE upsample's phase interleave and zero padding. Pure copies: results are
// bit-exact. One thread per output element (or 16-byte unit), grid-stride.
#include "common.cuh"

// Pure copies move elements of `esize` bytes (4: f32, 2: bf16; 16: the 16-byte units the host
// gives permute and interleave_phases where rows allow) without looking at them.
template <typename T>
__device__ __forceinline__ void copy_elem(void* dst, u64 di, const void* src, u64 si) {
  ((T*)dst)[di] = ((const T*)src)[si];
}

__device__ __forceinline__ void copy_elem(int esize, void* dst, u64 di, const void* src, u64 si) {
  if (esize == 2) {
    copy_elem<unsigned short>(dst, di, src, si);
  } else if (esize == 16) {
    copy_elem<uint4>(dst, di, src, si);
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

template <typename I>
__device__ __forceinline__ void copy2d_at(const Copy2dArgs& a, I i) {
  const I r = i / (I)a.cols, c = i % (I)a.cols;
  copy_elem(a.esize, a.dst, (u64)r * a.dst_pitch + c, a.src, (u64)r * a.src_pitch + c);
}

extern "C" __global__ void copy2d(const Copy2dArgs a) {
  GRID_STRIDE_NARROW(i, a.rows * a.cols, copy2d_at(a, i))
}

#define PERMUTE_MAX_RANK 8

// out[i] = x[sum_d index_d(i) * src_strides[d]] with index_d the row-major digits of i over
// out_shape: output dimension d is input dimension perm[d], whose stride the host put in
// src_strides[d]. The host merges dimensions that walk the input as one and moves 16-byte units
// where the innermost dimension is contiguous (cuda/layout.rs), so most permutes here are rank
// 2-4, with their digits in 32 bits where the element count allows.
struct PermuteArgs {
  void* out;
  const void* x;
  u64 n;
  u64 out_shape[PERMUTE_MAX_RANK];
  u64 src_strides[PERMUTE_MAX_RANK];
  int rank;
  int esize;
};

template <typename I>
__device__ __forceinline__ u64 permute_source(const PermuteArgs& a, I i) {
  I rest = i;
  u64 src = 0;
  for (int d = a.rank - 1; d > 0; --d) {
    const I extent = (I)a.out_shape[d];
    src += (u64)(rest % extent) * a.src_strides[d];
    rest /= extent;
  }
  return src + (u64)rest * a.src_strides[0];
}

extern "C" __global__ void permute(const PermuteArgs a) {
  GRID_STRIDE_NARROW(i, a.n, copy_elem(a.esize, a.out, i, a.x, permute_source(a, i)))
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

// [F, H + 1, W + 1, 4C] -> [F, 2H, 2W, C]: output pixel (2y + a, 2x + b) copies channels
// [(2a + b)C, (2a + b + 1)C) of input pixel (y + a, x + b) — a 2x2 convolution's four output
// phases put where the 2x-upsampled 3x3 convolution's pixels go. The host moves 16-byte units
// when C channels are a whole number of them (the VAE's case), elements otherwise.
struct PhaseArgs {
  void* out;
  const void* x;
  u64 n;               // output units
  unsigned ho, wo;     // output pixels
  unsigned run;        // units a pixel's C channels
  int esize;           // unit bytes
};

// The source unit of output unit `i`, in I's arithmetic.
template <typename I>
__device__ __forceinline__ u64 phase_source(const PhaseArgs& a, I i) {
  const I k = i % a.run, p = i / a.run;
  const I xo = p % a.wo, q = p / a.wo, yo = q % a.ho, to = q / a.ho;
  const I h1 = a.ho / 2 + 1, w1 = a.wo / 2 + 1;
  const I phase = 2 * (yo & 1) + (xo & 1);
  return (((u64)(to * h1 + (yo + 1) / 2) * w1 + (xo + 1) / 2) * 4 + phase) * a.run + k;
}

extern "C" __global__ void interleave_phases(const PhaseArgs a) {
  GRID_STRIDE_NARROW(i, a.n, copy_elem(a.esize, a.out, i, a.x, phase_source(a, i)))
}

// [F, H, W, C] -> [F + pf, H + ph, W + pw, C] with x placed at (f0, h0, w0) and zeros around:
// the asymmetric part of a convolution's padding, which cuDNN does not take.
struct PadArgs {
  void* out;
  const void* x;
  u64 n;  // output elements
  unsigned c;
  unsigned f, h, w;     // input
  unsigned fo, ho, wo;  // output
  unsigned f0, h0, w0;  // leading padding
  int esize;
};

template <typename I>
__device__ __forceinline__ void pad_at(const PadArgs& a, I i) {
  const I ci = i % (I)a.c, p = i / (I)a.c, q = p / (I)a.wo;
  const long long xo = (long long)(p % (I)a.wo) - a.w0;
  const long long yo = (long long)(q % (I)a.ho) - a.h0;
  const long long to = (long long)(q / (I)a.ho) - a.f0;
  if (xo < 0 || xo >= a.w || yo < 0 || yo >= a.h || to < 0 || to >= a.f) {
    if (a.esize == 2) {
      ((unsigned short*)a.out)[i] = 0;
    } else {
      ((unsigned*)a.out)[i] = 0;
    }
  } else {
    copy_elem(a.esize, a.out, i, a.x, (((u64)to * a.h + yo) * a.w + xo) * a.c + ci);
  }
}

extern "C" __global__ void pad_zero(const PadArgs a) { GRID_STRIDE_NARROW(i, a.n, pad_at(a, i)) }

