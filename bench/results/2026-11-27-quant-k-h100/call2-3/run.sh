#!/usr/bin/env bash
# Session 14, call 3 (call 2 caught only the load's weight quantization): the SageSLA side kernels and the row kernels of 1.3B 480p and 14B 720p
# SageSLA 0.1 + FP8 forwards under Nsight Compute (one launch each, a few layers in): duration,
# memory throughput, occupancy, warp stalls.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > $R/env.txt
NCU=/usr/local/cuda/bin/ncu
K='sage_kv|sage_stats_reduce|sage_quant_k|sage_quant_q|sage_select|sage_linear|rms_norm_rope_rows|layer_norm_rows|rms_norm'
for m in "13:--model 1.3b" "14:--model 14b --size 720p"; do
  n=${m%%:*}; a=${m#*:}
  timeout 280 $NCU --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis \
    -k "regex:$K" --launch-skip 40 --launch-count 24 --csv --page details \
    .gpu/new/turbine bench $a --attention sagesla --topk 0.1 --quant fp8 --warmup 0 --iters 1 > $R/ncu$n.csv 2> $R/ncu$n.err
  echo "ncu $n rc $? t=$SECONDS"
  timeout 200 $NCU --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
    -k "regex:quantize_fp8_rows" --launch-skip 700 --launch-count 6 --csv --page details \
    .gpu/new/turbine bench $a --attention sagesla --topk 0.1 --quant fp8 --warmup 6 --iters 1 > $R/ncuq$n.csv 2> $R/ncuq$n.err
  echo "ncu quantize $n rc $? t=$SECONDS"
done
cd $R/.. && tar czf results.tgz r && rm -rf r
