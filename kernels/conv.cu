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
