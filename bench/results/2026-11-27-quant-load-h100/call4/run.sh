#!/usr/bin/env bash
# Session 9, call 4: DiT warm-up during the umT5 load: A none, B smallest latent, C the request's shape.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
export OUT=$R
gunzip -f .gpu/turbine-B.gz .gpu/turbine-C.gz; chmod +x .gpu/turbine .gpu/turbine-B .gpu/turbine-C
source tools/gpu/cudnn.sh
source tools/gpu/model_folder.sh
summ() {
  python3 - "$1" <<'PY'
import json,sys
d=json.load(open(sys.argv[1])); t=d["report"]["timings"]
after=d["wall_s"]-d["load_s"]
loads=" ".join("%s %.2fs" % (k, v["seconds"]) for k, v in d["load"].items())
print("   load %.3f (%s) text %.3f steps %s denoise %.3f vae %.3f finish %.3f after_load %.3f wall %.3f" % (
  d["load_s"], loads, t["text_encode_s"], ",".join("%.3f"%s for s in t["steps_s"]), t["denoise_s"], t["vae_decode_s"], d["finish_output_s"], after, d["wall_s"]))
PY
}
for i in 1 2 3; do
  for v in A B C; do
    bin=.gpu/turbine-$v; [ $v = A ] && bin=.gpu/turbine
    timeout 300 $bin generate --model-dir "$MODEL" --dit-preset 1.3b \
        --text-encoder "$UMT5_DIR/umt5-xxl.safetensors" --device cuda \
        --width 832 --height 480 --frames 81 --steps 4 --prompt "$prompt" \
        --attention sagesla --sla-topk 0.1 --quant fp8 \
        --out "$R/$v-$i.mp4" --timings-json "$R/timings-$v-$i.json" >"$R/generate-$v-$i.log" 2>&1
    echo "$v $i rc $? $(md5sum < "$R/$v-$i.mp4" | cut -c1-8)"; summ "$R/timings-$v-$i.json"
  done
done
rm -f "$R"/*.mp4
cd $R/.. && tar czf results.tgz r && rm -rf r
