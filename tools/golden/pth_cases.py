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
- `exotic.pth` (pickle protocol 5): dtypes without a typed storage class (float8 e4m3/e5m2,
  uint16/32/64), rebuilt through `_rebuild_tensor_v3` over an untyped storage, complex64, a tensor
  with a Python attribute (`_rebuild_from_type_v2`) and a Parameter with one
  (`_rebuild_parameter_with_state`).
- `turbowan.pth` (pickle protocol 4: FRAME, MEMOIZE, STACK_GLOBAL): a TurboWan-like training
  checkpoint, int8 weights with bf16 scales under `state_dict.net.`, an Adam optimizer state (int
  keys, `param_groups` without tensors), an `argparse.Namespace` and a step counter.
- `legacy.pth`: the pre-zip format (`_use_new_zipfile_serialization=False`), which the reader must
  refuse with a clear error.
- `bad_*.pth`: broken checkpoints the reader must refuse with an error naming the file and, where
  there is one, the tensor (forged with `zipfile` and a pickler whose persistent ids name storage
  records, so each breaks exactly one thing): `bad_missing_storage` (a storage record absent),
  `bad_short_storage` (a view reaching past its storage), `bad_storage_size` (a record shorter
  than data.pkl declares), `bad_pickle` (data.pkl cut before STOP, with a valid CRC),
  `bad_compressed` (a deflated record), `bad_root` (a bare tensor at the top level).

and `cases_expected.safetensors`, written by the safetensors package from contiguous copies: the
tensors of every case under `<case>/<flattened dotted name>` (e.g. `nested/state_dict.net.blocks.0.w`),
with metadata `skipped/<case>` holding the JSON list of the non-tensor names the reader must
report. The Rust test `shared/checkpoint/tests/pth.rs` compares them byte for byte.

Rerun from the repository root (torch 2.15 CPU, safetensors 0.8.0, no network):

    /work/main/pyenv-golden/bin/python tools/golden/pth_cases.py
"""

import argparse
import io
import json
import pickle
import zipfile
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


def exotic_case():
    with_attr = torch.arange(3, dtype=torch.float32)
    with_attr.note = "calibrated"
    param = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    param.tag = 1
    base = torch.tensor([[0.5, -1.0, 2.0], [448.0, -0.015625, 0.0]])
    tensors = {
        "f8_e4m3": base.to(torch.float8_e4m3fn),
        "f8_e5m2": base.to(torch.float8_e5m2),
        "u16": torch.tensor([0, 1, 65535], dtype=torch.uint16),
        "u32": torch.tensor([0, 2**32 - 1], dtype=torch.uint32),
        "u64": torch.tensor([0, 2**64 - 1], dtype=torch.uint64),
        "c64": torch.tensor([1 + 2j, -0.5j], dtype=torch.complex64),
        "f8_t": base.to(torch.float8_e4m3fn).t(),
        "with_attr": with_attr,
        "param": param,
    }
    flat = dict(tensors, param=param.detach())
    return tensors, flat, []


def turbowan_case():
    g = torch.Generator().manual_seed(3)
    w = torch.randint(-127, 128, (4, 3), dtype=torch.int8, generator=g)
    sd = {
        "net.blocks.0.self_attn.q.weight": w,
        "net.blocks.0.self_attn.q.scale": torch.rand(4, 1, generator=g).to(torch.bfloat16),
        "net.blocks.0.norm.weight": torch.ones(3, dtype=torch.bfloat16),
        "net.head.weight": torch.randn(2, 3, generator=g).to(torch.bfloat16),
        "net.head.bias": torch.zeros(2),
        "logvar.weight": torch.zeros(1, 1),
    }
    adam = {
        "state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.full((2,), 0.25)}},
        "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "params": [0]}],
    }
    ckpt = {
        "state_dict": sd,
        "optimizer": adam,
        "args": argparse.Namespace(lr=1e-4, name="turbowan"),
        "iteration": 1000,
    }
    flat = {f"state_dict.{k}": v for k, v in sd.items()}
    flat["optimizer.state.0.step"] = adam["state"][0]["step"]
    flat["optimizer.state.0.exp_avg"] = adam["state"][0]["exp_avg"]
    return ckpt, flat, ["optimizer.param_groups", "args", "iteration"]


class StorageRef:
    """Pickled as torch's persistent id for a float32 storage record."""

    def __init__(self, key, numel):
        self.key, self.numel = key, numel


class ViewOf:
    """Pickled as a `_rebuild_tensor_v2` call, however inconsistent its arguments."""

    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride, False, OrderedDict())

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, self.args


class ForgingPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, StorageRef):
            return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
        return None


def forge(path, obj, records, cut=0, compress=()):
    """Writes a torch.save-shaped zip: `obj` pickled as data.pkl (minus its last `cut` bytes),
    `records` as storage records, those named in `compress` deflated."""
    buf = io.BytesIO()
    ForgingPickler(buf, protocol=2).dump(obj)
    pkl = buf.getvalue()[: len(buf.getvalue()) - cut]
    entries = {"data.pkl": pkl, "byteorder": b"little"}
    entries.update({f"data/{key}": data for key, data in records.items()})
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries.items():
            # A fixed timestamp keeps reruns byte-identical.
            info = zipfile.ZipInfo(f"forged/{name}", date_time=(1980, 1, 1, 0, 0, 0))
            deflate = name.removeprefix("data/") in compress
            info.compress_type = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
            z.writestr(info, data)


def bad_cases():
    four = torch.arange(4, dtype=torch.float32).numpy().tobytes()
    ok = ViewOf(StorageRef("0", 4), 0, (2, 2), (2, 1))
    forge(
        OUT / "bad_missing_storage.pth",
        {"ok": ok, "w": ViewOf(StorageRef("1", 4), 0, (4,), (1,))},
        {"0": four},
    )
    forge(
        OUT / "bad_short_storage.pth",
        {"w": ViewOf(StorageRef("0", 4), 0, (3, 3), (3, 1))},
        {"0": four},
    )
    forge(
        OUT / "bad_storage_size.pth",
        {"w": ViewOf(StorageRef("0", 4), 0, (4,), (1,))},
        {"0": four[:12]},
    )
    forge(OUT / "bad_pickle.pth", {"w": ok}, {"0": four}, cut=3)
    forge(OUT / "bad_compressed.pth", {"w": ok}, {"0": four}, compress=("0",))
    torch.save(torch.ones(2), OUT / "bad_root.pth")


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

    for case, make, protocol in [
        ("nested", nested_case, 2),
        ("module", module_case, 2),
        ("exotic", exotic_case, 5),
        ("turbowan", turbowan_case, 4),
    ]:
        ckpt, flat, skipped = make()
        torch.save(ckpt, OUT / f"{case}.pth", pickle_protocol=protocol)
        record(case, flat, skipped)

    torch.save({"w": torch.ones(2)}, OUT / "legacy.pth", _use_new_zipfile_serialization=False)
    bad_cases()

    save_file(expected, OUT / "cases_expected.safetensors", metadata=metadata)
    for path in sorted(OUT.iterdir()):
        print(f"{path.stat().st_size:6d}  {path.name}")


if __name__ == "__main__":
    main()
