#!/usr/bin/env bash
# Issue 6's external oracle for SageSLA on a GPU host, from the repository root, with the release
# gpucheck in .gpu/ (see check.sh) and TurboDiffusion's sdist in .whl/ (ignored by git; PyPI has
# only the sdist, and `pip download` would build it, so fetch the file by its URL from
# https://pypi.org/simple/turbodiffusion/: turbodiffusion-1.0.0.tar.gz, sha256 01ac76f0…d658d):
#   1. turbine-gpucheck --parts sla-dump: one 1.3B 480p forward of part sage-forward's model and
#      inputs at the first rCM timestep, dumping layers 0 and 15 (q, k, v, proj_l, our SageSLA and
#      f32 SLA at top-k 0.1 and 0.15) into $WORK/dump, about 180 MB a layer, so not under $OUT
#      (gpucheck.log, gpucheck.json);
#   2. the sdist's turbodiffusion/SLA/ extracted into $WORK/upstream (not its 60 MB of CUTLASS);
#   3. tools/gpu/sla_oracle.py: upstream's Triton SparseLinearAttention on the dumps against our
#      SageSLA and f32 SLA, issue 6's gates (oracle.log, oracle.json).
# Outputs under $OUT (default ./sla-oracle-out); KEEP_DUMP=1 keeps $WORK. Exits non-zero when a
# step fails or a gate fails.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-sla-oracle-out}
WORK=${WORK:-/tmp/turbine-sla-oracle}
SDIST=${SDIST:-.whl/turbodiffusion-1.0.0.tar.gz}
mkdir -p "$OUT"
rm -rf "$WORK"
mkdir -p "$WORK/upstream"
{
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    git log -1 --format='commit %H' 2>/dev/null
    python3 -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__)'
    sha256sum "$SDIST"
} 2>&1 | tee "$OUT/env.txt"

echo "== 1. gpucheck part sla-dump"
timeout "${DUMP_TIMEOUT:-300}" .gpu/turbine-gpucheck --parts sla-dump --dump-sla "$WORK/dump" \
    --json "$OUT/gpucheck.json" 2>&1 | tee "$OUT/gpucheck.log"
rc=${PIPESTATUS[0]}
echo "step 1: exit $rc"
[ "$rc" = 0 ] || exit "$rc"

echo "== 2. extracting $SDIST"
tar -xzf "$SDIST" -C "$WORK/upstream" --strip-components=1 --wildcards \
    '*/turbodiffusion/__init__.py' '*/turbodiffusion/SLA/*' || exit 2

echo "== 3. sla_oracle.py"
PYTHONUNBUFFERED=1 timeout "${ORACLE_TIMEOUT:-400}" python3 tools/gpu/sla_oracle.py \
    --upstream "$WORK/upstream" --dump "$WORK/dump" --out "$OUT/oracle.json" 2>&1 \
    | tee "$OUT/oracle.log"
rc=${PIPESTATUS[0]}
echo "step 3: exit $rc"
[ "${KEEP_DUMP:-0}" = 1 ] || rm -rf "$WORK"
exit "$rc"
