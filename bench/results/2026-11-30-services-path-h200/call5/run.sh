#!/usr/bin/env bash
# Session 30, call 5: the initial noise's draw time on the GPU host's CPU (the 480p latent,
# 2,096,640 normals; SeededNoise with its keystream thread, and DrawnAhead from creation to the
# tensor), with the process's page faults.
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
chmod +x .gpu/noise_time
lscpu | grep -E "Model name|^CPU\(s\)|Flags" | cut -c1-200 > $R/env.txt
cat /sys/kernel/mm/transparent_hugepage/enabled >> $R/env.txt 2>&1
for i in 1 2 3; do /usr/bin/time -v .gpu/noise_time 2>&1 | grep -E "draw|ahead|fill|Minor|Elapsed"; done | tee $R/noise.txt
cd $R/.. && tar czf results.tgz r && rm -rf r
