#!/usr/bin/env bash
# Issue 7's stage services on the GPU, from the repository root of a GPU host with the release
# binaries in .gpu/ and the diffusers wheel in .whl/ (see dit_bench.sh):
#   1. `turbine serve --device cuda --quant fp8`: the text encoder, denoiser and VAE services and
#      the orchestrator in one process, talking gRPC over loopback as a cluster does (the DiT and
#      VAE on the GPU, umT5 placed by --text-device auto), with the 1.3B random-weight folder
#      (model_folder.sh). `turbine submit` (the CLI client of Orchestrator.Generate) renders 480p
#      81 frames, 4-step rCM, SageSLA 0.1, twice, timings in submit-*.json. The stages warm up
#      on that size first (`--warm-up-shape`), the denoiser in dense and SageSLA attention (the
#      folder's DiT is SLA-tuned; WARM_UP_ATTENTION=dense, say, passes `--warm-up-attention`), so
#      the first request should be as fast as the second.
#   2. A request too big for the card (3840x2160, 1021 frames: an 8.3M-token DiT input, past
#      SageSLA's block selection and the kernels' 32-bit counters, so refused before any work)
#      must fail with RESOURCE_EXHAUSTED, and the next normal request must succeed on the same
#      server.
#   3. SIGTERM: the server drains and exits 0. With TRACE=1 the server exports its traces to an
#      OTLP receiver that prints every span as a JSON line (tests/examples/otlp_dump.rs, built by
#      `cargo build --release -p turbine-cluster-tests --example otlp_dump` and brought in .gpu/),
#      and each job's spans are printed here (start and end in ms from its first span, duration,
#      nesting; the VAE's and the video writer's per-chunk spans, at debug level, included),
#      spans.jsonl kept.
#   4. `turbine generate --reserve-gib 75`: --text-device auto finds too little room for umT5 next
#      to the DiT and VAE and runs it on the CPU.
# Everything under $OUT (default ./services-out).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-services-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 RUST_BACKTRACE=0
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/env.txt"
source tools/gpu/cudnn.sh
source tools/gpu/model_folder.sh
status=$model_status

otlp=""
if [ -n "${TRACE:-}" ]; then
    .gpu/otlp_dump >"$OUT/spans.jsonl" 2>"$OUT/otlp.txt" &
    dump=$!
    for _ in $(seq 1 50); do [ -s "$OUT/otlp.txt" ] && break; sleep 0.1; done
    otlp=$(head -1 "$OUT/otlp.txt")
    # The VAE service's and the video writer's per-chunk spans are at debug level.
    export RUST_LOG=${RUST_LOG:-info,turbine_vae=debug,turbine_orchestrator=debug}
fi

port=50050
submit() {
    local name=$1
    shift
    timeout 300 .gpu/turbine submit --server "http://127.0.0.1:$port" --prompt "$prompt" \
        --steps 4 --attention sagesla --sla-topk 0.1 --seed 7 --out "$OUT/$name.mp4" \
        --timings-json "$OUT/submit-$name.json" "$@" >"$OUT/submit-$name.log" 2>&1
    local rc=$?
    echo "submit $name: exit $rc"
    tail -6 "$OUT/submit-$name.log"
    return $rc
}

# The stages warm up on the requests' size (WARM_UP_SHAPE= turns that off).
WARM_UP_SHAPE=${WARM_UP_SHAPE-832x480x81}
echo "== 1. turbine serve --device cuda --quant fp8, warm-up shape ${WARM_UP_SHAPE:-none}"
start=$(date +%s%N)
.gpu/turbine serve --model-dir "$MODEL" --listen "127.0.0.1:$port" --device cuda --quant fp8 \
    --artifact-dir /tmp/turbine-artifacts ${WARM_UP_SHAPE:+--warm-up-shape "$WARM_UP_SHAPE"} \
    ${WARM_UP_ATTENTION:+--warm-up-attention "$WARM_UP_ATTENTION"} \
    ${otlp:+--otlp-endpoint "$otlp" --otlp-schedule-delay-ms 100} >"$OUT/serve.log" 2>&1 &
server=$!
ready=""
for _ in $(seq 1 240); do
    if [ "$(grep -c 'serving' "$OUT/serve.log")" -ge 3 ]; then
        ready=$((($(date +%s%N) - start) / 1000000))
        break
    fi
    kill -0 $server 2>/dev/null || break
    sleep 0.5
done
echo "stages serving after ${ready:-never} ms" | tee "$OUT/ready.txt"
grep -E '^(device|text-device)' "$OUT/serve.log"
grep -o 'warmed up.*' "$OUT/serve.log"
nvidia-smi --query-gpu=memory.used --format=csv,noheader | sed 's/^/GPU memory used after load: /' \
    | tee -a "$OUT/ready.txt"
submit warm || status=1
submit timed || status=1

echo "== 2. a request that cannot fit, then a normal one"
submit too-big --width 3840 --height 2160 --frames 1021
grep -q "ResourceExhausted" "$OUT/submit-too-big.log" \
    && echo "too-big: RESOURCE_EXHAUSTED as expected" \
    || { echo "too-big: expected RESOURCE_EXHAUSTED"; status=1; }
submit after-oom || status=1
nvidia-smi --query-gpu=memory.used --format=csv,noheader | sed 's/^/GPU memory used after: /'

echo "== 3. SIGTERM"
kill -TERM $server
wait $server
rc=$?
echo "serve exited $rc"
[ $rc -eq 0 ] || status=1
if [ -n "$otlp" ]; then
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
        attrs = "".join(f" {k}={v}" for k, v in s.get("attrs", {}).items()
                        if k in ("first_frame",))
        print(f"{(s['start_ns'] - t0) / 1e6:9.1f} {(s['end_ns'] - t0) / 1e6:9.1f} "
              f"{(s['end_ns'] - s['start_ns']) / 1e6:8.1f}  {'  ' * depth(s)}{s['name']}{attrs}")
PY
fi

echo "== 4. turbine generate, umT5 placed on the CPU for lack of room"
timeout 300 .gpu/turbine generate --model-dir "$MODEL" --device cuda --reserve-gib 75 \
    --frames 81 --steps 4 --attention sagesla --quant fp8 --prompt "$prompt" \
    --out "$OUT/text-on-cpu.mp4" --timings-json "$OUT/timings-text-on-cpu.json" \
    >"$OUT/generate-text-on-cpu.log" 2>&1 || status=1
grep -E '^(device|text-device)|^\s+(load|text|denoise|vae|total)' "$OUT/generate-text-on-cpu.log"
[ -n "${KEEP_MODEL:-}" ] || rm -rf "$MODEL"
exit $status
