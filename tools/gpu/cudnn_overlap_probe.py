"""Times cuDNN's legacy convolution API (the one Turbine's backend calls) on the VAE decoder's
time-folded causal convolution with its input in two layouts, to decide whether the norm before
it must write every frame three times.

- packed: x [F, H, W, 3C], each output frame's three input frames copied side by side (what
  `causal_rms_norm_silu_folded` writes now: 3x the frames' bytes);
- overlapping: one buffer [H, W, F + 2, C] holding every frame once, the pixel's frames side by
  side, read through a descriptor whose frame stride (C) is smaller than its channel extent (3C),
  so output frame t reads frames t, t + 1, t + 2 of each pixel as one 3C-channel row.

Both run the same 1x3x3 filter over 3C channels; where cuDNN takes both, the outputs are
compared. Usage, after `source tools/gpu/cudnn.sh` (the cuDNN the backend loads):
python3 cudnn_overlap_probe.py OUT.json. Result: bench/results/2026-11-29-vae-norm-groups.md."""
import ctypes, json, sys
import torch

from peers import median_ms

torch.manual_seed(0)
dev = "cuda"


def load_cudnn():
    # The library tools/gpu/cudnn.sh put on LD_LIBRARY_PATH, as the backend loads it.
    return ctypes.CDLL("libcudnn.so.9", mode=ctypes.RTLD_GLOBAL)


dnn = load_cudnn()
vp = ctypes.c_void_p
BF16, FLOAT, NHWC, XCORR, TENSOR_OP = 9, 0, 1, 1, 1


class Perf(ctypes.Structure):
    _fields_ = [("algo", ctypes.c_int), ("status", ctypes.c_int), ("time", ctypes.c_float),
                ("memory", ctypes.c_size_t), ("determinism", ctypes.c_int), ("mathType", ctypes.c_int),
                ("reserved", ctypes.c_int * 3)]


def ok(rc, what):
    if rc != 0:
        msg = dnn.cudnnGetErrorString
        msg.restype = ctypes.c_char_p
        raise RuntimeError(f"{what}: {rc} {msg(rc).decode()}")


def ints(v):
    return (ctypes.c_int * len(v))(*v)


handle = vp()
ok(dnn.cudnnCreate(ctypes.byref(handle)), "cudnnCreate")
ok(dnn.cudnnSetStream(handle, vp(torch.cuda.current_stream().cuda_stream)), "cudnnSetStream")


def tensor(dims, strides):
    d = vp()
    ok(dnn.cudnnCreateTensorDescriptor(ctypes.byref(d)), "create tensor")
    ok(dnn.cudnnSetTensorNdDescriptor(d, BF16, 5, ints(dims), ints(strides)), f"set tensor {dims} {strides}")
    return d


def conv_plan(xdims, xstrides, cout, pad):
    n, c, f, h, w = xdims
    x = tensor(xdims, xstrides)
    ydims = [1, cout, f, h, w]
    y = tensor(ydims, [f * h * w * cout, 1, h * w * cout, w * cout, cout])
    wd = vp()
    ok(dnn.cudnnCreateFilterDescriptor(ctypes.byref(wd)), "create filter")
    ok(dnn.cudnnSetFilterNdDescriptor(wd, BF16, NHWC, 5, ints([cout, c, 1, 3, 3])), "set filter")
    cd = vp()
    ok(dnn.cudnnCreateConvolutionDescriptor(ctypes.byref(cd)), "create conv")
    ok(dnn.cudnnSetConvolutionNdDescriptor(cd, 3, ints(pad), ints([1, 1, 1]), ints([1, 1, 1]), XCORR, FLOAT),
       "set conv")
    ok(dnn.cudnnSetConvolutionMathType(cd, TENSOR_OP), "math type")
    return x, wd, cd, y


WS = 256 << 20


def run(name, xdims, xstrides, xbuf, wbuf, ybuf, cout, flops, results):
    x, wd, cd, y = conv_plan(xdims, xstrides, cout, [0, 1, 1])
    ws = torch.empty(WS, dtype=torch.uint8, device=dev)
    perf = (Perf * 16)()
    count = ctypes.c_int(0)
    rc = dnn.cudnnFindConvolutionForwardAlgorithmEx(
        handle, x, vp(xbuf.data_ptr()), wd, vp(wbuf.data_ptr()), cd, y, vp(ybuf.data_ptr()), 16,
        ctypes.byref(count), perf, vp(ws.data_ptr()), ctypes.c_size_t(WS))
    row = {"case": name, "find_rc": rc, "algos": []}
    if rc == 0:
        for p in perf[: count.value]:
            row["algos"].append({"algo": p.algo, "status": p.status, "ms": p.time, "memory": p.memory,
                                 "math": p.mathType})
    good = [a for a in row["algos"] if a["status"] == 0 and a["memory"] <= WS]
    if good:
        best = good[0]
        ok(dnn.cudnnSetConvolutionMathType(cd, best["math"]), "math type")
        one, zero = ctypes.c_float(1.0), ctypes.c_float(0.0)

        def fwd():
            ok(dnn.cudnnConvolutionForward(handle, ctypes.byref(one), x, vp(xbuf.data_ptr()), wd, vp(wbuf.data_ptr()),
                                           cd, best["algo"], vp(ws.data_ptr()), ctypes.c_size_t(best["memory"]),
                                           ctypes.byref(zero), y, vp(ybuf.data_ptr())), "forward")

        row["best_algo"], row["median_ms"] = best["algo"], median_ms(fwd, warmup=3, iters=15)
        row["tflops"] = flops / row["median_ms"] / 1e9
    print(json.dumps(row), flush=True)
    results.append(row)


results = []
print(torch.__version__, torch.cuda.get_device_name(), flush=True)
for c, h, w, f in [(96, 480, 832, 4), (192, 240, 416, 4), (384, 120, 208, 2)]:
    slots = f + 2
    frames = torch.randn(h, w, slots, c, device=dev, dtype=torch.bfloat16)
    wt = (torch.randn(c, 1, 3, 3, 3 * c, device=dev, dtype=torch.bfloat16) * 0.05).contiguous()
    flops = 2 * f * h * w * c * 3 * c * 9
    # packed: output frame t's channels are frames t, t + 1, t + 2 of each pixel, side by side
    packed = torch.stack([frames[:, :, t:t + 3, :].reshape(h, w, 3 * c) for t in range(f)]).contiguous()
    y_packed = torch.full((f, h, w, c), float("nan"), device=dev, dtype=torch.bfloat16)
    run(f"packed {3 * c}->{c} [{f},{h},{w}]", [1, 3 * c, f, h, w],
        [f * h * w * 3 * c, 1, h * w * 3 * c, w * 3 * c, 3 * c], packed, wt, y_packed, c, flops, results)
    y_over = torch.full((f, h, w, c), float("nan"), device=dev, dtype=torch.bfloat16)
    try:
        run(f"overlapping {3 * c}->{c} [{f},{h},{w}]", [1, 3 * c, f, h, w],
            [h * w * slots * c, 1, c, w * slots * c, slots * c], frames, wt, y_over, c, flops, results)
        diff = (y_over.float() - y_packed.float()).abs().max().item()
        print(f"  max |overlapping - packed| = {diff}", flush=True)
        results[-1]["max_abs_diff_vs_packed"] = diff
    except RuntimeError as e:
        print(f"  overlapping refused: {e}", flush=True)
        results.append({"case": f"overlapping {3 * c}->{c}", "error": str(e)})
json.dump(results, open(sys.argv[1] if len(sys.argv) > 1 else "cudnn_overlap_probe.json", "w"), indent=1)
