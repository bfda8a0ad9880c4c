#!/usr/bin/env bash
# Session 14, call 4: warp stall reasons of sage_kv, sage_linear and sage_quant_k in a 1.3B 480p
# and a 14B 720p SageSLA 0.1 + FP8 forward (ncu, one launch each).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
NCU=/usr/local/cuda/bin/ncu
M=gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__warps_active.avg.pct_of_peak_sustained_active,smsp__issue_active.avg.pct_of_peak_sustained_active,sm__inst_executed.sum
for r in barrier long_scoreboard short_scoreboard mio_throttle lg_throttle math_pipe_throttle wait not_selected selected dispatch_stall no_instruction membar drain branch_resolving; do
  M=$M,smsp__average_warps_issue_stalled_${r}_per_issue_active.ratio
done
for m in "13:--model 1.3b" "14:--model 14b --size 720p"; do
  n=${m%%:*}; a=${m#*:}
  timeout 250 $NCU --metrics $M -k "regex:sage_kv$|sage_linear|sage_quant_k" --launch-skip 6 --launch-count 3 --csv --page raw \
    .gpu/new/turbine bench $a --attention sagesla --topk 0.1 --quant fp8 --warmup 0 --iters 1 > $R/stall$n.csv 2> $R/stall$n.err
  echo "ncu $n rc $? t=$SECONDS"
done
cd $R/.. && tar czf results.tgz r && rm -rf r
