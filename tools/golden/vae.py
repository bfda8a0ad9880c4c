"""Golden fixtures for the Wan2.1 VAE (turbine-models `vae`).

Reference: diffusers' `AutoencoderKLWan` (0.42.1) in fp32 on CPU, built with the `tiny` preset of
`WanVaeConfig::tiny()` (base dim 8; everything else as Wan2.1: z 16, dim_mult [1, 2, 4, 4], 2 res
blocks per encoder stage, 3 per decoder stage, temporal down [False, True, True]), random weights
rounded to bf16 (RMS gammas randomized too, so that ignoring one shows), decoded and encoded
chunk-wise with diffusers' causal feature caches exactly as the full-size model runs.

Conventions (they match the Rust API, not diffusers' `decode`/`encode` signatures):
- decode cases store `z`, the *normalized* latent the DiT produces; the reference is
  `vae.decode(z * std + mean)` (diffusers' pipeline denormalizes before calling `decode`, Turbine's
  `WanVae::decode` does it itself), clamped to [-1, 1] by diffusers;
- encode cases store `mu` normalized as `(mu - mean) / std` from `vae.encode(x).latent_dist.mode()`
  (the distribution's mean, not a sample).

Writes into tests/fixtures/vae/:
- `tiny.safetensors`: the weights in the ORIGINAL Wan layout (`Wan2.1_VAE.pth` names, mapped from
  diffusers' per shared/reference/wan.md section 5.1; the mapping is checked to be one-to-one over
  every tensor), bf16;
- `cases.safetensors`: `decode{i}.{z,video}` for 1, 2 and 3 latent frames (non-square) and
  `encode{i}.{video,mu}` for 1, 5 and 9 frames; metadata `decode_cases`, `encode_cases`.

Rerun from the repository root (pins in tools/golden/requirements.txt, CPU only, no network):

    pyenv-golden/bin/python tools/golden/vae.py
"""

import re
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "vae"

TINY = dict(base_dim=8)
NUM_RES_BLOCKS = 2
STAGES = 4

RESIDUAL = {"norm1.gamma": "residual.0.gamma", "conv1.": "residual.2.", "norm2.gamma": "residual.3.gamma",
            "conv2.": "residual.6.", "conv_shortcut.": "shortcut."}


def residual_inner(inner):
    for a, b in RESIDUAL.items():
        if inner.startswith(a):
            return b + inner[len(a):]
    raise KeyError(inner)


def decoder_index(block, inner):
    """Flattened `decoder.upsamples.{k}` index of `up_blocks.{block}.{resnets.j | upsamplers.0}`."""
    per_stage = NUM_RES_BLOCKS + 2  # res blocks + the upsampler
    if inner.startswith("resnets."):
        j, rest = inner[len("resnets."):].split(".", 1)
        return block * per_stage + int(j), residual_inner(rest)
    assert inner.startswith("upsamplers.0."), inner
    return block * per_stage + NUM_RES_BLOCKS + 1, inner[len("upsamplers.0."):]


def to_original_key(key):
    """diffusers `AutoencoderKLWan` key -> `Wan2.1_VAE.pth` key (wan.md section 5.1 table)."""
    top = {"quant_conv.": "conv1.", "post_quant_conv.": "conv2."}
    for a, b in top.items():
        if key.startswith(a):
            return b + key[len(a):]
    side, rest = key.split(".", 1)
    assert side in ("encoder", "decoder"), key
    simple = {"conv_in.": "conv1.", "norm_out.gamma": "head.0.gamma", "conv_out.": "head.2."}
    for a, b in simple.items():
        if rest.startswith(a):
            return f"{side}.{b}{rest[len(a):]}"
    m = re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", rest)
    if m:
        kind, i, inner = m.groups()
        if kind == "attentions":
            return f"{side}.middle.1.{inner}"
        return f"{side}.middle.{2 * int(i)}.{residual_inner(inner)}"
    m = re.match(r"down_blocks\.(\d+)\.(.*)", rest)
    if m:
        n, inner = m.groups()
        is_resample = inner.startswith("resample.") or inner.startswith("time_conv.")
        return f"encoder.downsamples.{n}.{inner if is_resample else residual_inner(inner)}"
    m = re.match(r"up_blocks\.(\d+)\.(.*)", rest)
    assert m, key
    k, inner = decoder_index(int(m.group(1)), m.group(2))
    return f"decoder.upsamples.{k}.{inner}"


def build(seed):
    torch.manual_seed(seed)
    vae = AutoencoderKLWan(**TINY).eval()
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if name.endswith("gamma"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            # bf16-representable values, so a bf16 fixture holds exactly what the fp32 model ran.
            if name.startswith("decoder.conv_out."):
                # Default init gives outputs of std ~0.2; a larger head makes some pixels reach the
                # [-1, 1] clamp, so the fixtures test it too.
                p.mul_(2.0)
            # bf16-representable values, so a bf16 fixture holds exactly what the fp32 model ran.
            p.copy_(p.to(torch.bfloat16).to(torch.float32))
    return vae


def original_state(vae):
    state = {to_original_key(k): v.detach().clone() for k, v in vae.state_dict().items()}
    if len(state) != len(vae.state_dict()):
        raise SystemExit("diffusers -> original key mapping is not one-to-one")
    return state


def stats(name, t):
    clamped = (t.abs() >= 1.0).float().mean().item()
    print(f"  {name:<16} {tuple(t.shape)!s:<22} std {t.std().item():.3f}  |x|>=1: {clamped:.1%}")


def main():
    torch.set_num_threads(2)
    ROOT.mkdir(parents=True, exist_ok=True)
    vae = build(seed=0)
    state = original_state(vae)
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in state.items()}, ROOT / "tiny.safetensors")

    mean = torch.tensor(vae.config.latents_mean).view(16, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(16, 1, 1, 1)
    g = torch.Generator().manual_seed(1)
    tensors = {}
    # (latent frames, h, w): video (1 + 4(T-1)) x 8h x 8w, non-square.
    decode_cases = [(1, 2, 3), (2, 3, 2), (3, 2, 4)]
    # (frames, H, W)
    encode_cases = [(1, 16, 24), (5, 24, 16), (9, 16, 32)]
    with torch.no_grad():
        for i, (t, h, w) in enumerate(decode_cases):
            z = torch.randn(16, t, h, w, generator=g)
            video = vae.decode((z * std + mean)[None], return_dict=False)[0][0]
            tensors[f"decode{i}.z"], tensors[f"decode{i}.video"] = z, video
            stats(f"decode{i}.video", video)
        for i, (f, h, w) in enumerate(encode_cases):
            # Smooth-ish content in [-1, 1]: a random field plus a moving gradient.
            x = torch.rand(3, f, h, w, generator=g) * 1.2 - 0.6
            ramp = torch.linspace(-0.4, 0.4, w).view(1, 1, 1, w) * torch.linspace(1, -1, f).view(1, f, 1, 1)
            x = (x + ramp).clamp(-1, 1)
            mu = vae.encode(x[None]).latent_dist.mode()[0]
            tensors[f"encode{i}.video"], tensors[f"encode{i}.mu"] = x, (mu - mean) / std
            stats(f"encode{i}.mu", tensors[f"encode{i}.mu"])
    meta = {"decode_cases": str(len(decode_cases)), "encode_cases": str(len(encode_cases))}
    save_file({k: v.contiguous() for k, v in tensors.items()}, ROOT / "cases.safetensors", metadata=meta)
    for path in sorted(ROOT.iterdir()):
        print(f"{path.stat().st_size:9d}  {path.relative_to(ROOT.parent)}")


if __name__ == "__main__":
    main()
