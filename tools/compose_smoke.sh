#!/usr/bin/env bash
# The docker compose cluster as a user runs it: builds the images (deploy/build-images.sh), starts
# docker-compose.yml (the tiny preset on CPU) under its own project name and a free API port, with
# two denoiser containers behind the one name, and waits until every container is healthy. Then
# two generations from outside the containers (`turbine submit`), each MP4 decoded with FFmpeg
# (tools/compose_smoke/check_mp4.py, PyAV in the gitignored venv pyenv-smoke) and checked for size,
# frame rate and frame count; each container must still be healthy and its /metrics must have
# counted its part of the jobs (each denoiser one: the orchestrator found both through DNS). Last,
# the cluster is stopped and every service must have drained and exited 0 on SIGTERM. The cluster
# and its volume are removed at the end, pass or fail. Prints how long each phase took.
#
# Usage: tools/compose_smoke.sh   (SKIP_BUILD=1 uses the turbine/*:dev images already built;
#        COMPOSE=<a docker-compose binary>, e.g. from tools/compose_v2.sh, runs that one instead of
#        `docker compose` or docker-compose, whichever is installed)
set -euo pipefail
cd "$(dirname "$0")/.."

PROJECT=turbine-smoke-$$
WIDTH=160 HEIGHT=96 FRAMES=33 FPS=16
start=$SECONDS
phase_start=$SECONDS
phase() {
    echo "   ($((SECONDS - phase_start)) s)"
    phase_start=$SECONDS
    echo "== $*"
}

if ! docker info >/dev/null 2>&1; then
    echo "compose_smoke.sh: no Docker engine answers (docker info failed)" >&2
    exit 1
fi
if [ -n "${COMPOSE:-}" ]; then
    compose=("$COMPOSE")
elif docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif command -v docker-compose >/dev/null; then
    compose=(docker-compose)
else
    echo "compose_smoke.sh: neither 'docker compose' nor docker-compose is installed" >&2
    exit 1
fi
out=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export TURBINE_PORT=$port TURBINE_BIND=127.0.0.1 TURBINE_TAG=dev
dc() { "${compose[@]}" -p "$PROJECT" -f docker-compose.yml "$@"; }

cleanup() {
    local rc=$?
    if [ $rc -ne 0 ]; then
        echo "== failed (exit $rc): the containers' last log lines"
        dc logs --no-color --tail 40 || true
    fi
    dc down -v --remove-orphans >/dev/null 2>&1 || true
    rm -rf "$out"
    echo "== compose_smoke.sh: $([ $rc -eq 0 ] && echo passed || echo FAILED) in $((SECONDS - start)) s"
}
trap cleanup EXIT
# A signal ends the script through exit, so the EXIT trap still takes the cluster down.
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== images"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    deploy/build-images.sh
fi

phase "MP4 checker (PyAV) in pyenv-smoke"
if [ ! -x pyenv-smoke/bin/pip ]; then
    python3 -m venv pyenv-smoke
fi
pyenv-smoke/bin/pip install --quiet --disable-pip-version-check -r tools/compose_smoke/requirements.txt

phase "${compose[*]} up, two denoisers (project $PROJECT, API on 127.0.0.1:$port)"
# Two denoiser containers answer to the name `denoiser`: the orchestrator's dns://denoiser:50062
# must find both, as it finds the pods behind a headless Service on Kubernetes.
dc up -d --scale denoiser=2
containers=$(dc ps -q)
if [ "$(echo "$containers" | wc -l)" != 5 ]; then
    echo "expected 5 containers, found: $containers" >&2
    exit 1
fi
service() { docker inspect -f '{{index .Config.Labels "com.docker.compose.service"}}' "$1"; }
name() { docker inspect -f '{{.Name}}' "$1" | tr -d /; }
health() { docker inspect -f '{{.State.Health.Status}}' "$1"; }
deadline=$((SECONDS + 180))
for c in $containers; do
    until [ "$(health "$c")" = healthy ]; do
        if [ $SECONDS -ge $deadline ]; then
            echo "$(name "$c") is $(health "$c") after 180 s" >&2
            exit 1
        fi
        sleep 1
    done
done
dc ps

# Two prompts, so that the text encoder is called twice (the orchestrator caches embeddings).
phase "turbine submit: ${WIDTH}x${HEIGHT} $FRAMES frames, then 64x48 9 frames"
timeout 300 target/release/turbine submit --server "http://127.0.0.1:$port" \
    --prompt "a red fox running through fresh snow" --width $WIDTH --height $HEIGHT \
    --frames $FRAMES --fps $FPS --seed 7 --out "$out/fox.mp4"
timeout 300 target/release/turbine submit --server "http://127.0.0.1:$port" \
    --prompt "a lake at dawn" --width 64 --height 48 --frames 9 --fps $FPS --seed 3 \
    --out "$out/lake.mp4"

phase "MP4s decode"
pyenv-smoke/bin/python tools/compose_smoke/check_mp4.py "$out/fox.mp4" --width $WIDTH \
    --height $HEIGHT --frames $FRAMES --fps $FPS
pyenv-smoke/bin/python tools/compose_smoke/check_mp4.py "$out/lake.mp4" --width 64 --height 48 \
    --frames 9 --fps $FPS

phase "health and metrics of each container"
# The calls each service's /metrics must have counted: both jobs' (each denoiser one of them).
declare -A served=(
    [text-encoder]="turbine.v1.TextEncoder/Encode 2"
    [denoiser]="turbine.v1.Denoiser/Denoise 1"
    [vae]="turbine.v1.Vae/Decode 2"
    [orchestrator]="turbine.v1.Orchestrator/Generate 2"
)
for c in $containers; do
    read -r method expected <<<"${served[$(service "$c")]}"
    status=$(health "$c")
    metrics=$(curl -sf "http://$(docker port "$c" 9090 | head -n 1)/metrics")
    count=$(echo "$metrics" | awk -v m="turbine_rpc_requests_total{method=\"$method\"}" '$1 == m { print $2 }')
    echo "$(name "$c"): $status, /metrics: $method ${count:-0} (expected $expected)"
    if [ "$status" != healthy ] || [ "${count:-0}" != "$expected" ]; then
        exit 1
    fi
done

phase "${compose[*]} stop: SIGTERM, drain, exit 0"
dc stop
for c in $containers; do
    code=$(docker inspect -f '{{.State.ExitCode}}' "$c")
    echo "$(name "$c") exited $code"
    if [ "$code" != 0 ]; then
        exit 1
    fi
done
phase "down"
