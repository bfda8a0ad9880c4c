// Standalone check and timing of a flash-attention kernel source (kernels/flash.cu or a variant of
// it) with nvcc on the GPU host, for iterating on the kernel without a Rust build:
//
//   nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a -I. -Ikernels \
//        -DFLASH_SRC='"kernels/flash.cu"' -o /tmp/flash_bench tools/gpu/flash_bench.cu
//   /tmp/flash_bench
//
// With -DPORTABLE it runs the mma.sync kernel (flash_attention_mma_bf16) instead of the wgmma one.
//
// Checks the kernel against a naive f32 kernel on bf16 inputs (ragged sizes, NaN-poisoned
// output), then times it at the Wan shapes (CUDA events, median of 20 after 3 warm-ups) and
// prints TFLOP/s. The shipped kernel's own checks are the Rust device checks (turbine-gpucheck).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <algorithm>

#include FLASH_SRC

#ifdef PORTABLE
#define KERNEL flash_attention_mma_bf16
#define ROWS FM_BQ
#define THREADS FM_THREADS
#define SMEM FM_SMEM_BYTES
#else
#define KERNEL flash_attention_bf16
#define ROWS FA_BQ
#define THREADS FA_THREADS
#define SMEM FA_SMEM_BYTES
#endif

#define CK(x)                                                                          \
  do {                                                                                 \
    cudaError_t e = (x);                                                               \
    if (e != cudaSuccess) {                                                            \
      printf("%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e));         \
      exit(1);                                                                         \
    }                                                                                  \
  } while (0)

__global__ void naive(float* out, const bf16_t* q, const bf16_t* k, const bf16_t* v, int lq, int lk,
                      int heads, float scale) {
  const int row = blockIdx.x * blockDim.x + threadIdx.x, h = blockIdx.y;
  if (row >= lq) return;
  const u64 stride = (u64)heads * 128;
  float m = -1e30f, l = 0.f, acc[128];
  for (int d = 0; d < 128; ++d) acc[d] = 0.f;
  for (int j = 0; j < lk; ++j) {
    float s = 0.f;
    for (int d = 0; d < 128; ++d)
      s += bf16_to_f32(q[row * stride + h * 128 + d]) * bf16_to_f32(k[j * stride + h * 128 + d]);
    s *= scale;
    const float mn = fmaxf(m, s), c = expf(m - mn), p = expf(s - mn);
    l = l * c + p;
    for (int d = 0; d < 128; ++d) acc[d] = acc[d] * c + p * bf16_to_f32(v[j * stride + h * 128 + d]);
    m = mn;
  }
  for (int d = 0; d < 128; ++d) out[row * stride + h * 128 + d] = acc[d] / l;
}

// Sum-of-four-uniforms normal-ish values from a hash of the index: random data, made on the GPU.
__global__ void fill(bf16_t* x, u64 n, float std, unsigned seed) {
  GRID_STRIDE(i, n) {
    float s = 0.f;
    unsigned h = (unsigned)i * 2654435761u ^ seed * 2246822519u;
    for (int k = 0; k < 4; ++k) {
      h ^= h >> 15;
      h *= 2246822519u;
      h ^= h >> 13;
      h *= 3266489917u;
      h ^= h >> 16;
      s += (h >> 8) * (1.f / 16777216.f) - 0.5f;
    }
    x[i] = f32_to_bf16(s * std * 1.7320508f);
  }
}

struct Problem {
  int lq, lk, heads;
  bf16_t *q, *k, *v, *out;
  Problem(int lq_, int lk_, int h, float qstd, unsigned seed) : lq(lq_), lk(lk_), heads(h) {
    auto make = [](size_t n, float std, unsigned seed) {
      bf16_t* d;
      CK(cudaMalloc(&d, n * 2));
      fill<<<1024, 256>>>(d, n, std, seed);
      CK(cudaGetLastError());
      return d;
    };
    q = make((size_t)lq * h * 128, qstd, seed);
    k = make((size_t)lk * h * 128, 1.f, seed + 1);
    v = make((size_t)lk * h * 128, 1.f, seed + 2);
    CK(cudaMalloc(&out, (size_t)lq * h * 128 * 2));
    CK(cudaMemset(out, 0xff, (size_t)lq * h * 128 * 2));
  }
  void launch() {
    FlashArgs a{out, q, k, v, 1.4426950408889634f / sqrtf(128.f), lq, lk, heads};
    KERNEL<<<dim3((lq + ROWS - 1) / ROWS, heads), THREADS, SMEM>>>(a);
  }
};

int main() {
  setvbuf(stdout, NULL, _IONBF, 0);
  CK(cudaFuncSetAttribute(KERNEL, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM));
  int ok = 1;
  const int cases[][4] = {{300, 300, 3, 1}, {200, 77, 2, 1}, {129, 512, 2, 1}, {1000, 1000, 2, 4}, {1, 16, 2, 1}};
  for (auto& c : cases) {
    Problem p(c[0], c[1], c[2], (float)c[3], 7);
    p.launch();
    CK(cudaGetLastError());
    float* ref;
    size_t n = (size_t)c[0] * c[2] * 128;
    CK(cudaMalloc(&ref, n * 4));
    naive<<<dim3((c[0] + 63) / 64, c[2]), 64>>>(ref, p.q, p.k, p.v, c[0], c[1], c[2], 1.f / sqrtf(128.f));
    CK(cudaDeviceSynchronize());
    std::vector<unsigned short> got(n);
    std::vector<float> want(n);
    CK(cudaMemcpy(got.data(), p.out, n * 2, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(want.data(), ref, n * 4, cudaMemcpyDeviceToHost));
    double maxd = 0, maxr = 0;
    for (size_t i = 0; i < n; ++i) {
      unsigned u = (unsigned)got[i] << 16;
      float g;
      memcpy(&g, &u, 4);
      double d = std::isnan(g) ? 1e30 : fabs(g - want[i]);
      maxd = std::max(maxd, d);
      maxr = std::max(maxr, (double)fabs(want[i]));
    }
    const double err = maxd / maxr;
    ok &= err < 1e-2;
    printf("check q %5d kv %5d h %d: max rel %.2e %s\n", c[0], c[1], c[2], err, err < 1e-2 ? "ok" : "FAIL");
  }
  const int shapes[][2] = {{32760, 12}, {75600, 40}};
  for (auto& s : shapes) {
    Problem p(s[0], s[0], s[1], 1.f, 11);
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    std::vector<float> times;
    const int iters = s[1] == 40 ? 5 : 20;
    for (int i = 0; i < 3 + iters; ++i) {
      CK(cudaEventRecord(a));
      p.launch();
      CK(cudaEventRecord(b));
      CK(cudaEventSynchronize(b));
      float ms;
      CK(cudaEventElapsedTime(&ms, a, b));
      if (i >= 3) times.push_back(ms);
    }
    CK(cudaGetLastError());
    std::sort(times.begin(), times.end());
    const double ms = times[times.size() / 2];
    const double flops = 4.0 * s[1] * (double)s[0] * s[0] * 128;
    printf("time %d x %d x 128: %.3f ms, %.1f TFLOP/s\n", s[1], s[0], ms, flops / (ms * 1e-3) / 1e12);
  }
  printf(ok ? "flash_bench: ok\n" : "flash_bench: FAIL\n");
  return ok ? 0 : 1;
}
