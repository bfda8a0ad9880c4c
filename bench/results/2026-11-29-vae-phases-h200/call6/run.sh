#!/usr/bin/env bash
# Session 26, call 6 (review mend): interleave_phases through layout.cu's shared copy_elem (16-byte
# units chosen by the host). Op checks (the interleave rows exact in f32 and bf16) and --parts vae
# (the tiny VAE and full decode on the kernel).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
export RUST_BACKTRACE=0 TURBINE_KERNEL_CACHE=/tmp/turbine-cache
nvidia-smi --query-gpu=name,driver_version --format=csv > $R/env.txt
timeout 100 .gpu/new/turbine-gpucheck --parts ops --json $R/ops.json > $R/ops.log 2>&1; echo "ops rc $? t=$SECONDS"
grep -E "interleave|FAIL|passed|failed|ALL CHECKS" $R/ops.log | tail -6
timeout 120 .gpu/new/turbine-gpucheck --parts vae --vae-iters 4 --json $R/vae.json > $R/vae.log 2>&1; echo "vae rc $? t=$SECONDS"
grep -hE "tiny VAE|^decode|^encode|interleave|FAIL|ALL CHECKS" $R/vae.log
cd $R/.. && tar czf results.tgz r && rm -rf r
