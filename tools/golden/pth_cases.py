"""Edge-case PyTorch checkpoints for the Rust `.pth` reader (turbine-checkpoint).

Writes tiny `torch.save` files into `tests/fixtures/pth/`:

- `dtypes.pth`: one tensor per storage type (f32, f16, bf16, int8, uint8, int16, int32, int64, f64,
  bool).
- `nested.pth`: a TurboDiffusion-style training checkpoint, `{"state_dict": {"net.…": …}, "epoch": …,
  "config": {…}}`, whose non-tensor leaves the reader must skip and report.
- `views.pth`: views sharing one storage (a column stride, a transpose, a row with an offset, a
  narrowed block, an expanded tensor with stride 0, the same tensor object twice) next to the base.
- `shapes.pth`: 0-dim and empty tensors.
- `module.pth`: a real `nn.Module.state_dict()` (an `OrderedDict` with `_metadata`) plus
  `nn.Parameter` values (pickled through `torch._utils._rebuild_parameter`).
- `legacy.pth`: the pre-zip format (`_use_new_zipfile_serialization=False`), which the reader must
  refuse with a clear error.

and `cases_expected.safetensors`, written by the safetensors package from contiguous copies: the
tensors of every case under `<case>/<flattened dotted name>` (e.g. `nested/state_dict.net.blocks.0.w`),
with metadata `skipped/<case>` holding the JSON list of the non-tensor names the reader must
report. The Rust test `shared/checkpoint/tests/pth.rs` compares them byte for byte.

Rerun from the repository root (torch 2.11 CPU, safetensors 0.8.0, no network):

    /work/pyenv-golden/bin/python tools/golden/pth_cases.py
"""

import json
from collections import OrderedDict
from pathlib import Path

import torch
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "pth"


def dtypes_case():
    base = torch.tensor([[-1.5, 0.25, 3.0], [1e-3, -7.0, 65504.0]])
    return {
        "f32": base,
        "f16": base.to(torch.float16),
        "bf16": base.to(torch.bfloat16),
        "f64": base.to(torch.float64) / 3,
        "i8": torch.tensor([-128, -1, 0, 1, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 1, 200, 255], dtype=torch.uint8),
        "i16": torch.tensor([-32768, 0, 32767], dtype=torch.int16),
        "i32": torch.tensor([-(2**31), 5, 2**31 - 1], dtype=torch.int32),
        "i64": torch.tensor([-(2**63), -1, 2**40, 2**63 - 1], dtype=torch.int64),
        "bool": torch.tensor([True, False, True]),
    }, []


def nested_case():
    g = torch.Generator().manual_seed(1)
    ckpt = {
        "state_dict": {
            "net.blocks.0.w": torch.randn(3, 2, generator=g).to(torch.bfloat16),
            "net.blocks.0.b": torch.randn(3, generator=g),
            "net.head": {"proj": torch.randn(2, 2, generator=g)},
            "logvar": torch.zeros(1),
        },
        "epoch": 7,
        "config": {"lr": 0.1, "name": "turbo", "betas": (0.9, 0.99)},
        "note": None,
    }
    flat = {
        "state_dict.net.blocks.0.w": ckpt["state_dict"]["net.blocks.0.w"],
        "state_dict.net.blocks.0.b": ckpt["state_dict"]["net.blocks.0.b"],
        "state_dict.net.head.proj": ckpt["state_dict"]["net.head"]["proj"],
        "state_dict.logvar": ckpt["state_dict"]["logvar"],
    }
    return ckpt, flat, ["epoch", "config", "note"]


def views_case():
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    views = {
        "base": base,
        "every_other": base[:, ::2],
        "transposed": base.t(),
        "row": base[2],
        "block": base[1:3, 2:5],
        "expanded": torch.arange(3, dtype=torch.int64).expand(2, 3),
        "tied_a": base[3],
    }
    views["tied_b"] = views["tied_a"]  # the same object: pickled once, then referenced from the memo
    return views, []


def shapes_case():
    return {
        "scalar": torch.tensor(2.5),
        "scalar_bf16": torch.tensor(-0.5, dtype=torch.bfloat16),
        "empty": torch.zeros(0),
        "empty_3d": torch.zeros(2, 0, 3, dtype=torch.float16),
        "unit_dims": torch.arange(4, dtype=torch.float32).reshape(1, 4, 1),
    }, []


def module_case():
    torch.manual_seed(2)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.LayerNorm(2))
    sd = net.state_dict()
    assert isinstance(sd, OrderedDict) and hasattr(sd, "_metadata")
    ckpt = {"model": sd, "params": {"scale": torch.nn.Parameter(torch.full((2,), 0.5))}}
    flat = {f"model.{k}": v for k, v in sd.items()}
    flat["params.scale"] = ckpt["params"]["scale"].detach()
    return ckpt, flat, []


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    expected = {}
    metadata = {}

    def record(case, flat, skipped):
        for name, t in flat.items():
            expected[f"{case}/{name}"] = t.detach().contiguous().clone()
        metadata[f"skipped/{case}"] = json.dumps(skipped)

    for case, make in [("dtypes", dtypes_case), ("views", views_case), ("shapes", shapes_case)]:
        tensors, skipped = make()
        torch.save(tensors, OUT / f"{case}.pth")
        record(case, tensors, skipped)

    for case, make in [("nested", nested_case), ("module", module_case)]:
        ckpt, flat, skipped = make()
        torch.save(ckpt, OUT / f"{case}.pth")
        record(case, flat, skipped)

    torch.save({"w": torch.ones(2)}, OUT / "legacy.pth", _use_new_zipfile_serialization=False)

    save_file(expected, OUT / "cases_expected.safetensors", metadata=metadata)
    for path in sorted(OUT.iterdir()):
        print(f"{path.stat().st_size:6d}  {path.name}")


if __name__ == "__main__":
    main()
