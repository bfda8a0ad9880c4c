#!/usr/bin/env bash
# Where a job's time goes through the services: `turbine serve` (1.3B random-weight SLA-tuned
# folder from model_folder.sh, SageSLA 0.1 + FP8, warm-up at 832x480x81) exporting its traces to
# an OTLP receiver that prints each span as a JSON line (tests/examples/otlp_dump.rs, built with
# `cargo build --release -p turbine-cluster-tests --example otlp_dump` and brought in .gpu/ with
# the `turbine` binary), then REQUESTS (default 3) 480p x 81-frame submissions. Prints each job's
# spans (start and end in ms from the job's first span, duration, nesting); everything under
# $OUT (default ./trace-out): spans.jsonl, serve.log, submit-*.json.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-trace-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 RUST_BACKTRACE=0
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/env.txt"
source tools/gpu/cudnn.sh
source tools/gpu/model_folder.sh
status=$model_status

.gpu/otlp_dump >"$OUT/spans.jsonl" 2>"$OUT/otlp.txt" &
dump=$!
for _ in $(seq 1 50); do [ -s "$OUT/otlp.txt" ] && break; sleep 0.1; done
port=50050
.gpu/turbine serve --model-dir "$MODEL" --listen "127.0.0.1:$port" --device cuda --quant fp8 \
    --artifact-dir /tmp/turbine-artifacts --warm-up-shape 832x480x81 \
    --otlp-endpoint "$(head -1 "$OUT/otlp.txt")" --otlp-schedule-delay-ms 100 >"$OUT/serve.log" 2>&1 &
server=$!
for _ in $(seq 1 240); do
    [ "$(grep -c 'serving' "$OUT/serve.log")" -ge 3 ] && break
    kill -0 $server 2>/dev/null || break
    sleep 0.5
done
for i in $(seq 1 "${REQUESTS:-3}"); do
    timeout 300 .gpu/turbine submit --server "http://127.0.0.1:$port" --prompt "$prompt" \
        --steps 4 --attention sagesla --sla-topk 0.1 --seed 7 --out "$OUT/$i.mp4" \
        --timings-json "$OUT/submit-$i.json" >"$OUT/submit-$i.log" 2>&1 || status=1
    rm -f "$OUT/$i.mp4"
done
kill -TERM $server
wait $server || status=1
sleep 1
kill $dump
python3 - "$OUT/spans.jsonl" <<'PY'
import json, sys
spans = [json.loads(line) for line in open(sys.argv[1])]
by_id = {s["span"]: s for s in spans}
def depth(s):
    d = 0
    while s["parent"] in by_id:
        s, d = by_id[s["parent"]], d + 1
    return d
traces = {}
for s in spans:
    traces.setdefault(s["trace"], []).append(s)
for trace in sorted(traces.values(), key=lambda t: min(s["start_ns"] for s in t)):
    if not any(s["name"] == "job" for s in trace):
        continue
    trace.sort(key=lambda s: s["start_ns"])
    t0 = trace[0]["start_ns"]
    print(f"== trace {trace[0]['trace'][:8]}: start ms, end ms, duration ms, span")
    for s in trace:
        print(f"{(s['start_ns'] - t0) / 1e6:9.1f} {(s['end_ns'] - t0) / 1e6:9.1f} "
              f"{(s['end_ns'] - s['start_ns']) / 1e6:8.1f}  {'  ' * depth(s)}{s['name']}")
PY
[ -n "${KEEP_MODEL:-}" ] || rm -rf "$MODEL"
exit $status
