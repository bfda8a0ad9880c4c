#!/usr/bin/env bash
# Session 17, call 5: SM clock and power sampled (nvidia-smi, every 20 ms) while the final build
# (7a23361) runs the SageSLA kernels alone (`--parts sage`) and inside 14B 720p and 1.3B 480p
# SageSLA 0.1 + FP8 forwards and a 1.3B dense bf16 forward: is a kernel slower in a forward because
# the card runs at its power cap there?
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
sample() { nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv,noheader -lms 20 > $R/$1.smi 2>&1 & echo $!; }
run() { name=$1; shift; p=$(sample $name); date +%s.%N > $R/$name.t0; "$@" > $R/$name.log 2>&1; echo "$name rc $? t=$SECONDS"; date +%s.%N > $R/$name.t1; kill $p; }
run sage timeout 150 .gpu/new/turbine-gpucheck --parts sage --json $R/sage.json
grep -E "sagesla topk 0.1 \[|bf16 flash \[" $R/sage.log | grep -v INFO
run sla14 timeout 120 .gpu/new/turbine bench --model 14b --size 720p --attention sagesla --topk 0.1 --quant fp8 --warmup 1 --iters 3 --json $R/sla14.json
run sla13 timeout 60 .gpu/new/turbine bench --model 1.3b --attention sagesla --topk 0.1 --quant fp8 --warmup 2 --iters 10 --json $R/sla13.json
run dense13 timeout 60 .gpu/new/turbine bench --model 1.3b --warmup 2 --iters 5 --json $R/dense13.json
python3 - $R <<'PY'
import sys, glob, os, statistics
for f in sorted(glob.glob(sys.argv[1] + "/*.smi")):
    clk, pw = [], []
    for line in open(f):
        parts = [p.strip() for p in line.split(",")]
        try:
            c = float(parts[1].split()[0]); p = float(parts[2].split()[0])
        except Exception:
            continue
        if p > 200:  # busy samples only
            clk.append(c); pw.append(p)
    if clk:
        q = statistics.quantiles(clk, n=10)
        print(f"{os.path.basename(f):12s} busy samples {len(clk):5d}  SM MHz median {statistics.median(clk):6.0f} p10 {q[0]:6.0f} p90 {q[-1]:6.0f}  W median {statistics.median(pw):5.0f} max {max(pw):5.0f}")
PY
cd $R/.. && tar czf results.tgz r && rm -rf r
