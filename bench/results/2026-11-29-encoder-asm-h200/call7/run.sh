#!/usr/bin/env bash
# Session 28, call 7 (call 6 with the pool's new blocks counted): what umT5's first encode at an unseen prompt length pays (gpucheck --parts
# umt5, new lengths after 512 and 77), with cuBLASLt's heuristic queries and their times logged.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/new/turbine*
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0 TURBINE_KERNEL_CACHE=/tmp/turbine-cache
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv >> $R/env.txt
UMT5_DIR=/tmp/turbine-umt5
if [ ! -f "$UMT5_DIR/umt5-xxl.safetensors" ]; then
  WORK=/tmp/turbine-e2e source tools/gpu/wheels.sh
  timeout 300 python3 tools/gpu/umt5_parity.py --dir "$UMT5_DIR" --lengths 512,77 > $R/umt5-weights.log 2>&1; echo "weights rc $? t=$SECONDS"
fi
# Run 2 loads every kernel module at start (CUDA_MODULE_LOADING=EAGER): what remains of the
# first-at-a-length cost is not the lazy loading of the kernels a new length picks.
for i in 1 2; do
  [ $i = 2 ] && export CUDA_MODULE_LOADING=EAGER
  RUST_LOG=turbine_tensor::cuda::gemm=debug timeout 200 .gpu/new/turbine-gpucheck --parts umt5 \
    --umt5-weights $UMT5_DIR/umt5-xxl.safetensors --json $R/umt5-$i.json > $R/umt5-$i.log 2>&1
  echo "umt5 $i rc $? t=$SECONDS"
done
grep -hE "XXL|tokens" $R/umt5-*.log | grep -v "^tiny\|^d_kv"
grep -h "cuBLASLt heuristic" $R/umt5-1.log | sed 's/\x1b\[[0-9;]*m//g' | sed 's/.*shape=//' | tail -20
cd $R/.. && tar czf results.tgz r && rm -rf r
