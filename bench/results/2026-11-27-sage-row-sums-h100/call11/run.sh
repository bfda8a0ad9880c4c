#!/usr/bin/env bash
# Session 12, call 11: where dense Sage (1.3B 480p) and SageSLA (14B 720p) spend their time now
# (ncu, per-SASS warp stall samples), HEAD 7099768.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f"; done; chmod +x .gpu/*/turbine*
OUT=$R source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > $R/env.txt
NCU=/usr/local/cuda/bin/ncu
B=".gpu/new/turbine bench --quant fp8 --warmup 0 --iters 1"
prof() { # name kernel-regex skip bench-args...
  local n=$1 k=$2 s=$3; shift 3
  timeout 240 $NCU --set full --import-source no -k "regex:$k" --launch-skip $s --launch-count 1 -o $R/$n $B "$@" > $R/$n.log 2>&1
  echo "$n rc $?"
  $NCU -i $R/$n.ncu-rep --page source --csv --print-source sass > $R/$n-sass.csv 2>$R/$n-sass.err; echo "  sass rc $? $(wc -l < $R/$n-sass.csv)"
  $NCU -i $R/$n.ncu-rep --page details > $R/$n-details.txt 2>&1
  grep -E "Duration|Issue Slots Busy|No Eligible|Warp Cycles Per Issued" $R/$n-details.txt | head -6
  gzip -9 $R/$n-sass.csv
  rm -f $R/$n.ncu-rep
}
prof sage13 sage_attention_sm90 3 --model 1.3b --attention sage
prof sla14 sage_attention_sm90 3 --model 14b --size 720p --attention sagesla --topk 0.1
cd $R/.. && tar czf results.tgz r && rm -rf r
