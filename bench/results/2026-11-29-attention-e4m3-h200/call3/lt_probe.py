# cuBLASLt FP8 scale-mode / output-type probe: which combinations have an algorithm on this GPU,
# and how fast each runs at Wan's FFN-in shapes.
import ctypes, glob, os, sys, torch
import nvidia
libs = []
for base in nvidia.__path__:
    libs += glob.glob(os.path.join(base, "**", "libcublasLt.so*"), recursive=True)
libs += glob.glob("/usr/local/cuda*/lib64/libcublasLt.so*")
lt = ctypes.CDLL(sorted(libs)[0])
print("cublasLt:", sorted(libs)[0], "version", lt.cublasLtGetVersion())
vp = ctypes.c_void_p
h = vp(); assert lt.cublasLtCreate(ctypes.byref(h)) == 0
E4M3, BF16, F32 = 28, 14, 0
SCALAR, OUTER, VEC128, BLK128 = 0, 3, 4, 5
TRANSA, EPI, BIAS, ASP, BSP, DSP, FAST, BIAS_T, AMODE, BMODE = 3, 7, 8, 17, 18, 20, 25, 26, 31, 32
NONE, GELU_BIAS = 1, 36
def setd(d, attr, val, ctype):
    v = ctype(val); r = lt.cublasLtMatmulDescSetAttribute(d, attr, ctypes.byref(v), ctypes.sizeof(v)); assert r == 0, (attr, r)
def layout(t, rows, cols):
    l = vp(); assert lt.cublasLtMatrixLayoutCreate(ctypes.byref(l), t, ctypes.c_uint64(rows), ctypes.c_uint64(cols), ctypes.c_int64(rows)) == 0
    return l
ws = torch.empty(32 << 20, dtype=torch.uint8, device="cuda")
pref = vp(); lt.cublasLtMatmulPreferenceCreate(ctypes.byref(pref))
wsz = ctypes.c_uint64(32 << 20); lt.cublasLtMatmulPreferenceSetAttribute(pref, 1, ctypes.byref(wsz), 8)
class Res(ctypes.Structure):
    _fields_ = [("algo", ctypes.c_uint64 * 8), ("ws", ctypes.c_size_t), ("state", ctypes.c_int), ("waves", ctypes.c_float), ("r", ctypes.c_int * 4)]
def run(name, m, n, k, amode, bmode, dtype, epi, fast):
    A = torch.randint(0, 120, (m * k,), dtype=torch.uint8, device="cuda")
    B = torch.randint(0, 120, (k * n,), dtype=torch.uint8, device="cuda")
    D = torch.empty(m * n * (2 if dtype == BF16 else 1), dtype=torch.uint8, device="cuda")
    C = torch.zeros(m * n * 2, dtype=torch.uint8, device="cuda")
    sa = torch.full((max(m, (m // 128 + 1) * (k // 128 + 1)) + 64,), 0.01, device="cuda")
    sb = torch.full((max(n, n * (k // 128 + 1)) + 64,), 0.01, device="cuda")
    sd = torch.full((1,), 1.0, device="cuda")
    bias = torch.zeros(m, dtype=torch.bfloat16, device="cuda")
    d = vp(); assert lt.cublasLtMatmulDescCreate(ctypes.byref(d), 68, F32) == 0
    setd(d, TRANSA, 1, ctypes.c_int32)
    setd(d, AMODE, amode, ctypes.c_int32); setd(d, BMODE, bmode, ctypes.c_int32)
    setd(d, ASP, sa.data_ptr(), ctypes.c_uint64); setd(d, BSP, sb.data_ptr(), ctypes.c_uint64)
    if fast: setd(d, FAST, 1, ctypes.c_int8)
    if epi != NONE:
        setd(d, EPI, epi, ctypes.c_uint32); setd(d, BIAS, bias.data_ptr(), ctypes.c_uint64); setd(d, BIAS_T, BF16, ctypes.c_int32)
    if dtype == E4M3: setd(d, DSP, sd.data_ptr(), ctypes.c_uint64)
    la, lb, lc, ld = layout(E4M3, k, m), layout(E4M3, k, n), layout(BF16 if dtype != F32 else F32, m, n), layout(dtype, m, n)
    res = (Res * 4)(); ret = ctypes.c_int()
    st = lt.cublasLtMatmulAlgoGetHeuristic(h, d, la, lb, lc, ld, pref, 4, res, ctypes.byref(ret))
    if st != 0 or ret.value == 0:
        print(f"{name:58s} no algorithm (status {st}, returned {ret.value})"); return
    alpha, beta = ctypes.c_float(1.0), ctypes.c_float(0.0)
    stream = torch.cuda.current_stream().cuda_stream
    def once():
        r = lt.cublasLtMatmul(h, d, ctypes.byref(alpha), vp(A.data_ptr()), la, vp(B.data_ptr()), lb, ctypes.byref(beta), vp(C.data_ptr()), lc, vp(D.data_ptr()), ld, ctypes.byref(res[0].algo), vp(ws.data_ptr()), ctypes.c_size_t(32 << 20), vp(stream))
        assert r == 0, r
    for _ in range(3): once()
    ts = []
    for _ in range(20):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record(); once(); e.record(); torch.cuda.synchronize(); ts.append(s.elapsed_time(e))
    ts.sort(); ms = ts[len(ts) // 2]
    print(f"{name:58s} {ms:8.3f} ms  {2 * m * n * k / ms / 1e9:7.0f} TFLOP/s")


def candidates(name, m, n, k, amode, bmode, dtype, count=8):
    A = torch.randint(0, 120, (m * k,), dtype=torch.uint8, device="cuda")
    B = torch.randint(0, 120, (k * n,), dtype=torch.uint8, device="cuda")
    D = torch.empty(m * n * (2 if dtype == BF16 else 1), dtype=torch.uint8, device="cuda")
    sa = torch.full((m + 64,), 0.01, device="cuda"); sb = torch.full((n + 64,), 0.01, device="cuda"); sd = torch.full((1,), 1.0, device="cuda")
    bias = torch.zeros(m, dtype=torch.bfloat16, device="cuda")
    d = vp(); assert lt.cublasLtMatmulDescCreate(ctypes.byref(d), 68, F32) == 0
    setd(d, TRANSA, 1, ctypes.c_int32)
    setd(d, AMODE, amode, ctypes.c_int32); setd(d, BMODE, bmode, ctypes.c_int32)
    setd(d, ASP, sa.data_ptr(), ctypes.c_uint64); setd(d, BSP, sb.data_ptr(), ctypes.c_uint64)
    setd(d, FAST, 1, ctypes.c_int8)
    setd(d, EPI, GELU_BIAS, ctypes.c_uint32); setd(d, BIAS, bias.data_ptr(), ctypes.c_uint64); setd(d, BIAS_T, BF16, ctypes.c_int32)
    if dtype == E4M3: setd(d, DSP, sd.data_ptr(), ctypes.c_uint64)
    la, lb, lc, ld = layout(E4M3, k, m), layout(E4M3, k, n), layout(BF16, m, n), layout(dtype, m, n)
    res = (Res * count)(); ret = ctypes.c_int()
    st = lt.cublasLtMatmulAlgoGetHeuristic(h, d, la, lb, lc, ld, pref, count, res, ctypes.byref(ret))
    alpha, beta = ctypes.c_float(1.0), ctypes.c_float(0.0)
    stream = torch.cuda.current_stream().cuda_stream
    out = []
    for i in range(ret.value):
        def once():
            return lt.cublasLtMatmul(h, d, ctypes.byref(alpha), vp(A.data_ptr()), la, vp(B.data_ptr()), lb, ctypes.byref(beta), vp(0) if dtype == E4M3 else vp(D.data_ptr()), lc, vp(D.data_ptr()), ld, ctypes.byref(res[i].algo), vp(ws.data_ptr()), ctypes.c_size_t(32 << 20), vp(stream))
        if once() != 0:
            out.append("err"); continue
        for _ in range(3): once()
        ts = []
        for _ in range(15):
            s0, e0 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s0.record(); once(); e0.record(); torch.cuda.synchronize(); ts.append(s0.elapsed_time(e0))
        ts.sort(); out.append(f"{ts[len(ts)//2]:.3f}")
    print(f"{name}: heuristic {st}, {ret.value} algorithms, median ms each: {' '.join(out)}")
for (label, m, n, k) in [("14B ffn.0 720p", 13824, 75600, 5120), ("1.3B ffn.0 480p", 8960, 32760, 1536)]:
    candidates(f"{label} outer bf16", m, n, k, OUTER, OUTER, BF16)
    candidates(f"{label} scalar e4m3", m, n, k, SCALAR, SCALAR, E4M3)
