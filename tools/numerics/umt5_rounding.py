"""Where a bf16 umT5 encoder's error comes from, emulated on the CPU with numpy (issue 7's umT5
parity gate).

A umT5 encoder (24 layers, T5 initialisation as tools/gpu/umt5_parity.py draws it, width scaled
down to 1024 / 2560 so it runs in seconds) evaluated with bf16 rounding (round to nearest even)
applied exactly where each implementation rounds:

- `fp32`: every value f32 (the reference);
- `transformers bf16`: where PyTorch's bf16 `UMT5EncoderModel` rounds (every op's output: the
  residual stream, the scores before and after the bias, the normalized probabilities, each step
  of `NewGELUActivation`'s formula);
- `same points, other sums`: those rounding points exactly, the GEMMs summed in another order
  (f64, then rounded as f32 would be): what any second bf16 implementation can at best be;
- `turbine before`: f32 residual stream, norm rounded once, f32 scores, unnormalized bf16
  probabilities (flash attention), GELU fused into the GEMM, every GEMM output rounded to bf16;
- `turbine`: as before, but the output projection and `fc2` add into the f32 residual stream in
  the GEMM's f32 accumulator and the gated-GELU product is formed from f32 GEMM outputs
  (`Backend::linear_residual`, `Backend::linear_gated_gelu`).

It prints each variant's relative L2 error against fp32 and against transformers' bf16.
`same points, other sums` lands as far from transformers' bf16 (2.5e-2) as fp32 does: each
rounding turns a perturbation δ below half an ulp into whole-ulp flips on a fraction δ/ulp of the
elements (an L2 size of √(δ·ulp) > δ), so any difference in summation order grows to bf16's own
noise within a few layers. A 1e-2 gate between two bf16 encoders is met only by bit-identical
GEMMs; against fp32, `turbine` meets it.

    pip install numpy && python3 tools/numerics/umt5_rounding.py [tokens]
"""

import math
import sys

import numpy as np

D, DKV, HEADS, DFF, LAYERS = 1024, 64, 16, 2560, 24
BUCKETS, MAX_DISTANCE = 32, 128


def bf16(x):
    """x rounded to bf16 (nearest, ties to even), as f32."""
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return (((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16).astype(np.uint32).view(np.float32)


def exact(x):
    return np.asarray(x, dtype=np.float32)


def bucket(rel):
    """T5's bidirectional relative-position bucket (wan.md §4)."""
    half = BUCKETS // 2
    exact_n = half // 2
    base = half if rel > 0 else 0
    n = abs(rel)
    if n < exact_n:
        return base + n
    large = exact_n + int(math.log(n / exact_n) / math.log(MAX_DISTANCE / exact_n) * (half - exact_n))
    return base + min(large, half - 1)


def model(tokens, seed=20261127):
    rng = np.random.default_rng(seed)

    def normal(std, shape):
        return bf16(rng.normal(0.0, std, shape))

    layers = [
        dict(
            q=normal((D * DKV) ** -0.5, (HEADS * DKV, D)),
            k=normal(D**-0.5, (HEADS * DKV, D)),
            v=normal(D**-0.5, (HEADS * DKV, D)),
            o=normal((HEADS * DKV) ** -0.5, (D, HEADS * DKV)),
            gate=normal(D**-0.5, (DFF, D)),
            fc1=normal(D**-0.5, (DFF, D)),
            fc2=normal(DFF**-0.5, (D, DFF)),
            rel=normal(1.0, (BUCKETS, HEADS)),
            norm1=bf16(1 + 0.05 * rng.normal(0.0, 1.0, D)),
            norm2=bf16(1 + 0.05 * rng.normal(0.0, 1.0, D)),
        )
        for _ in range(LAYERS)
    ]
    final = bf16(1 + 0.05 * rng.normal(0.0, 1.0, D))
    embedded = normal(1.0, (tokens, D))
    pos = np.arange(tokens)
    buckets = np.array([[bucket(j - i) for j in pos] for i in pos])
    return layers, final, embedded, buckets


def encode(weights, v):
    layers, final, x, buckets = weights
    r = v.get("round", bf16)
    res = v.get("residual", r)
    tokens = x.shape[0]

    def gemm(a, w):
        if v.get("f64_sums"):
            return (a.astype(np.float64) @ w.T.astype(np.float64)).astype(np.float32)
        return a @ w.T

    def norm(x, w):
        y = x * (1.0 / np.sqrt(np.mean(x**2, -1, keepdims=True) + 1e-6))
        return r(w * y) if v.get("norm_once") else r(w * r(y))

    def heads(t):
        return t.reshape(tokens, HEADS, DKV).transpose(1, 0, 2)

    def gelu(a):
        return 0.5 * a * (1 + np.tanh(math.sqrt(2 / math.pi) * (a + 0.044715 * a**3)))

    x = res(x)
    for w in layers:
        h = norm(x, w["norm1"])
        q, k, vv = (heads(r(gemm(h, w[n]))) for n in ("q", "k", "v"))
        s = np.einsum("hid,hjd->hij", q, k)
        bias = w["rel"][buckets].transpose(2, 0, 1)
        s = s + bias if v.get("f32_scores") else r(r(s) + bias)
        e = np.exp(s - s.max(-1, keepdims=True))
        total = e.sum(-1, keepdims=True)
        if v.get("flash"):
            o = r(np.einsum("hij,hjd->hid", r(e), vv) / total)
        else:
            o = r(np.einsum("hij,hjd->hid", r(e / total), vv))
        o = o.transpose(1, 0, 2).reshape(tokens, HEADS * DKV)
        y = gemm(o, w["o"])
        x = res(x + (y if v.get("wide") else r(y)))
        h = norm(x, w["norm2"])
        a = gemm(h, w["gate"])
        lin = gemm(h, w["fc1"])
        if v.get("wide"):
            g = gelu(a)
        elif v.get("fused_gelu"):
            g, lin = r(gelu(a)), r(lin)
        else:
            a, lin = r(a), r(lin)
            t = r(a**3)
            t = r(0.044715 * t)
            t = r(a + t)
            t = r(math.sqrt(2 / math.pi) * t)
            t = r(np.tanh(t))
            t = r(1.0 + t)
            g = r(r(0.5 * a) * t)
        y = gemm(r(g * lin), w["fc2"])
        x = res(x + (y if v.get("wide") else r(y)))
    return norm(x, final)


TURBINE_BEFORE = dict(
    f64_sums=True, residual=exact, norm_once=True, f32_scores=True, flash=True, fused_gelu=True
)
VARIANTS = {
    "fp32": dict(round=exact),
    "transformers bf16": dict(),
    "same points, other sums": dict(f64_sums=True),
    "turbine before": TURBINE_BEFORE,
    "turbine": dict(TURBINE_BEFORE, wide=True),
}


def main():
    tokens = int(sys.argv[1]) if len(sys.argv) > 1 else 77
    weights = model(tokens)
    out = {name: encode(weights, v) for name, v in VARIANTS.items()}

    def rel(a, b):
        return float(np.linalg.norm(a - b) / np.linalg.norm(b))

    print(f"umT5 emulation: {LAYERS} layers, d_model {D}, d_ff {DFF}, {tokens} tokens")
    print(f"{'':26s}{'vs fp32':>10s}{'vs transformers bf16':>24s}")
    for name in VARIANTS:
        a = rel(out[name], out["fp32"])
        b = rel(out[name], out["transformers bf16"])
        print(f"{name:26s}{a:10.3e}{b:24.3e}")


if __name__ == "__main__":
    main()
