#!/usr/bin/env bash
# Session 29, call 3: call 2 with the GEMMs recorded while umT5 runs at 512 rows (not every GEMM
# met at 512 rows) for the text stage's warm-up; then the VAE decode's per-op profile with the
# host's time in each op (where the first chunk's push is launch-bound).
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
for i in 1 2; do
  RUST_LOG=turbine_tensor::cuda=debug,turbine_tensor::cuda::gemm=info,turbine_tensor::cuda::alloc=info timeout 150 .gpu/new/turbine-gpucheck --parts umt5 --umt5-weights $U/umt5-xxl.safetensors \
    --umt5-reference $U/reference.safetensors --json $R/umt5-new-$i.json > $R/umt5-new-$i.log 2>&1
  echo "umt5 new $i rc $? t=$SECONDS"
  sed 's/\x1b\[[0-9;]*m//g' $R/umt5-new-$i.log | grep -E "tokens|warm-up" | grep -v "cuBLASLt heuristic" | cut -c1-200
done
timeout 150 .gpu/new/turbine-gpucheck --parts vae --vae-iters 6 --json $R/vae.json > $R/vae.log 2>&1; echo "vae rc $? t=$SECONDS"
grep -E "^decode|^encode|first frame|calls" $R/vae.log
cd $R/.. && tar czf results.tgz r && rm -rf r
