"""Golden fixtures for the Wan DiT forward and SLA self-attention (turbine-models, turbine-tensor).

References:
- the DiT forward is diffusers' `WanTransformer3DModel` (0.42.1) in fp32 on CPU, with one change: the
  sinusoidal time embedding is computed in float64 as the original Wan does (`wan/modules/model.py`
  `sinusoidal_embedding_1d`); diffusers' float32 version differs by up to ~1e-4 rad at t ~ 1000,
  which would eat the whole 1e-4 error budget of the parity tests;
- SLA is a PyTorch fp32 transcription of TurboDiffusion's `SLA/utils.py::get_block_map` +
  `SLA/kernel.py` (softmax over the selected key blocks only) + the all-token linear branch of
  `SLA/core.py` through `proj_l` (see shared/reference/turbodiffusion.md §4). In SLA mode the DiT's
  self-attention goes through that transcription (cross-attention stays dense, as upstream).

Writes into tests/fixtures/:
- `wan_dit/tiny.safetensors`: weights of the `tiny` preset (dim 256 = 2 heads x 128, ffn 384, 2
  layers, text_dim 64) in the original Wan key layout, bf16 (exactly what the fp32 reference ran);
  `wan_dit/forward.safetensors`: `case{i}.{x,context,out}` for several latent shapes (non-square,
  1-3 latent frames) and timesteps (metadata `case{i}.timestep`), dense attention, plus
  `sla{i}.*` cases of the same model with SLA self-attention (metadata holds top-k and block sizes);
- `wan_dit/micro_{original,turbo,turbo_quant}.pth`: torch.save checkpoints of the `micro` config (dim
  128, 1 head, ffn 256, 1 layer, text_dim 32) in the original Wan layout (fp32, Conv3d patch
  embedding), TurboWan's layout (bf16 linears, fp32 norms, Linear patch embedding, `proj_l`) and
  TurboWan's `-quant` layout (int8 + 128x128 block scales), and `wan_dit/micro_expected.safetensors`
  with inputs and reference outputs for each (quantized: the model with the dequantized weights);
- `sla/sla.safetensors`: q, k, v, proj_l and SLA outputs and block maps for several top-k / block
  shapes (metadata `case{i}` JSON).

Rerun from the repository root (pins in tools/golden/requirements.txt, CPU only, no network):

    python3 -m venv pyenv-golden && pyenv-golden/bin/pip install -r tools/golden/requirements.txt
    pyenv-golden/bin/python tools/golden/wan_dit.py
"""

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import WanTransformer3DModel
from diffusers.models.transformers import transformer_wan
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[2] / "tests" / "fixtures"

TINY = dict(num_attention_heads=2, ffn_dim=384, num_layers=2, text_dim=64)
MICRO = dict(num_attention_heads=1, ffn_dim=256, num_layers=1, text_dim=32)

# (original key fragment, diffusers key fragment), applied as ordered substring replacements:
# the table of shared/reference/wan.md §1.7 (diffusers' TRANSFORMER_KEYS_RENAME_DICT, inverted).
# The norm swap goes through a placeholder so that diffusers' norm2 -> norm3 does not collide.
TO_ORIGINAL = [
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"),
    ("attn1.to_out.0", "self_attn.o"),
    ("attn2.to_out.0", "cross_attn.o"),
    ("attn1.to_", "self_attn."),
    ("attn2.to_", "cross_attn."),
    ("attn1.", "self_attn."),
    ("attn2.", "cross_attn."),
    ("ffn.net.0.proj", "ffn.0"),
    ("ffn.net.2", "ffn.2"),
    (".norm2.", ".NORM3."),
    ("proj_out", "head.head"),
]


def to_original_key(key):
    if key == "scale_shift_table":
        return "head.modulation"
    if key.endswith(".scale_shift_table"):
        return key.replace("scale_shift_table", "modulation")
    for a, b in TO_ORIGINAL:
        key = key.replace(a, b)
    return key.replace(".NORM3.", ".norm3.")


class SinusoidF64(torch.nn.Module):
    """The original Wan's `sinusoidal_embedding_1d`: float64, cos first."""

    def forward(self, t, dim=256):
        half = dim // 2
        freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device) / half)
        args = t.to(torch.float64)[:, None] * freqs[None, :]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=1).to(torch.float32)


def build(cfg, seed):
    torch.manual_seed(seed)
    model = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        attention_head_dim=128,
        in_channels=16,
        out_channels=16,
        freq_dim=256,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=1e-6,
        **cfg,
    ).eval()
    model.condition_embedder.timesteps_proj = SinusoidF64()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                # Norm weights default to ones (biases to zeros); random values test that they are used.
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn_like(p))
            # bf16-representable values, so a bf16 fixture holds exactly what the fp32 model ran.
            p.copy_(p.to(torch.bfloat16).to(torch.float32))
    return model


def original_state(model):
    state = {}
    for k, v in model.state_dict().items():
        state[to_original_key(k)] = v.detach().clone()
    return state


# ---- SLA transcription (fp32) -------------------------------------------------------------------


def pool_blocks(x, block):
    """Mean over blocks of `block` tokens along dim -2 (a partial last block averages its real rows)."""
    length = x.shape[-2]
    pooled = [x[..., s : s + block, :].mean(dim=-2) for s in range(0, length, block)]
    return torch.stack(pooled, dim=-2)


def block_map(q, k, topk, blk_q, blk_k):
    """`[H, Qblk, Kblk]` 0/1 map: per (head, query block) the top-n key blocks by pooled score."""
    k_smooth = k - k.mean(dim=-2, keepdim=True)
    score = pool_blocks(q, blk_q) @ pool_blocks(k_smooth, blk_k).transpose(-1, -2)
    key_blocks = score.shape[-1]
    n = min(key_blocks, max(1, int(topk * key_blocks)))
    idx = torch.topk(score, n, dim=-1).indices
    return torch.zeros_like(score).scatter_(-1, idx, 1.0)


def sla(q, k, v, proj_w, proj_b, topk, blk_q, blk_k):
    """q, k, v `[H, L, D]` -> (output `[H, L, D]`, block map)."""
    heads, length, dh = q.shape
    bmap = block_map(q, k, topk, blk_q, blk_k)
    token_mask = bmap.repeat_interleave(blk_q, dim=1)[:, :length].repeat_interleave(blk_k, dim=2)[:, :, :length]
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(dh)
    scores = scores.masked_fill(token_mask == 0, float("-inf"))
    sparse = torch.softmax(scores, dim=-1) @ v
    phi_q, phi_k = torch.softmax(q, dim=-1), torch.softmax(k, dim=-1)
    kv = phi_k.transpose(-1, -2) @ v
    ksum = phi_k.sum(dim=-2, keepdim=True)
    linear = (phi_q @ kv) / (1e-5 + phi_q @ ksum.transpose(-1, -2))
    return sparse + F.linear(linear, proj_w, proj_b), bmap


class SlaProcessor(transformer_wan.WanAttnProcessor):
    """diffusers' Wan attention with SLA in place of dense self-attention."""

    def __init__(self, proj_w, proj_b, topk, blk_q, blk_k):
        super().__init__()
        self.proj_w, self.proj_b = proj_w, proj_b
        self.topk, self.blk_q, self.blk_k = topk, blk_q, blk_k

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        original = transformer_wan.dispatch_attention_fn

        def sla_dispatch(query, key, value, **_):
            out, _ = sla(
                query[0].transpose(0, 1),
                key[0].transpose(0, 1),
                value[0].transpose(0, 1),
                self.proj_w,
                self.proj_b,
                self.topk,
                self.blk_q,
                self.blk_k,
            )
            return out.transpose(0, 1)[None]

        transformer_wan.dispatch_attention_fn = sla_dispatch
        try:
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)
        finally:
            transformer_wan.dispatch_attention_fn = original


def set_sla(model, proj, topk, blk_q, blk_k):
    for block, (w, b) in zip(model.blocks, proj):
        block.attn1.set_processor(SlaProcessor(w, b, topk, blk_q, blk_k))


def set_dense(model):
    for block in model.blocks:
        block.attn1.set_processor(transformer_wan.WanAttnProcessor())


def run(model, x, t, ctx):
    with torch.no_grad():
        return model(hidden_states=x[None], timestep=torch.tensor([t]), encoder_hidden_states=ctx[None], return_dict=False)[0][0]


def random_proj(layers, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(layers):
        w = (torch.randn(128, 128, generator=g) * 0.05).to(torch.bfloat16).float()
        b = (torch.randn(128, generator=g) * 0.05).to(torch.bfloat16).float()
        out.append((w, b))
    return out


# ---- fixtures -----------------------------------------------------------------------------------


def tiny_fixtures():
    out_dir = ROOT / "wan_dit"
    out_dir.mkdir(parents=True, exist_ok=True)
    model = build(TINY, seed=0)
    state = original_state(model)
    proj = random_proj(TINY["num_layers"], seed=7)
    for i, (w, b) in enumerate(proj):
        state[f"blocks.{i}.self_attn.attn_op.local_attn.proj_l.weight"] = w
        state[f"blocks.{i}.self_attn.attn_op.local_attn.proj_l.bias"] = b
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in state.items()}, out_dir / "tiny.safetensors")

    g = torch.Generator().manual_seed(1)
    # (latent frames, H, W, timestep, context rows): non-square grids, 1-3 latent frames.
    dense_cases = [(1, 4, 6, 988.0, 16), (3, 6, 10, 608.0, 24), (2, 8, 4, 0.0, 8), (2, 10, 6, 852.0, 32)]
    # (latent frames, H, W, timestep, context rows, top-k, block q, block k)
    # Grids of 96-256 tokens give 2-4 key blocks, so selection (and its clamp to >= 1 block) matters.
    sla_cases = [(4, 16, 16, 932.0, 16, 0.3, 64, 128), (4, 8, 12, 988.0, 16, 0.5, 128, 64), (2, 12, 16, 608.0, 8, 0.7, 64, 64)]
    tensors, meta = {}, {}
    set_dense(model)
    for i, (f, h, w, t, rows) in enumerate(dense_cases):
        x = torch.randn(16, f, h, w, generator=g)
        ctx = torch.randn(rows, TINY["text_dim"], generator=g)
        tensors[f"case{i}.x"], tensors[f"case{i}.context"] = x, ctx
        tensors[f"case{i}.out"] = run(model, x, t, ctx)
        meta[f"case{i}.timestep"] = repr(t)
    for i, (f, h, w, t, rows, topk, bq, bk) in enumerate(sla_cases):
        x = torch.randn(16, f, h, w, generator=g)
        ctx = torch.randn(rows, TINY["text_dim"], generator=g)
        set_sla(model, proj, topk, bq, bk)
        tensors[f"sla{i}.x"], tensors[f"sla{i}.context"] = x, ctx
        tensors[f"sla{i}.out"] = run(model, x, t, ctx)
        meta[f"sla{i}"] = json.dumps(dict(timestep=t, topk=topk, block_q=bq, block_k=bk))
    meta["dense_cases"], meta["sla_cases"] = str(len(dense_cases)), str(len(sla_cases))
    save_file({k: v.contiguous() for k, v in tensors.items()}, out_dir / "forward.safetensors", metadata=meta)


def quantize_w8(w):
    """TurboDiffusion's weight quantizer: 128x128 tiles, amax/128 scales, round-half-even, saturate."""
    out_f, in_f = w.shape
    go, gi = -(-out_f // 128), -(-in_f // 128)
    q = torch.empty(out_f, in_f, dtype=torch.int8)
    scale = torch.empty(go, gi, dtype=torch.float32)
    for a in range(go):
        for b in range(gi):
            tile = w[a * 128 : (a + 1) * 128, b * 128 : (b + 1) * 128].float()
            amax = tile.abs().max().clamp(min=1e-8)
            q[a * 128 : (a + 1) * 128, b * 128 : (b + 1) * 128] = torch.round(tile * (128.0 / amax)).clamp(-128, 127).to(torch.int8)
            scale[a, b] = amax / 128.0
    return q, scale


def dequantize_w8(q, scale):
    s = scale.repeat_interleave(128, 0)[: q.shape[0]].repeat_interleave(128, 1)[:, : q.shape[1]]
    return q.float() * s


def micro_fixtures():
    out_dir = ROOT / "wan_dit"
    model = build(MICRO, seed=3)
    proj = random_proj(MICRO["num_layers"], seed=11)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(16, 2, 6, 4, generator=g)
    ctx = torch.randn(8, MICRO["text_dim"], generator=g)
    t = 932.0
    topk, bq, bk = 0.5, 64, 128
    expected = {"x": x, "context": ctx}

    original = original_state(model)
    torch.save(original, out_dir / "micro_original.pth")
    set_dense(model)
    expected["original.out"] = run(model, x, t, ctx)

    turbo = {}
    for key, v in original.items():
        is_norm = ".norm_" in key or ".norm3." in key
        turbo[key] = v.clone() if is_norm else v.to(torch.bfloat16)
    turbo["patch_embedding.weight"] = turbo["patch_embedding.weight"].reshape(128, 64).contiguous()
    for i, (w, b) in enumerate(proj):
        turbo[f"blocks.{i}.self_attn.attn_op.local_attn.proj_l.weight"] = w.to(torch.bfloat16)
        turbo[f"blocks.{i}.self_attn.attn_op.local_attn.proj_l.bias"] = b.to(torch.bfloat16)
    torch.save(turbo, out_dir / "micro_turbo.pth")
    set_sla(model, proj, topk, bq, bk)
    expected["turbo.out"] = run(model, x, t, ctx)

    quant = dict(turbo)
    deq_model = build(MICRO, seed=3)
    deq_state = deq_model.state_dict()
    linear_names = [f"blocks.{i}.{m}" for i in range(MICRO["num_layers"]) for m in
                    ["self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o",
                     "cross_attn.q", "cross_attn.k", "cross_attn.v", "cross_attn.o", "ffn.0", "ffn.2"]]
    to_diffusers = {to_original_key(k): k for k in deq_state}
    with torch.no_grad():
        for name in linear_names:
            w = quant.pop(f"{name}.weight")
            q, s = quantize_w8(w)
            quant[f"{name}.int8_weight"], quant[f"{name}.scale"] = q, s
            deq_state[to_diffusers[f"{name}.weight"]].copy_(dequantize_w8(q, s))
    torch.save(quant, out_dir / "micro_turbo_quant.pth")
    set_sla(deq_model, proj, topk, bq, bk)
    expected["turbo_quant.out"] = run(deq_model, x, t, ctx)

    meta = dict(timestep=repr(t), topk=repr(topk), block_q=str(bq), block_k=str(bk))
    save_file({k: v.contiguous() for k, v in expected.items()}, out_dir / "micro_expected.safetensors", metadata=meta)


def sla_fixtures():
    out_dir = ROOT / "sla"
    out_dir.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(9)
    heads, length, dh = 2, 300, 128
    # Activations after RMSNorm + RoPE have O(1) entries; a scale of 2 makes attention peaky enough
    # that the block selection matters.
    q = torch.randn(heads, length, dh, generator=g) * 2
    k = torch.randn(heads, length, dh, generator=g) * 2
    v = torch.randn(heads, length, dh, generator=g)
    w = torch.randn(dh, dh, generator=g) * 0.05
    b = torch.randn(dh, generator=g) * 0.05
    tensors = {"q": q.transpose(0, 1), "k": k.transpose(0, 1), "v": v.transpose(0, 1), "proj_l.weight": w, "proj_l.bias": b}
    meta = {}
    cases = [(0.1, 64, 128), (0.5, 64, 128), (0.5, 128, 64), (0.3, 64, 64), (1.0, 128, 64)]
    for i, (topk, bq, bk) in enumerate(cases):
        out, bmap = sla(q, k, v, w, b, topk, bq, bk)
        tensors[f"case{i}.out"] = out.transpose(0, 1)
        tensors[f"case{i}.block_map"] = bmap
        meta[f"case{i}"] = json.dumps(dict(topk=topk, block_q=bq, block_k=bk))
    dense = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh), dim=-1) @ v
    tensors["dense.out"] = dense.transpose(0, 1)
    meta["cases"] = str(len(cases))
    save_file({k: v.contiguous() for k, v in tensors.items()}, out_dir / "sla.safetensors", metadata=meta)


def main():
    torch.set_num_threads(2)
    tiny_fixtures()
    micro_fixtures()
    sla_fixtures()
    for path in sorted(list((ROOT / "wan_dit").iterdir()) + list((ROOT / "sla").iterdir())):
        print(f"{path.stat().st_size:9d}  {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
