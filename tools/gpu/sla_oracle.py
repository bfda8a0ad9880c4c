"""TurboDiffusion's own SLA as an external oracle for Turbine's SageSLA (issue 6).

Inputs are the files of `turbine-gpucheck --parts sla-dump --dump-sla DIR`
(services/gpucheck/src/sla_dump.rs): per probed layer of a Wan2.1-1.3B 480p forward, q, k, v
(bf16 [L, H, 128]), proj_l, and our outputs at each top-k: SageSLA (8-bit) and the f32 SLA
reference, with the reference's block selection. The oracle is `SparseLinearAttention` of the
`turbodiffusion==1.0.0` sdist (`turbodiffusion/SLA/core.py`, Triton kernel `kernel.py`, block
selection `utils.py`), imported at run time from the extracted sdist (--upstream), never copied into
this repository. Upstream's `SageSparseLinearAttention` needs SpargeAttn's CUDA extensions
(`spas_sage_attn`), which cannot be installed here; core.py imports them under try/except, so the
Triton SLA in the same file loads without them and nothing is stubbed.

What upstream's 1.0.0 source fixes, and how the rows follow from it:
- Its Triton kernel asserts BLOCK_N == 64 (BLOCK_M 64 or 128), while its SageSLA on sm90 selects
  with BLKQ=64, BLKK=128, our shape. Row `upstream 64x128` therefore builds
  `SparseLinearAttention(BLKQ=64, BLKK=64)` and swaps its `get_block_map` for upstream's own
  `get_block_map(BLKQ=64, BLKK=128)` (the call SageSLA makes on sm90), each selected 128-key block
  handed to the kernel as its two 64-key halves: the same keys, through upstream's kernel, feature
  map, linear branch and proj_l. Gated against our SageSLA and our f32 SLA.
- Row `upstream, our selection` feeds the f32 reference's dumped selection the same way, so only
  upstream's kernel and linear branch differ from our f32 SLA (bf16 rounding). Gated likewise.
- Row `upstream sla 128x64` is upstream's module unchanged at TurboDiffusion's `--attention_type sla`
  blocks (BLKQ=128, BLKK=64): other blocks, another selection. Reported, not gated.
- Selection: upstream smooths k, mean-pools and scores in the input dtype (bf16 k mean, bf16 block
  means, bf16 score matmul) and takes torch.topk; ours does it in f32. Near-ties can pick other
  blocks, so the share of (head, query block) rows selected identically and the share of kept
  blocks in common are reported. Count: upstream int(topk·blocks) without our clamp to >= 1 (the
  same at these shapes; a case where upstream would keep none is refused).
- Linear branch, both sides: φ = softmax over the head dim for q and k, φ(q)(φ(k)ᵀv) /
  (1e-5 + φ(q)·Σφ(k)) over all tokens, then proj_l; upstream in bf16 matmuls with proj_l under bf16
  autocast (1.0.0's SageSLA alone drops the 1e-5), ours in f32 (reference) or fused (SageSLA).

Gates: issue 6's cos >= 0.99 and rel L1 <= 0.08 (Σ|got − want| / Σ|want|, turbine_tensor::compare's
measures). One line per comparison, a JSON summary with --out; exit 1 when a gate fails, 2 when the
harness cannot run.

--device cpu needs no GPU: upstream's two Triton kernels (block mean-pool, block-sparse attention)
are replaced by torch equivalents and proj_l is cast to bf16 (autocast('cuda') does nothing on the
CPU); the rest is upstream's code. On the tiny dump of our CPU SLA that
`TURBINE_SLA_DUMP_TEST_DIR=DIR cargo test -p turbine-gpucheck dump_round_trips` writes, it checks
this harness (layout, feature map, block splitting, proj_l) without a GPU.

    python3 tools/gpu/sla_oracle.py --upstream SDIST_DIR --dump DIR --out oracle.json
"""

import argparse
import contextlib
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file

COS_MIN = 0.99
REL_L1_MAX = 0.08
HEAD_DIM = 128
# Key block size of upstream's Triton kernel (kernel.py asserts BLOCK_N == 64).
KERNEL_BLOCK_K = 64


class HarnessError(Exception):
    """The comparison cannot be made (exit 2), as opposed to a failed gate (exit 1)."""


def load_upstream(root):
    """`turbodiffusion.SLA.core` and `.utils` from the extracted sdist at `root`."""
    if not (Path(root) / "turbodiffusion" / "SLA" / "core.py").is_file():
        raise HarnessError(f"{root}: no turbodiffusion/SLA/core.py (extract the sdist there)")
    sys.path.insert(0, str(root))
    from turbodiffusion.SLA import core, utils

    return core, utils


@contextlib.contextmanager
def replaced(module, name, value):
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


def cpu_mean_pool(x, BLK):
    """utils.mean_pool without Triton: block means over the real length of the last block,
    f32 sums stored in x's dtype, as compress_kernel does."""
    B, H, L, D = x.shape
    n = -(-L // BLK)
    sums = F.pad(x.float(), (0, 0, 0, n * BLK - L)).view(B, H, n, BLK, D).sum(3)
    counts = torch.full((n, 1), float(BLK))
    counts[-1] = L - (n - 1) * BLK
    return (sums / counts).to(x.dtype)


class CpuSparseAttention:
    """kernel._attention without Triton: per query block, softmax over its LUT's key blocks with
    f32 scores, p rounded to v's dtype before P·V and the sum taken in f32, as _attn_fwd does."""

    @staticmethod
    def apply(q, k, v, k_block_id, lut, topk, BLOCK_M, BLOCK_N, qk_scale=None):
        B, H, L, D = q.shape
        scale = qk_scale or D**-0.5
        out = torch.empty_like(v)
        for b in range(B):
            for h in range(H):
                for m in range(-(-L // BLOCK_M)):
                    rows = slice(m * BLOCK_M, min(L, (m + 1) * BLOCK_M))
                    keys = torch.cat([torch.arange(j * BLOCK_N, min(L, (j + 1) * BLOCK_N))
                                      for j in lut[b, h, m].tolist()])
                    s = (q[b, h, rows].float() @ k[b, h, keys].float().T) * scale
                    p = torch.exp(s - s.amax(-1, keepdim=True))
                    o = p.to(v.dtype).float() @ v[b, h, keys].float()
                    out[b, h, rows] = (o / p.sum(-1, keepdim=True)).to(out.dtype)
        return out


def split_keys(sparse_map, lut, topk, keys):
    """A selection of 128-key blocks as one of 64-key blocks, the only size upstream's kernel
    takes: block j becomes 2j and 2j + 1. Both halves hold keys unless the last 128-key block has
    64 or fewer, which is refused (the kernel would see an empty block)."""
    if 2 * sparse_map.shape[-1] != -(-keys // KERNEL_BLOCK_K):
        raise HarnessError(f"{keys} tokens: the last 128-key block holds <= 64 keys")
    lut = torch.cat([2 * lut, 2 * lut + 1], dim=-1).contiguous()
    return sparse_map.repeat_interleave(2, dim=-1).contiguous(), lut, 2 * topk


def upstream_selection(utils, seen):
    """A get_block_map for a module of 64x64 blocks that selects as upstream's SageSLA does on
    sm90 (64 queries x 128 keys) and records that 128-key map in `seen`."""

    def get_block_map(q, k, topk_ratio, BLKQ, BLKK):
        if (BLKQ, BLKK) != (64, KERNEL_BLOCK_K):
            raise HarnessError(f"module blocks {BLKQ}x{BLKK}, expected 64x{KERNEL_BLOCK_K}")
        sparse_map, lut, topk = utils.get_block_map(q, k, topk_ratio, BLKQ=64, BLKK=128)
        if topk == 0:
            raise HarnessError(f"upstream keeps int({topk_ratio} * {sparse_map.shape[-1]}) = 0 "
                               "key blocks (ours keeps 1): pick a larger top-k")
        seen.append(sparse_map)
        return split_keys(sparse_map, lut, topk, k.shape[-2])

    return get_block_map


def fixed_selection(mask):
    """A get_block_map returning our selection `mask` [H, query blocks, 128-key blocks]."""

    def get_block_map(q, k, topk_ratio, BLKQ, BLKK):
        sparse_map = mask[None].to(device=q.device, dtype=torch.int8)
        kept = sparse_map.sum(-1)
        topk = int(kept.flatten()[0])
        if not bool((kept == topk).all()):
            raise HarnessError("our selection keeps different block counts per row")
        lut = torch.topk(sparse_map.float(), topk, dim=-1).indices
        return split_keys(sparse_map, lut, topk, k.shape[-2])

    return get_block_map


def build(core, topk, blocks, proj_l, device):
    """Upstream's SparseLinearAttention with our proj_l (upstream keeps it in f32 and applies it
    under bf16 autocast; on the CPU, where that autocast is off, it is cast to bf16 instead)."""
    attn = core.SparseLinearAttention(HEAD_DIM, topk, feature_map="softmax", BLKQ=blocks[0],
                                      BLKK=blocks[1], use_bf16=True)
    with torch.no_grad():
        attn.proj_l.weight.copy_(proj_l[0].float())
        attn.proj_l.bias.copy_(proj_l[1].float())
    attn = attn.to(device)
    if device.type == "cpu":
        attn.proj_l.to(torch.bfloat16)
    return attn


def metrics(got, want):
    g, w = got.double().flatten(), want.double().flatten()
    if bool(torch.isnan(g).any()):
        return float("nan"), float("nan"), float("nan")
    cos = (g @ w / (g.norm() * w.norm())).item()
    l1 = ((g - w).abs().sum() / w.abs().sum()).item()
    return cos, l1, (g - w).abs().max().item()


def row(name, got, want, gated):
    cos, l1, max_abs = metrics(got, want)
    ok = cos >= COS_MIN and l1 <= REL_L1_MAX
    verdict = ("ok" if ok else "FAIL") if gated else "(not gated)"
    print(f"{name:<76} cos {cos:.6f}  rel L1 {l1:.4f}  max |diff| {max_abs:.3e}  {verdict}")
    return {"check": name, "cos": cos, "rel_l1": l1, "max_abs_diff": max_abs, "gated": gated,
            "ok": ok or not gated}


def selection_match(upstream_map, ours):
    u, o = upstream_map[0].bool(), ours.bool().to(upstream_map.device)
    return {"identical_rows": (u == o).all(-1).float().mean().item(),
            "kept_in_common": ((u & o).sum() / o.sum()).item()}


def run_case(core, utils, path, device):
    with safe_open(path, "pt") as f:
        meta = f.metadata()
    t = load_file(path, device=str(device))
    if (int(meta["block_q"]), int(meta["block_k"])) != (64, 128):
        raise HarnessError(f"{path}: blocks {meta['block_q']}x{meta['block_k']}, expected 64x128")
    q, k, v = (t[n][None] for n in ("q", "k", "v"))  # [1, L, H, D], upstream's input layout
    proj_l = (t["proj_l.weight"], t["proj_l.bias"])
    at = f"layer {meta['layer']} t {float(meta['timestep']):.1f}"
    rows, selections = [], {}
    for topk in meta["topks"].split(","):
        ratio = float(topk)
        sage, sla, ours = (t[f"{n}_topk{topk}"] for n in ("sagesla", "sla_f32", "blocks"))

        def upstream(blocks, selection=None):
            attn = build(core, ratio, blocks, proj_l, device)
            swap = (replaced(core, "get_block_map", selection) if selection
                    else contextlib.nullcontext())
            with torch.no_grad(), swap:
                return attn(q, k, v)[0]

        seen = []
        sage_shape = upstream((64, KERNEL_BLOCK_K), upstream_selection(utils, seen))
        ours_sel = upstream((64, KERNEL_BLOCK_K), fixed_selection(ours))
        sla_shape = upstream((128, 64))
        name = f"topk {topk}, {at}"
        rows += [
            row(f"upstream 64x128 vs our sagesla, {name}", sage_shape, sage, True),
            row(f"upstream 64x128 vs our f32 sla, {name}", sage_shape, sla, True),
            row(f"upstream, our selection vs our sagesla, {name}", ours_sel, sage, True),
            row(f"upstream, our selection vs our f32 sla, {name}", ours_sel, sla, True),
            row(f"upstream sla 128x64 vs our f32 sla, {name}", sla_shape, sla, False),
            row(f"our sagesla vs our f32 sla (gpucheck's row), {name}", sage, sla, False),
        ]
        selections[topk] = selection_match(seen[0], ours)
        s = selections[topk]
        print(f"{'selection, upstream 64x128 vs our f32 sla, ' + name:<76} identical rows "
              f"{s['identical_rows']:.4f}  kept blocks in common {s['kept_in_common']:.4f}")
    return {"file": str(path), "layer": int(meta["layer"]), "timestep": float(meta["timestep"]),
            "tokens": q.shape[1], "heads": q.shape[2], "rows": rows, "selection": selections}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True,
                        help="the extracted turbodiffusion sdist (the folder holding turbodiffusion/)")
    parser.add_argument("--dump", required=True, help="gpucheck's --dump-sla folder")
    parser.add_argument("--out", help="write the JSON summary here")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    args = parser.parse_args()
    try:
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise HarnessError("CUDA is unavailable (--device cpu runs the torch stand-ins)")
        core, utils = load_upstream(args.upstream)
        files = sorted(Path(args.dump).glob("sla-*.safetensors"))
        if not files:
            raise HarnessError(f"{args.dump}: no sla-*.safetensors")
        print(f"== TurboDiffusion SLA ({args.upstream}) on {args.device}: gates cos >= {COS_MIN}, "
              f"rel L1 <= {REL_L1_MAX}")
        swaps = contextlib.ExitStack()
        if device.type == "cpu":
            swaps.enter_context(replaced(utils, "mean_pool", cpu_mean_pool))
            swaps.enter_context(replaced(core, "_attention", CpuSparseAttention))
        with swaps:
            cases = [run_case(core, utils, f, device) for f in files]
    except HarnessError as e:
        print(f"sla_oracle: {e}", file=sys.stderr)
        return 2
    ok = all(r["ok"] for c in cases for r in c["rows"])
    import triton  # imported by upstream already; only its version is read here

    summary = {
        "upstream": str(args.upstream),
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "triton": triton.__version__,
        "gates": {"cos_min": COS_MIN, "rel_l1_max": REL_L1_MAX},
        "cases": cases,
        "ok": ok,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1))
    print("ALL GATES PASSED" if ok else "SOME GATES FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
