#!/usr/bin/env bash
# Session 10, call 1: where the sparse Sage kernel and the cross-attention lose time (ncu, per-SASS stalls).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
chmod +x .gpu/turbine .gpu/turbine-gpucheck
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > $R/env.txt
NCU=$(command -v ncu || ls /usr/local/cuda*/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
echo "ncu: $NCU" | tee -a $R/env.txt; $NCU --version | tail -1 >> $R/env.txt
B=".gpu/turbine bench --quant fp8 --warmup 0 --iters 1"
prof() { # name kernel-regex skip bench-args...
  local n=$1 k=$2 s=$3; shift 3
  timeout 240 $NCU --set full --import-source no -k "regex:$k" --launch-skip $s --launch-count 1 -o $R/$n $B "$@" > $R/$n.log 2>&1
  echo "$n rc $?"
  $NCU -i $R/$n.ncu-rep --page source --csv --print-source sass > $R/$n-sass.csv 2>$R/$n-sass.err; echo "  sass rc $? $(wc -l < $R/$n-sass.csv)"
  $NCU -i $R/$n.ncu-rep --page details > $R/$n-details.txt 2>&1
  grep -E "Duration|Issue Slots Busy|Stall Long|Stall Wait" $R/$n-details.txt | head -6
  rm -f $R/$n.ncu-rep
}
prof sla13 sage_attention_sm90 3 --model 1.3b --attention sagesla --topk 0.1
prof sage13 sage_attention_sm90 3 --model 1.3b --attention sage
prof sla14 sage_attention_sm90 3 --model 14b --size 720p --attention sagesla --topk 0.1
prof cross14 flash_attention 3 --model 14b --size 720p --attention sagesla --topk 0.1
timeout 300 .gpu/turbine-gpucheck --parts sage > $R/sage-check.log 2>&1; echo "sage check rc $?"
grep -iE "ms|FAIL|passed" $R/sage-check.log | tail -30
cd $R/.. && tar czf results.tgz r && rm -rf r
