"""A Wan DiT safetensors checkpoint in TurboWan's `-quant` layout, for timing and checking the load
of `-quant` checkpoints without TurboDiffusion's files (none can be fetched on the GPU hosts).

    python3 tools/gpu/quant_export.py IN.safetensors OUT.safetensors

Every block linear that upstream's `Int8Linear` replaces (self- and cross-attention q/k/v/o,
ffn.0, ffn.2; `proj_l` stays) becomes `{name}.int8_weight` int8 [out, in] and `{name}.scale` f32
[ceil(out/128), ceil(in/128)], its bias unchanged; everything else is copied. The quantization is
upstream's `quant_cuda` per 128x128 tile (reference/turbodiffusion.md section 3): amax = max(1e-8,
max |tile|), int8 = round-half-even(w * (128 / amax)) saturated to [-128, 127], scale = amax / 128,
in f32 on the GPU when there is one.
"""

import re
import sys

import torch
from safetensors.torch import load_file, save_file

TILE = 128
QUANTIZED = re.compile(r"^blocks\.\d+\.(self_attn|cross_attn)\.[qkvo]\.weight$|^blocks\.\d+\.ffn\.[02]\.weight$")


def quantize(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    out_f, in_f = w.shape
    rows, cols = -(-out_f // TILE) * TILE, -(-in_f // TILE) * TILE
    padded = torch.zeros(rows, cols, dtype=torch.float32, device=w.device)
    padded[:out_f, :in_f] = w.float()
    tiles = padded.view(rows // TILE, TILE, cols // TILE, TILE)
    amax = tiles.abs().amax(dim=(1, 3)).clamp_min(1e-8)
    inv = (128.0 / amax)[:, None, :, None]
    values = torch.round(tiles * inv).clamp(-128, 127).to(torch.int8)
    values = values.view(rows, cols)[:out_f, :in_f].contiguous()
    return values, (amax / 128.0).contiguous()


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    source, target = sys.argv[1:]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tensors = load_file(source)
    out = {}
    quantized = 0
    for key, t in tensors.items():
        if QUANTIZED.match(key):
            name = key.removesuffix(".weight")
            values, scale = quantize(t.to(device))
            out[f"{name}.int8_weight"] = values.cpu()
            out[f"{name}.scale"] = scale.cpu()
            quantized += 1
        else:
            out[key] = t
    if quantized == 0:
        sys.exit(f"{source}: no block linear weights (blocks.N.self_attn.q.weight, ...) to quantize")
    save_file(out, target)
    print(f"{target}: {quantized} linears quantized, {len(out)} tensors")


if __name__ == "__main__":
    main()
