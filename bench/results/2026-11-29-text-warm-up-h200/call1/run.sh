#!/usr/bin/env bash
# Session 29, call 1: umT5's GEMMs with algorithms chosen per power-of-two row bucket ("new") against
# each row count's own ("base" = the same tree with row_bucket the identity): parity vs
# transformers, encode medians, first encodes at unseen lengths before and after the text stage's
# warm-up (one encode at each bucket); then the GPU checks that run small-row GEMMs.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0 TURBINE_KERNEL_CACHE=/tmp/turbine-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv >> $R/env.txt
U=/tmp/turbine-umt5
WORK=/tmp/turbine-e2e source tools/gpu/wheels.sh
timeout 300 python3 tools/gpu/umt5_parity.py --dir $U --lengths 512,77 > $R/umt5-weights.log 2>&1; echo "weights rc $? t=$SECONDS"
i=0
for side in new base new base; do
  i=$((i+1))
  RUST_LOG=turbine_tensor::cuda::gemm=debug timeout 150 .gpu/$side/turbine-gpucheck --parts umt5 --umt5-weights $U/umt5-xxl.safetensors \
    --umt5-reference $U/reference.safetensors --json $R/umt5-$side-$i.json > $R/umt5-$side-$i.log 2>&1
  echo "umt5 $side $i rc $? t=$SECONDS"
  sed 's/\x1b\[[0-9;]*m//g' $R/umt5-$side-$i.log | grep -E "tokens|encode at each" | cut -c1-190
done
timeout 240 .gpu/new/turbine-gpucheck --parts ops,fp8 --json $R/checks.json > $R/checks.log 2>&1; echo "ops,fp8 rc $? t=$SECONDS"
grep -E "passed|FAIL" $R/checks.log | tail -5
cd $R/.. && tar czf results.tgz r && rm -rf r
