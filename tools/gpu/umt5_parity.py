"""The transformers peer of Turbine's umT5 encoder (issue 7): a umT5-XXL `UMT5EncoderModel` with
seeded random weights, built on the GPU, whose weights and outputs `turbine-gpucheck --parts umt5`
reads back.

Writes into --dir:
- `umt5-xxl.safetensors`: the bf16 weights in `UMT5EncoderModel`'s own layout (`shared.weight`,
  `encoder.block.{i}...`, `encoder.final_layer_norm.weight`), which Turbine's loader reads as is
  (11.4 GB);
- `reference.safetensors`: for each prompt length L, `ids.L` (the token ids as f32, exact below
  2^24), `out_f32.L` (transformers in fp32 on the same bf16-valued weights, TF32 off) and
  `out_bf16.L` (transformers in bf16), each `[L, 4096]` f32;
- `transformers.json`: transformers' bf16 encode time per length (CUDA events, 3 warm-ups, median of
  10) and peak memory.

Weights follow T5's initialisation (`T5PreTrainedModel._init_weights`: q N(0, (d·d_kv)^-1/2), k, v, o
and wi N(0, d^-1/2), wo N(0, d_ff^-1/2), embedding N(0, 1)), except the relative-position tables,
drawn N(0, 1) instead of N(0, d^-1/2) so the bias moves the softmax as trained tables (values of
order 1-10) do, and the RMSNorm weights, 1 + N(0, 0.05²) instead of 1. Token ids are uniform in
[2, vocab) and end with `</s>` (1), unpadded, as Turbine encodes a prompt.

    python3 tools/gpu/umt5_parity.py --dir /tmp/turbine-umt5 [--lengths 512,77]
"""

import argparse
import json
import os
import time

import torch
from safetensors.torch import save_file
from transformers import UMT5Config, UMT5EncoderModel

from peers import median_ms  # noqa: E402  (same folder)


def xxl_config():
    # google/umt5-xxl's encoder (shared/reference/wan.md §4).
    return UMT5Config(
        vocab_size=256384,
        d_model=4096,
        d_kv=64,
        d_ff=10240,
        num_layers=24,
        num_heads=64,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        layer_norm_epsilon=1e-6,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
        tie_word_embeddings=False,
    )


def init_(model, cfg, gen):
    d, dkv, heads, dff = cfg.d_model, cfg.d_kv, cfg.num_heads, cfg.d_ff
    std = {
        ".q.weight": (d * dkv) ** -0.5,
        ".k.weight": d**-0.5,
        ".v.weight": d**-0.5,
        ".o.weight": (heads * dkv) ** -0.5,
        ".wi_0.weight": d**-0.5,
        ".wi_1.weight": d**-0.5,
        ".wo.weight": dff**-0.5,
        "relative_attention_bias.weight": 1.0,
        "shared.weight": 1.0,
        "embed_tokens.weight": 1.0,
    }
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.copy_(1.0 + 0.05 * torch.randn(p.shape, generator=gen, device=p.device))
            else:
                (s,) = [v for k, v in std.items() if name.endswith(k)]
                p.normal_(0.0, s, generator=gen)
            # Both precisions then run the same (bf16) values.
            p.copy_(p.to(torch.bfloat16).float())
        # Turbine reads `shared.weight`; the encoder must look its tokens up in the same table.
        if model.encoder.embed_tokens.weight.data_ptr() != model.shared.weight.data_ptr():
            model.encoder.embed_tokens.weight.copy_(model.shared.weight)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--lengths", default="512,77")
    ap.add_argument("--seed", type=int, default=20261126)
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = "cuda"
    gen = torch.Generator(device=dev).manual_seed(args.seed)
    cfg = xxl_config()

    t0 = time.time()
    with torch.device(dev):
        model = UMT5EncoderModel(cfg)
    model.eval()
    init_(model, cfg, gen)
    build_s = time.time() - t0
    params = sum(p.numel() for p in model.parameters())

    lengths = [int(x) for x in args.lengths.split(",")]
    ids = {}
    for n in lengths:
        body = torch.randint(2, cfg.vocab_size, (n - 1,), generator=gen, device=dev)
        ids[n] = torch.cat([body, torch.ones(1, dtype=body.dtype, device=dev)])[None]

    def run(n):
        mask = torch.ones_like(ids[n])
        return model(input_ids=ids[n], attention_mask=mask).last_hidden_state[0]

    ref = {}
    with torch.inference_mode():
        for n in lengths:
            ref[f"ids.{n}"] = ids[n][0].float().cpu()
            ref[f"out_f32.{n}"] = run(n).float().cpu()
        model.to(torch.bfloat16)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        timings = {}
        for n in lengths:
            ref[f"out_bf16.{n}"] = run(n).float().cpu()
            timings[n] = median_ms(lambda: run(n))
        peak = torch.cuda.max_memory_allocated()
    for n in lengths:
        a, b = ref[f"out_bf16.{n}"], ref[f"out_f32.{n}"]
        print(f"transformers bf16, {n:>3} tokens: {timings[n]:.2f} ms, rel L2 vs fp32 "
              f"{((a - b).norm() / b.norm()).item():.3e}")
    save_file(ref, os.path.join(args.dir, "reference.safetensors"))

    t0 = time.time()
    seen = set()
    state = {}
    for k, v in model.state_dict().items():
        # The tied copy of the embedding (`encoder.embed_tokens.weight`) is the same tensor.
        if v.data_ptr() in seen:
            continue
        seen.add(v.data_ptr())
        state[k] = v.detach().contiguous().cpu()
    del model
    torch.cuda.empty_cache()
    save_file(state, os.path.join(args.dir, "umt5-xxl.safetensors"))
    save_s = time.time() - t0

    report = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(),
        "params": params,
        "build_s": build_s,
        "save_s": save_s,
        "bf16_ms": {str(n): t for n, t in timings.items()},
        "bf16_peak_bytes": peak,
    }
    with open(os.path.join(args.dir, "transformers.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
