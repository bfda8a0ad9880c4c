"""Times cuDNN (through PyTorch, cudnn.benchmark) on the VAE decoder's full-resolution 96-channel
causal convolution and on re-formulations of it, to decide how Turbine should run that layer."""
import torch, json, sys

torch.backends.cudnn.benchmark = True
dev = "cuda"
F, H, W, C = 6, 480, 832, 96
results = []


def timeit(name, fn, flops):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(15):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e))
    times.sort()
    med = times[len(times) // 2]
    results.append({"case": name, "median_ms": med, "tflops": flops / med / 1e9})
    print(f"{name:<60} {med:8.3f} ms {flops / med / 1e9:7.1f} TFLOPS", flush=True)


def conv3d_case(name, cin, cout, f, h, w, k, pad):
    x = torch.randn(1, cin, f, h, w, device=dev, dtype=torch.bfloat16).to(memory_format=torch.channels_last_3d)
    wt = (torch.randn(cout, cin, *k, device=dev, dtype=torch.bfloat16) * 0.05).to(memory_format=torch.channels_last_3d)
    b = torch.randn(cout, device=dev, dtype=torch.bfloat16)
    out_f = f - k[0] + 1 + 2 * pad[0]
    flops = 2 * out_f * h * w * cout * cin * k[0] * k[1] * k[2]
    timeit(name, lambda: torch.nn.functional.conv3d(x, wt, b, padding=pad), flops)


def conv2d_case(name, n, cin, cout, h, w, k, pad):
    x = torch.randn(n, cin, h, w, device=dev, dtype=torch.bfloat16).to(memory_format=torch.channels_last)
    wt = (torch.randn(cout, cin, *k, device=dev, dtype=torch.bfloat16) * 0.05).to(memory_format=torch.channels_last)
    b = torch.randn(cout, device=dev, dtype=torch.bfloat16)
    flops = 2 * n * h * w * cout * cin * k[0] * k[1]
    timeit(name, lambda: torch.nn.functional.conv2d(x, wt, b, padding=pad), flops)


print(torch.__version__, torch.backends.cudnn.version(), torch.cuda.get_device_name())
for cin, cout in [(96, 96), (128, 96), (96, 128), (128, 128), (192, 96), (112, 96)]:
    conv3d_case(f"3d {cin}->{cout} k333 [6,480,832]", cin, cout, F, H, W, (3, 3, 3), (0, 1, 1))
conv2d_case("2d 288->96 k33 N=4 [480,832] (T taps in channels)", 4, 288, 96, H, W, (3, 3), (1, 1))
conv2d_case("2d 96->96 k33 N=4 [480,832] (one T tap)", 4, 96, 96, H, W, (3, 3), (1, 1))
conv2d_case("2d 128->96 k33 N=4 [480,832] (one T tap, padded)", 4, 128, 96, H, W, (3, 3), (1, 1))
json.dump(results, open(sys.argv[1] if len(sys.argv) > 1 else "conv_probe.json", "w"), indent=1)
