"""Parity and speed of Turbine's CUDA DiT forward against diffusers' WanTransformer3DModel on a GPU.

Inputs come from `turbine bench --export-weights W --dump D` (same random weights, original Wan key
layout; latent, text context and Turbine's outputs at a few timesteps). This script loads W into
diffusers (bf16, CUDA, default SDPA), runs the same inputs, and reports the relative L2 error
‖turbine − diffusers‖ / ‖diffusers‖ per timestep; with --fp32-reference also both against a
diffusers fp32 forward (TF32 off), which tells whose bf16 rounding the difference is. It then times
the diffusers bf16 forward (CUDA events, median) with its peak memory: the peer measured in the
same call as Turbine's `turbine bench`.

The time embedding's sinusoid runs in float64 as the original Wan computes it (diffusers' float32
version differs by ~1e-4 rad at t ~ 1000), the same change tools/golden/wan_dit.py makes.

    python3 tools/gpu/dit_parity.py --model 1.3b --weights W --dump D --out parity.json
"""

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "golden"))
from peers import build_dit, median_ms  # noqa: E402  (same folder)
from wan_dit import SinusoidF64, to_original_key  # noqa: E402  (the golden script's key table)


def load(model_name, weights, dtype):
    model = build_dit(model_name, dtype)
    model.condition_embedder.timesteps_proj = SinusoidF64()
    state = load_file(weights, device="cuda")
    with torch.no_grad():
        for key, param in model.state_dict().items():
            src = state[to_original_key(key)]
            param.copy_(src.reshape(param.shape).to(dtype))
    del state
    return model


def forward(model, x, ctx, t, dtype):
    with torch.no_grad():
        return model(
            hidden_states=x[None].to(dtype),
            timestep=torch.tensor([t], device="cuda"),
            encoder_hidden_states=ctx[None].to(dtype),
            return_dict=False,
        )[0][0].float()


def rel_l2(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="1.3b", choices=["1.3b", "14b"])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--dump", required=True)
    parser.add_argument("--out")
    parser.add_argument("--fp32-reference", action="store_true")
    parser.add_argument("--time-iters", type=int, default=5)
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    dump = load_file(args.dump, device="cuda")
    with safe_open(args.dump, "pt") as f:
        timesteps = [float(t) for t in f.metadata()["timesteps"].split(",")]
    x, ctx = dump["x"], dump["context"]
    ours = [dump[f"out{i}"] for i in range(len(timesteps))]
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "model": args.model,
              "latent": list(x.shape), "timesteps": timesteps}

    if args.fp32_reference:
        ref_model = load(args.model, args.weights, torch.float32)
        refs = [forward(ref_model, x, ctx, t, torch.float32) for t in timesteps]
        del ref_model
        torch.cuda.empty_cache()
        result["turbine_vs_fp32_rel_l2"] = [rel_l2(o, r) for o, r in zip(ours, refs)]

    model = load(args.model, args.weights, torch.bfloat16)
    theirs = [forward(model, x, ctx, t, torch.bfloat16) for t in timesteps]
    result["turbine_vs_diffusers_bf16_rel_l2"] = [rel_l2(o, r) for o, r in zip(ours, theirs)]
    if args.fp32_reference:
        result["diffusers_bf16_vs_fp32_rel_l2"] = [rel_l2(o, r) for o, r in zip(theirs, refs)]

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    result["diffusers_bf16_forward_ms"] = median_ms(
        lambda: forward(model, x, ctx, 500.0, torch.bfloat16), warmup=2, iters=args.time_iters)
    result["diffusers_bf16_peak_bytes"] = torch.cuda.max_memory_allocated()
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
