#!/usr/bin/env bash
# Session 32, call 5: the final build's (1e5d100) ops checks and two VAE decodes (the fallback copy
# of the cached frames now profiled as a slice only).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.xz; do python3 -c "import lzma,sys; open(sys.argv[1][:-3],'wb').write(lzma.open(sys.argv[1]).read())" "$f"; rm "$f"; done
chmod +x .gpu/*/*
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0 TURBINE_KERNEL_CACHE=/tmp/turbine-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
timeout 100 .gpu/final/turbine-gpucheck --parts ops --json $R/ops.json > $R/ops.log 2>&1; echo "ops rc $? t=$SECONDS"
grep -E "FAIL|passed|failed|ALL CHECKS" $R/ops.log | tail -3
for i in 1 2; do
  timeout 120 .gpu/final/turbine-gpucheck --parts vae --vae-iters 4 --json $R/vae-$i.json > $R/vae-$i.log 2>&1 || echo "vae $i failed"
done
grep -E "FAIL|passed|failed|ALL CHECKS" $R/vae-2.log | tail -2
python3 - $R <<'PY'
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/vae-*.json")):
    d = json.load(open(f))["vae"]["full"]["decode"]
    prof = {o["op"]: (o["ms"], o["calls"]) for o in d["profile"]}
    g = lambda k: prof.get(k, (0, 0))
    print(f"{os.path.basename(f):12s} decode median {d['median_ms']:7.1f} min {d['min_ms']:7.1f}  slice {g('slice')[0]:6.2f}/{g('slice')[1]}  plain norm {g('causal_rms_norm_silu')[0]:6.2f}/{g('causal_rms_norm_silu')[1]}")
PY
cd $R/.. && tar czf results.tgz r && rm -rf r
