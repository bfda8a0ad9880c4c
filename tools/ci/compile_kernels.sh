#!/usr/bin/env bash
# Compiles every kernels/*.cu with NVRTC for sm_90a (H100/H200) and sm_120a (RTX 5090) on a
# machine without a GPU, failing on any compile error or on a kernel the backend launches but no
# source defines. NVRTC comes from the `nvidia-cuda-nvrtc` wheel, pinned to the CUDA 13.0 the
# backend's cudarc bindings (cuda-13000) and the GPU hosts use, in a venv under the repository
# (pyenv-nvrtc, gitignored). The check itself is shared/tensor/tests/cuda_kernels.rs, which goes
# through the backend's own compile path (in-memory headers, options, symbol names).
set -euo pipefail
cd "$(dirname "$0")/../.."

NVRTC_WHEEL="nvidia-cuda-nvrtc==13.0.88"
VENV=pyenv-nvrtc

if [ ! -x "$VENV/bin/pip" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check "$NVRTC_WHEEL"
LIB_DIR=$(find "$PWD/$VENV" -name 'libnvrtc.so.13' -printf '%h\n' | head -n 1)
if [ -z "$LIB_DIR" ]; then
    echo "compile_kernels.sh: $NVRTC_WHEEL installed no libnvrtc.so.13" >&2
    exit 1
fi

LD_LIBRARY_PATH="$LIB_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" TURBINE_REQUIRE_NVRTC=1 \
    cargo test -p turbine-tensor --test cuda_kernels --locked -- --nocapture
