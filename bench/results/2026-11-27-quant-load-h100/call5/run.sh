#!/usr/bin/env bash
# Session 9, call 5: openh264 complexity Medium (as committed) vs Low, h264_bench on the 16-core host.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
nproc | tee $R/env.txt; lscpu | grep -E "Model name|Thread|Core|Socket" | tee -a $R/env.txt
chmod +x .gpu/h264_bench-*
for noise in 1.0 0.25; do
  for i in 1 2; do
    for v in med low; do
      timeout 150 .gpu/h264_bench-$v $noise 38 >"$R/h264-$v-$noise-$i.log" 2>&1
      echo "== $v noise $noise run $i rc $?"; tail -11 "$R/h264-$v-$noise-$i.log"
    done
  done
done
cd $R/.. && tar czf results.tgz r && rm -rf r
