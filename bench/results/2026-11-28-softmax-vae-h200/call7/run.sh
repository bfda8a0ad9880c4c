#!/usr/bin/env bash
# Session 20, call 7: upsample_nearest with 32-bit digits
# (new7) against base (new6: e606cc4's kernels): --parts vae ABBA
# (decode/encode timing and profile, tiny-VAE gates), then the two builds' full-size decodes of
# the same seeded weights and latent compared (--vae-dump).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
i=0
for side in new6 new7 new7 new6; do
  i=$((i+1))
  dump=""; [ $i -le 2 ] && dump="--vae-dump /tmp/dec-$side.safetensors"
  timeout 140 .gpu/$side/turbine-gpucheck --parts vae $dump --json $R/vae-$i-$side.json > $R/vae-$i-$side.log 2>&1; echo "vae $i $side rc $? t=$SECONDS"
  grep -E "^decode|^encode|first frame|conv3d  |causal_rms|slice|permute|FAIL|ALL CHECKS|tiny VAE" $R/vae-$i-$side.log
done
timeout 150 .gpu/new7/turbine-gpucheck --parts ops --json $R/ops.json > $R/ops.log 2>&1; echo "ops rc $? t=$SECONDS"
grep -iE "permute|upsample" $R/ops.log | grep -v INFO; grep -E "passed|failed|FAIL|ALL CHECKS" $R/ops.log | tail -3
python3 .gpu/cmp.py /tmp/dec-new6.safetensors /tmp/dec-new7.safetensors 2>&1 | tee $R/cmp.txt
cd $R/.. && tar czf results.tgz r && rm -rf r
