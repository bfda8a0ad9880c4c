#!/usr/bin/env bash
# Session 20, call 8: copy2d and pad_zero with 32-bit digits too (one GRID_STRIDE_NARROW for the four layout kernels), the norm launch guard at 2^31 rows
# (new8) against base (new7: 9420f29's kernels): --parts vae ABBA
# (decode/encode timing and profile, tiny-VAE gates), then the two builds' full-size decodes of
# the same seeded weights and latent compared (--vae-dump).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
i=0
for side in new7 new8 new8 new7; do
  i=$((i+1))
  dump=""; [ $i -le 2 ] && dump="--vae-dump /tmp/dec-$side.safetensors"
  timeout 140 .gpu/$side/turbine-gpucheck --parts vae $dump --json $R/vae-$i-$side.json > $R/vae-$i-$side.log 2>&1; echo "vae $i $side rc $? t=$SECONDS"
  grep -E "^decode|^encode|first frame|conv3d  |causal_rms|slice|permute|FAIL|ALL CHECKS|tiny VAE" $R/vae-$i-$side.log
done
timeout 150 .gpu/new8/turbine-gpucheck --parts ops --json $R/ops.json > $R/ops.log 2>&1; echo "ops rc $? t=$SECONDS"
grep -iE "permute|upsample|slice|concat|narrow" $R/ops.log | grep -v INFO; grep -E "passed|failed|FAIL|ALL CHECKS" $R/ops.log | tail -3
python3 .gpu/cmp.py /tmp/dec-new7.safetensors /tmp/dec-new8.safetensors 2>&1 | tee $R/cmp.txt
cd $R/.. && tar czf results.tgz r && rm -rf r
