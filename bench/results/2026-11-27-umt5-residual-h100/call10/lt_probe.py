# Times cuBLASLt's heuristic query (and a first matmul) per operand-type combination, each order
# in a fresh process: is a first bf16 -> f32 GEMM's one-time cost cuBLASLt's?
import ctypes, glob, os, sys, time, subprocess
import torch

def lib():
    import nvidia
    for d in nvidia.__path__:
        for p in glob.glob(os.path.join(d, "**", "libcublasLt.so*"), recursive=True):
            return ctypes.CDLL(p)
    return ctypes.CDLL("libcublasLt.so.13")

BF16, F32 = 14, 0
GELU, NONE = 32, 1

def run(order):
    lt = lib()
    h = ctypes.c_void_p(); assert lt.cublasLtCreate(ctypes.byref(h)) == 0
    M, N, K = 4096, 128, 4096
    out = []
    for (dt_out, epi, beta) in order:
        a = torch.randn(K, M, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(K, N, device="cuda", dtype=torch.bfloat16)
        d = torch.zeros(M, N, device="cuda", dtype=torch.float32 if dt_out == F32 else torch.bfloat16)
        ws = torch.empty(32 << 20, device="cuda", dtype=torch.uint8)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        desc = ctypes.c_void_p(); assert lt.cublasLtMatmulDescCreate(ctypes.byref(desc), 68, 0) == 0
        ta = ctypes.c_int32(1); lt.cublasLtMatmulDescSetAttribute(desc, 3, ctypes.byref(ta), 4)
        e = ctypes.c_uint32(epi); lt.cublasLtMatmulDescSetAttribute(desc, 7, ctypes.byref(e), 4)
        la, lb, ld = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
        lt.cublasLtMatrixLayoutCreate(ctypes.byref(la), BF16, ctypes.c_uint64(K), ctypes.c_uint64(M), ctypes.c_int64(K))
        lt.cublasLtMatrixLayoutCreate(ctypes.byref(lb), BF16, ctypes.c_uint64(K), ctypes.c_uint64(N), ctypes.c_int64(K))
        lt.cublasLtMatrixLayoutCreate(ctypes.byref(ld), dt_out, ctypes.c_uint64(M), ctypes.c_uint64(N), ctypes.c_int64(M))
        pref = ctypes.c_void_p(); lt.cublasLtMatmulPreferenceCreate(ctypes.byref(pref))
        wsz = ctypes.c_uint64(32 << 20); lt.cublasLtMatmulPreferenceSetAttribute(pref, 1, ctypes.byref(wsz), 8)
        res = (ctypes.c_byte * 96)(); cnt = ctypes.c_int(0)
        st = lt.cublasLtMatmulAlgoGetHeuristic(h, desc, la, lb, ld, ld, pref, 1, res, ctypes.byref(cnt))
        t1 = time.perf_counter()
        alpha, bet = ctypes.c_float(1.0), ctypes.c_float(beta)
        st2 = lt.cublasLtMatmul(h, desc, ctypes.byref(alpha), ctypes.c_void_p(a.data_ptr()), la, ctypes.c_void_p(b.data_ptr()), lb,
                                ctypes.byref(bet), ctypes.c_void_p(d.data_ptr()), ld, ctypes.c_void_p(d.data_ptr()), ld,
                                res, ctypes.c_void_p(ws.data_ptr()), ctypes.c_size_t(32 << 20), ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)) if st == 0 and cnt.value else -1
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        name = f"{'f32' if dt_out == F32 else 'bf16'} out{' gelu' if epi == GELU else ''}{' beta1' if beta else ''}"
        out.append(f"{name:22s} heuristic {1e3*(t1-t0):7.2f} ms (status {st}, {cnt.value} algos)  first matmul {1e3*(t2-t1):7.2f} ms (status {st2})")
    print("\n".join(out), flush=True)

if len(sys.argv) > 1:
    order = [tuple(int(x) for x in s.split(",")) for s in sys.argv[1:]]
    torch.zeros(1, device="cuda"); torch.cuda.synchronize()
    run(order)
else:
    for order in (["14,1,0", "0,1,0", "0,32,0", "0,1,1", "14,1,0", "0,1,1"],
                  ["0,32,0", "0,1,1", "14,1,0", "14,32,0", "0,32,0"]):
        print("== order", order, flush=True)
        subprocess.run([sys.executable, __file__] + order)
