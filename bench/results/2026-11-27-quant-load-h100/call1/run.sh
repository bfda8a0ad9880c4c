#!/usr/bin/env bash
# Session 9, call 1: int8 checks (int8_tiles), -quant load old/new, e2e old/new, h264 tail old/new.
set -uo pipefail
cd "$(dirname "$0")/.."
export OUT
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/env.txt"
echo "cores: $(nproc)" | tee -a "$OUT/env.txt"
for f in .gpu/old/*.gz; do gunzip -f "$f"; done
chmod +x .gpu/old/* .gpu/turbine .gpu/turbine-gpucheck .gpu/h264_bench
source tools/gpu/cudnn.sh

echo "== 1. int8 checks, new build"
timeout 300 .gpu/turbine-gpucheck --parts int8 >"$OUT/int8.log" 2>&1; echo "int8 rc $?"
grep -E "^int8:|FAIL" "$OUT/int8.log" | head -20

echo "== 2. -quant checkpoint load, 1.3B"
W=/tmp/w13; mkdir -p $W
timeout 120 .gpu/turbine bench --model 1.3b --attention sagesla --warmup 0 --iters 1 \
    --export-weights $W/dit.safetensors >"$OUT/export13.log" 2>&1; echo "export rc $?"
timeout 180 python3 tools/gpu/quant_export.py $W/dit.safetensors $W/dit-quant.safetensors \
    >"$OUT/quant-export.log" 2>&1; echo "quant export rc $?"; tail -2 "$OUT/quant-export.log"
rm -f $W/dit.safetensors
for i in 1 2 3; do
  for b in old new; do
    bin=.gpu/turbine; [ $b = old ] && bin=.gpu/old/turbine
    timeout 120 $bin bench --model 1.3b --weights $W/dit-quant.safetensors --quant int8 \
        --attention sagesla --sla-topk 0.1 --iters 3 --json "$OUT/qload-$b-$i.json" \
        >"$OUT/qload-$b-$i.log" 2>&1; echo "qload $b $i rc $?"
    python3 - "$OUT/qload-$b-$i.json" <<'PY'
import json,sys
d=json.load(open(sys.argv[1]))
print("   load_s %.3f weights_s %s forward %.1f ms" % (d["load_s"], d.get("weights_s"), d["forward"]["median_ms"]))
PY
  done
done
rm -rf $W

echo "== 3. e2e 1.3B SageSLA 0.1 + FP8, old/new alternating"
source tools/gpu/model_folder.sh
run() {
  local name=$1 bin=$2
  timeout 300 $bin generate --model-dir "$MODEL" --dit-preset 1.3b \
      --text-encoder "$UMT5_DIR/umt5-xxl.safetensors" --device cuda \
      --width 832 --height 480 --frames 81 --steps 4 --prompt "$prompt" \
      --attention sagesla --sla-topk 0.1 --quant fp8 \
      --out "$OUT/$name.mp4" --timings-json "$OUT/timings-$name.json" >"$OUT/generate-$name.log" 2>&1
  echo "$name rc $? $(md5sum < "$OUT/$name.mp4" | cut -c1-8) $(stat -c %s "$OUT/$name.mp4")"
  python3 - "$OUT/timings-$name.json" <<'PY'
import json,sys
d=json.load(open(sys.argv[1])); t=d["report"]["timings"]
after=d["wall_s"]-d["load_s"]
print("   load %.3f text %.3f steps %s denoise %.3f vae %.3f sink %.3f finish %.3f after_load %.3f wall %.3f" % (
  d["load_s"], t["text_encode_s"], ",".join("%.3f"%s for s in t["steps_s"]), t["denoise_s"], t["vae_decode_s"], t["sink_s"], d["finish_output_s"], after, d["wall_s"]))
PY
}
run cold .gpu/turbine
for i in 1 2 3; do run old-$i .gpu/old/turbine; run new-$i .gpu/turbine; done
rm -f "$OUT"/*.mp4

echo "== 4. h264 tail, old/new"
for i in 1 2; do
  for b in old new; do
    bin=.gpu/h264_bench; [ $b = old ] && bin=.gpu/old/h264_bench
    timeout 120 $bin 1.0 38 >"$OUT/h264-$b-$i.log" 2>&1; echo "h264 $b $i rc $?"; tail -3 "$OUT/h264-$b-$i.log"
  done
done
