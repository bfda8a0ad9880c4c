# Sourced by dit_bench.sh, vae_bench.sh and e2e_bench.sh from the repository root with WORK set: the GPU image
# has no diffusers, so the wheels carried in .whl/ (see dit_bench.sh) go under $WORK/site and on
# PYTHONPATH.
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$WORK/site" .whl/*.whl && export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
