// Direct 3-D convolution of a channel-first video x: [Cin, F, H, W] with w: [Cout, Cin, kt, kh,
// kw], zero padding (before, after) per dim, optional bias [Cout]. One thread per output element
// with x fastest, so a warp shares one output channel (weight reads broadcast) and reads input
// rows coalesced at stride 1. The fallback when cuDNN cannot be loaded (shared/tensor/src/cuda/
// conv.rs): slow, f32 only, but exact to f32 rounding.
#include "common.cuh"

struct Conv3dArgs {
  float* out;          // [Cout, Fo, Ho, Wo]
  const float* x;      // [Cin, F, H, W]
  const float* w;      // [Cout, Cin, kt, kh, kw]
  const float* bias;   // [Cout] or null
  u64 n;               // output elements
  int cin, f, h, w_;   // input
  int fo, ho, wo;      // output
  int kt, kh, kw;      // kernel
  int st, sh, sw;      // stride
  int pt, ph, pw;      // leading zero padding
};

extern "C" __global__ void conv3d_f32(const Conv3dArgs a) {
  GRID_STRIDE(i, a.n) {
    const int xo = i % a.wo;
    const int yo = (i / a.wo) % a.ho;
    const int to = (i / ((u64)a.wo * a.ho)) % a.fo;
    const u64 co = i / ((u64)a.wo * a.ho * a.fo);
    const float* wc = a.w + co * a.cin * a.kt * a.kh * a.kw;
    float acc = 0.0f;
    for (int ci = 0; ci < a.cin; ++ci) {
      for (int dt = 0; dt < a.kt; ++dt) {
        const int fi = to * a.st + dt - a.pt;
        if (fi < 0 || fi >= a.f) continue;
        for (int dy = 0; dy < a.kh; ++dy) {
          const int yi = yo * a.sh + dy - a.ph;
          if (yi < 0 || yi >= a.h) continue;
          const float* xrow = a.x + (((u64)ci * a.f + fi) * a.h + yi) * a.w_;
          const float* wrow = wc + ((ci * a.kt + dt) * a.kh + dy) * a.kw;
          for (int dx = 0; dx < a.kw; ++dx) {
            const int xi = xo * a.sw + dx - a.pw;
            if (xi >= 0 && xi < a.w_) acc += xrow[xi] * wrow[dx];
          }
        }
      }
    }
    a.out[i] = acc + (a.bias ? a.bias[co] : 0.0f);
  }
}
