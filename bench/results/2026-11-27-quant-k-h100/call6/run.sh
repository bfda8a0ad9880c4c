#!/usr/bin/env bash
# Session 14, call 6: sage_linear computing φ(q) in the MMA's A-fragment layout, and `turbine
# generate` warming the DiT up (one forward at the request's size) next to the VAE while umT5
# loads (new), against b1137a0 (base): the Sage checks on synthetic and on a forward's own
# activations, 1.3B SageSLA + FP8 forwards alternately, then full-size `turbine generate`
# (1.3B 480p 81 frames, 4-step rCM, SageSLA 0.1 + FP8) alternately after a cold run.
set -uo pipefail
cd "$(dirname "$0")/.."
R=$OUT/r; mkdir -p $R
for f in .gpu/*/*.gz; do gunzip -f "$f" 2>/dev/null; done; chmod +x .gpu/*/turbine*
source tools/gpu/cudnn.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/env.txt
timeout 240 .gpu/new/turbine-gpucheck --parts sage,sage-forward --json $R/sage-new.json > $R/sage-new.log 2>&1; echo "sage new rc $? t=$SECONDS"
grep -E "FAIL|passed|failed|ALL CHECKS" $R/sage-new.log | tail -3
grep -E "sagesla|linear| vs " $R/sage-new.log | grep -v INFO | head -30
for i in 1 2; do for side in base new; do
  timeout 100 .gpu/$side/turbine bench --model 1.3b --attention sagesla --topk 0.1 --quant fp8 --warmup 2 --iters 10 --json $R/sla13-$side-$i.json > $R/sla13-$side-$i.log 2>&1 || echo "sla13 $side failed"
done; done
python3 - $R <<'PY'
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/sla13*.json")):
    j = json.load(open(f)); ops = {o["op"]: o for o in j["ops"]}
    print(f"{os.path.basename(f):18s} forward median {j['forward']['median_ms']:8.2f} ms  sage linear out {ops.get('sage linear out', {}).get('total_ms', 0):6.2f} ms")
PY
OUT=$R source tools/gpu/model_folder.sh
echo "model folder status $model_status t=$SECONDS"
prompt="A red panda walks along a mossy branch in a misty bamboo forest at dawn, soft golden light filtering through the leaves, slow camera pan, shallow depth of field, cinematic, highly detailed"
gen() { # side name
  timeout 120 .gpu/$1/turbine generate --model-dir "$MODEL" --dit-preset 1.3b \
    --text-encoder "$UMT5_DIR/umt5-xxl.safetensors" --device cuda \
    --width 832 --height 480 --frames 81 --steps 4 --prompt "$prompt" \
    --attention sagesla --sla-topk 0.1 --quant fp8 \
    --out $R/$2.mp4 --timings-json $R/timings-$2.json > $R/generate-$2.log 2>&1
  echo "$2 rc $? $(stat -c %s $R/$2.mp4 2>/dev/null) bytes $(md5sum < $R/$2.mp4 | cut -c1-12)"
}
gen new cold
for i in 1 2 3; do gen base base-$i; gen new new-$i; done
python3 - $R <<'PY'
import json, sys, glob, os
for f in sorted(glob.glob(sys.argv[1] + "/timings-*.json")):
    j = json.load(open(f))
    print(os.path.basename(f), json.dumps({k: v for k, v in j.items() if not isinstance(v, (dict, list))})[:400])
PY
rm -f $R/*.mp4
cd $R/.. && tar czf results.tgz r && rm -rf r
