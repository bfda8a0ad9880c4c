#!/usr/bin/env bash
# Session 20, call 4: the VAE decode's two low-resolution stages on groups of 4 latent frames
# (new4) against base (exp1, a2d7677's decode one latent frame at a time): --parts vae ABBA
# (decode/encode timing and profile, tiny-VAE gates), then the two builds' full-size decodes of
# the same seeded weights and latent compared (--vae-dump).
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
i=0
for side in exp1 new4 new4 exp1; do
  i=$((i+1))
  dump=""; [ $i -le 2 ] && dump="--vae-dump /tmp/dec-$side.safetensors"
  timeout 140 .gpu/$side/turbine-gpucheck --parts vae $dump --json $R/vae-$i-$side.json > $R/vae-$i-$side.log 2>&1; echo "vae $i $side rc $? t=$SECONDS"
  grep -E "^decode|^encode|first frame|conv3d  |causal_rms|slice|permute|FAIL|ALL CHECKS|tiny VAE" $R/vae-$i-$side.log
done
python3 .gpu/cmp.py /tmp/dec-exp1.safetensors /tmp/dec-new4.safetensors 2>&1 | tee $R/cmp.txt
cd $R/.. && tar czf results.tgz r && rm -rf r
