#!/usr/bin/env bash
# Validates the Kubernetes manifests offline (no cluster): renders each overlay with kustomize
# (`kubectl kustomize`, or a standalone `kustomize build`), validates every object strictly
# (unknown fields fail) against the API schemas of the oldest and newest Kubernetes versions
# checked, with kubernetes-validate from the Python package index in the gitignored venv
# pyenv-k8s, and runs check.py's consistency checks (models, probes, ports, drain vs grace,
# non-root). What a live cluster adds (admission, the device plugin, storage classes, DNS) is not
# covered.
set -euo pipefail
cd "$(dirname "$0")/../.."

# grpc probes are GA since 1.27; 1.29 is the oldest version checked.
VERSIONS=(1.29.0 1.37.0)
VALIDATOR="kubernetes-validate==1.37.0"

if command -v kubectl >/dev/null; then
    render=(kubectl kustomize)
elif command -v kustomize >/dev/null; then
    render=(kustomize build)
else
    echo "validate.sh: needs kubectl (its built-in kustomize) or kustomize" >&2
    exit 1
fi
if [ ! -x pyenv-k8s/bin/pip ]; then
    python3 -m venv pyenv-k8s
fi
pyenv-k8s/bin/pip install --quiet --disable-pip-version-check "$VALIDATOR"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for overlay in tiny gpu; do
    "${render[@]}" "deploy/k8s/$overlay" >"$out/$overlay.yaml"
    for v in "${VERSIONS[@]}"; do
        pyenv-k8s/bin/kubernetes-validate --strict --quiet -k "$v" "$out/$overlay.yaml"
    done
    echo "deploy/k8s/$overlay: $(grep -c '^kind:' "$out/$overlay.yaml") objects valid against" \
        "Kubernetes ${VERSIONS[*]}"
    pyenv-k8s/bin/python deploy/k8s/check.py <"$out/$overlay.yaml"
done
