#!/usr/bin/env bash
# Session 27, call 8: new = the folded norm copying the next chunk's cached frames out of x in its
# pass (no slice). Against e81ce0c (base): ops checks (new),
# --parts vae alternately, parity vs diffusers (new).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0 TURBINE_KERNEL_CACHE=/tmp/turbine-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv >> $R/env.txt
timeout 150 .gpu/new/turbine-gpucheck --parts ops --json $R/ops.json > $R/ops.log 2>&1; echo "ops rc $? t=$SECONDS"
grep -E "folded" $R/ops.log | cut -c1-150; grep -E "FAIL|passed|failed|ALL CHECKS" $R/ops.log | tail -3
for side in base new new base base new; do
  timeout 120 .gpu/$side/turbine-gpucheck --parts vae --vae-iters 4 --json $R/vae-$side-$SECONDS.json > $R/vae-$side-$SECONDS.log 2>&1 || echo "vae $side failed"
done
echo "vae done t=$SECONDS"
python3 - $R <<'PY'
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/vae-*.json"), key=lambda f: int(f.split('-')[-1][:-5])):
    full = json.load(open(f))["vae"]["full"]; d = full["decode"]; e = full.get("encode", {})
    prof = {o["op"]: o["ms"] for o in d["profile"]}
    eprof = {o["op"]: o["ms"] for o in e.get("profile", [])}
    print(f"{os.path.basename(f):22s} decode median {d['median_ms']:7.1f} min {d['min_ms']:7.1f}  conv {prof.get('conv3d',0)+prof.get('conv3d_add',0):6.1f} folded {prof.get('causal_rms_norm_silu_folded',0):5.1f} norm {prof.get('causal_rms_norm_silu',0):5.1f} slice {prof.get('slice',0):5.1f}  encode {e.get('median_ms',0):7.1f} enorms {sum(v for k,v in eprof.items() if 'norm' in k):5.1f}")
PY
BIN=.gpu/new PARTS=vae OUT=$R/parity timeout 240 tools/gpu/vae_bench.sh > $R/vae_bench.log 2>&1; echo "vae_bench rc $? t=$SECONDS"
grep -hE "^decode|^encode" $R/parity/gpucheck.log; tail -4 $R/parity/parity.log
cd $R/.. && tar czf results.tgz r && rm -rf r
