#!/usr/bin/env bash
# Session 9, call 2: -quant checkpoint load (1.3B and 14B), old host tiling vs new int8_tiles.
set -uo pipefail
cd "$(dirname "$0")/.."
export OUT
R=$OUT/r; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$R/env.txt"
for f in .gpu/old/*.gz; do [ -f "$f" ] && gunzip -f "$f"; done
chmod +x .gpu/old/* .gpu/turbine .gpu/turbine-gpucheck
summ() {
python3 - "$1" <<'PY'
import json,sys
d=json.load(open(sys.argv[1]))
print("   load_s %.3f forward %.1f ms live %.2f GiB" % (d["load_s"], d["forward"]["median_ms"], d["device_after_load"]["live_bytes"]/2**30))
PY
}
qload() {  # model size weights tag iters
  local model=$1 size=$2 w=$3 tag=$4 iters=$5
  for i in 1 2; do
    for b in old new; do
      bin=.gpu/turbine; [ $b = old ] && bin=.gpu/old/turbine
      timeout 200 $bin bench --model $model --size $size --weights $w --quant int8 \
          --attention sagesla --topk 0.1 --warmup 1 --iters $iters --json "$R/qload-$tag-$b-$i.json" \
          >"$R/qload-$tag-$b-$i.log" 2>&1; echo "qload $tag $b $i rc $?"
      summ "$R/qload-$tag-$b-$i.json" || tail -3 "$R/qload-$tag-$b-$i.log"
    done
  done
}
W=/tmp/wq; mkdir -p $W
echo "== 1. 1.3B -quant"
timeout 120 .gpu/turbine bench --model 1.3b --attention sagesla --warmup 0 --iters 1 \
    --export-weights $W/dit.safetensors >"$R/export13.log" 2>&1; echo "export rc $?"
timeout 180 python3 tools/gpu/quant_export.py $W/dit.safetensors $W/dit13-quant.safetensors \
    >"$R/quant-export13.log" 2>&1; echo "quant export rc $?"; tail -1 "$R/quant-export13.log"
rm -f $W/dit.safetensors
qload 1.3b 480p $W/dit13-quant.safetensors 13 3
rm -f $W/dit13-quant.safetensors
echo "== 2. 14B -quant"
( time timeout 300 .gpu/turbine bench --model 14b --attention sagesla --warmup 0 --iters 1 --size 480p --frames 5 \
    --export-weights $W/dit.safetensors ) >"$R/export14.log" 2>&1; echo "export rc $?"; tail -3 "$R/export14.log"
( time timeout 400 python3 tools/gpu/quant_export.py $W/dit.safetensors $W/dit14-quant.safetensors ) \
    >"$R/quant-export14.log" 2>&1; echo "quant export rc $?"; tail -4 "$R/quant-export14.log"
rm -f $W/dit.safetensors
ls -la $W
qload 14b 720p $W/dit14-quant.safetensors 14 1
rm -rf $W
cd $OUT && tar czf results.tgz r && rm -rf r
