"""PyTorch peers of Turbine's GPU kernels, timed in the same device call as Turbine's own benchmarks.

Prints one JSON object (and writes it to --out): bf16 scaled-dot-product attention per SDPA backend
(cuDNN, flash) at the Wan shapes, bf16 `F.linear` at the Wan2.1-1.3B 480p block shapes, FP8
`torch._scaled_mm` with per-token x per-channel scales at the 1.3B and 14B block shapes, and with
--dit the diffusers WanTransformer3DModel forward (bf16, random weights, default SDPA) at the given
model/size pairs with its peak memory. CUDA events, warm-up, median of N; random inputs.

    python3 tools/gpu/peers.py --out peers.json [--dit 14b:720p]
"""

import argparse
import json

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def median_ms(fn, warmup=3, iters=10):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def attention(results):
    for name, heads, tokens in [("wan1.3b_480p", 12, 32760), ("wan14b_720p", 40, 75600)]:
        q, k, v = (torch.randn(1, heads, tokens, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        flops = 4.0 * heads * tokens * tokens * 128
        for backend, label in [(SDPBackend.CUDNN_ATTENTION, "cudnn"), (SDPBackend.FLASH_ATTENTION, "flash")]:
            with sdpa_kernel(backend):
                ms = median_ms(lambda: F.scaled_dot_product_attention(q, k, v), iters=5 if heads == 40 else 10)
            results[f"sdpa_{label}_{name}_ms"] = ms
            results[f"sdpa_{label}_{name}_tflops"] = flops / (ms * 1e-3) / 1e12
        del q, k, v
        torch.cuda.empty_cache()


def linears(results):
    tokens = 32760
    for name, n_in, n_out in [("qkvo", 1536, 1536), ("ffn_in", 1536, 8960), ("ffn_out", 8960, 1536)]:
        x = torch.randn(tokens, n_in, device="cuda", dtype=torch.bfloat16)
        w = torch.randn(n_out, n_in, device="cuda", dtype=torch.bfloat16) / n_in**0.5
        b = torch.randn(n_out, device="cuda", dtype=torch.bfloat16)
        ms = median_ms(lambda: F.linear(x, w, b), iters=20)
        results[f"linear_{name}_ms"] = ms
        results[f"linear_{name}_tflops"] = 2.0 * tokens * n_in * n_out / (ms * 1e-3) / 1e12


def fp8_linears(results):
    """The cuBLASLt path of Turbine's `--quant fp8` as PyTorch reaches it: e4m3 operands scaled per
    row of x (token) and of W (output channel), `torch._scaled_mm`'s "rowwise" (outer-vector)
    scaling, bf16 out; the GEMM alone (no bias, quantization untimed), as gpucheck's `gemm ms`."""
    tokens = 32760
    e4m3 = torch.float8_e4m3fn
    for name, n_in, n_out in [("qkvo", 1536, 1536), ("ffn_in", 1536, 8960), ("ffn_out", 8960, 1536),
                              ("14b_qkvo", 5120, 5120), ("14b_ffn_in", 5120, 13824), ("14b_ffn_out", 13824, 5120)]:
        x = torch.randn(tokens, n_in, device="cuda")
        w = torch.randn(n_out, n_in, device="cuda") / n_in**0.5
        sx = x.abs().amax(dim=1, keepdim=True) / 448.0
        sw = w.abs().amax(dim=1, keepdim=True) / 448.0
        xq, wq = (x / sx).to(e4m3), (w / sw).to(e4m3)
        del x, w
        try:
            ms = median_ms(lambda: torch._scaled_mm(xq, wq.t(), scale_a=sx, scale_b=sw.t(),
                                                    out_dtype=torch.bfloat16), iters=20)
            results[f"linear_fp8_{name}_ms"] = ms
            results[f"linear_fp8_{name}_tflops"] = 2.0 * tokens * n_in * n_out / (ms * 1e-3) / 1e12
        except RuntimeError as e:
            results[f"linear_fp8_{name}_error"] = str(e)
        del xq, wq
        torch.cuda.empty_cache()


DIT_CONFIGS = {
    "1.3b": dict(num_attention_heads=12, ffn_dim=8960, num_layers=30),
    "14b": dict(num_attention_heads=40, ffn_dim=13824, num_layers=40),
}
SIZES = {"480p": (60, 104), "720p": (90, 160)}


def build_dit(name, dtype):
    """diffusers' WanTransformer3DModel of a Wan2.1 preset on the GPU, random weights."""
    from diffusers import WanTransformer3DModel

    with torch.device("cuda"):
        return WanTransformer3DModel(
            patch_size=(1, 2, 2), attention_head_dim=128, in_channels=16, out_channels=16,
            text_dim=4096, freq_dim=256, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
            eps=1e-6, **DIT_CONFIGS[name],
        ).to(dtype).eval()


def dit(results, spec):
    name, size = spec.split(":")
    model = build_dit(name, torch.bfloat16)
    h, w = SIZES[size]
    x = torch.randn(1, 16, 21, h, w, device="cuda", dtype=torch.bfloat16)
    ctx = torch.randn(1, 512, 4096, device="cuda", dtype=torch.bfloat16)
    t = torch.tensor([500.0], device="cuda")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        ms = median_ms(lambda: model(hidden_states=x, timestep=t, encoder_hidden_states=ctx, return_dict=False),
                       warmup=1, iters=3)
    results[f"diffusers_wan{name}_{size}_forward_ms"] = ms
    results[f"diffusers_wan{name}_{size}_peak_bytes"] = torch.cuda.max_memory_allocated()
    del model
    torch.cuda.empty_cache()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out")
    parser.add_argument("--dit", action="append", default=[], help="model:size, e.g. 14b:720p")
    args = parser.parse_args()
    torch.manual_seed(0)
    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    attention(results)
    linears(results)
    fp8_linears(results)
    for spec in args.dit:
        dit(results, spec)
    text = json.dumps(results, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
