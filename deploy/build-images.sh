#!/usr/bin/env bash
# Builds the Turbine container images without a registry: no base image is pulled. The release
# binaries are built here, a minimal root filesystem is assembled from this machine's files (the
# binaries' shared-library closure found with ldd, the loader, /etc/passwd with an unprivileged
# user, /tmp) and each image is `FROM scratch` plus that tree (deploy/images/*.Dockerfile):
#
#   turbine/runtime:TAG        the root filesystem and the `turbine` command (health probes)
#   turbine/text-encoder:TAG   \
#   turbine/denoiser:TAG        } runtime + one service binary, ENTRYPOINT the binary
#   turbine/vae:TAG            /
#   turbine/orchestrator:TAG
#
# TAG is the commit's short hash (with -dirty when tracked files differ from it), and every image
# is also tagged `dev`. With --gpu the three stages are also built on a CUDA runtime,
# turbine/runtime:TAG-gpu (NVRTC, cuBLAS and cuDNN from NVIDIA's wheels on the Python package
# index, pinned below), tagged TAG-gpu and dev-gpu; libcuda comes from the host's driver through
# the NVIDIA container runtime.
#
# Runs on x86_64 Linux with Docker; the images are x86_64.
# Usage: deploy/build-images.sh [--gpu] [--tag TAG]
set -euo pipefail
cd "$(dirname "$0")/.."

# CUDA 13.0 (driver 580 and newer), the NVRTC of the CI kernel compile (tools/ci/compile_kernels.sh)
# and the cuDNN the GPU hosts' measurements used.
CUDA_WHEELS=(nvidia-cuda-nvrtc==13.0.88 nvidia-cublas==13.0.2.14 nvidia-cudnn-cu13==9.14.0.64)
SERVICES=(text-encoder denoiser vae orchestrator)
# The user the services run as; the Kubernetes manifests' securityContext names the same ids.
UID_GID=10001

gpu=false
tag=""
while [ $# -gt 0 ]; do
    case "$1" in
        --gpu) gpu=true ;;
        --tag) tag=${2:?--tag needs a value}; shift ;;
        -h | --help) sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "build-images.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
revision=$(git rev-parse --short HEAD)
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
    revision="$revision-dirty"
fi
tag=${tag:-$revision}

export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
# OpenH264 (the VAE service's MP4 encoder) builds its assembly only with nasm on PATH.
PATH="$(tools/nasm.sh):$PATH"
echo "== cargo build --release (the four services and the turbine command)"
cargo build --release --locked -p turbine-cli -p turbine-text-encoder -p turbine-denoiser \
    -p turbine-vae -p turbine-orchestrator
binaries=(turbine turbine-text-encoder turbine-denoiser turbine-vae turbine-orchestrator)

work=target/images
rm -rf "$work/runtime" "$work/services" "$work/gpu"
mkdir -p "$work/runtime/rootfs" "$work/services" "$work/gpu/rootfs"

# Copies the shared libraries the ELF files after `--` need (ldd's answer, the loader included)
# under ROOT at the paths they have here, following symlinks, except those already under HAVE (a
# root filesystem the image builds on) or under SKIP (the NVIDIA wheels' own libraries). A library
# nothing provides fails the build, except libcuda, which the container runtime brings.
copy_closure() {
    local root=$1 have=$2 skip=$3
    shift 4
    local lib
    ldd "$@" | awk '
        /=> not found/ { print "MISSING " $1; next }
        /=>/ && $3 ~ /^\// { print $3; next }
        $1 ~ /^\// { print $1 }' | sort -u | while read -r lib; do
        case "$lib" in
            "MISSING libcuda.so.1") ;;
            MISSING*) echo "build-images.sh: no ${lib#MISSING } here for: $*" >&2; exit 1 ;;
            "$skip"/*) ;;
            *)
                if [ ! -e "$root$lib" ] && [ ! -e "$have$lib" ]; then
                    mkdir -p "$root$(dirname "$lib")"
                    cp -L "$lib" "$root$lib"
                fi
                ;;
        esac
    done
}

echo "== root filesystem ($work/runtime)"
rootfs=$work/runtime/rootfs
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc" "$rootfs/home" "$rootfs/tmp" "$work/runtime/empty"
chmod 1777 "$rootfs/tmp"
cp target/release/turbine "$rootfs/usr/local/bin/"
copy_closure "$rootfs" /nonexistent /nonexistent -- "${binaries[@]/#/target/release/}"
cat >"$rootfs/etc/passwd" <<EOF
root:x:0:0:root:/root:/sbin/nologin
turbine:x:$UID_GID:$UID_GID:turbine:/home/turbine:/sbin/nologin
EOF
cat >"$rootfs/etc/group" <<EOF
root:x:0:
turbine:x:$UID_GID:
EOF
# `dns://` replica lists resolve through glibc: /etc/hosts first, then the container's DNS.
echo "hosts: files dns" >"$rootfs/etc/nsswitch.conf"
cp deploy/images/runtime.Dockerfile "$work/runtime/Dockerfile"

for f in "${binaries[@]:1}"; do
    cp "target/release/$f" "$work/services/"
done
cp deploy/images/services.Dockerfile "$work/services/Dockerfile"

built=()
# Builds IMAGE:TAG+SUFFIX and IMAGE:dev+SUFFIX from the context DIR, with the rest of the arguments.
build() {
    local image=$1 suffix=$2 dir=$3
    shift 3
    echo "== $image:$tag$suffix"
    built+=("$image:$tag$suffix")
    # Quiet unless it fails: without BuildKit, every build warns that the legacy builder is in use.
    if ! docker build --quiet --build-arg "REVISION=$revision" -t "$image:$tag$suffix" \
        -t "$image:dev$suffix" "$@" "$dir" >"$work/docker-build.log" 2>&1; then
        cat "$work/docker-build.log" >&2
        exit 1
    fi
}

build turbine/runtime "" "$work/runtime"
for s in "${SERVICES[@]}"; do
    build "turbine/$s" "" "$work/services" --target "$s" --build-arg "RUNTIME=turbine/runtime:$tag"
done

if $gpu; then
    echo "== CUDA libraries: ${CUDA_WHEELS[*]}"
    wheels=$work/wheels
    mkdir -p "$wheels"
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        -d "$wheels" "${CUDA_WHEELS[@]}"
    nvidia=$work/gpu/rootfs/opt/nvidia/lib
    mkdir -p "$nvidia"
    for name in "${CUDA_WHEELS[@]}"; do
        wheel=$(find "$wheels" -name "$(echo "${name%%==*}" | tr - _)-${name##*==}-*.whl" | head -n 1)
        if [ -z "$wheel" ]; then
            echo "build-images.sh: pip downloaded no wheel for $name" >&2
            exit 1
        fi
        # The runtime libraries only: NVRTC (and its builtins), cuBLAS + cuBLASLt, every cuDNN part.
        python3 - "$wheel" "$nvidia" <<'EOF'
import re, sys, zipfile, os
wheel, out = sys.argv[1], sys.argv[2]
wanted = re.compile(r"/lib/lib(nvrtc|nvrtc-builtins|cublas|cublasLt|cudnn[a-z_]*)\.so[.0-9]*$")
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if wanted.search(name):
            with z.open(name) as src, open(os.path.join(out, os.path.basename(name)), "wb") as dst:
                dst.write(src.read())
EOF
    done
    chmod 0755 "$nvidia"/*.so*
    # What the NVIDIA libraries link beyond the runtime's own libraries (zlib, say).
    LD_LIBRARY_PATH=$PWD/$nvidia copy_closure "$work/gpu/rootfs" "$rootfs" "$PWD/$nvidia" -- \
        "$PWD/$nvidia"/*.so*
    cp deploy/images/gpu.Dockerfile "$work/gpu/Dockerfile"
    build turbine/runtime -gpu "$work/gpu" --build-arg "RUNTIME=turbine/runtime:$tag" \
        --build-arg "CUDA_WHEELS=${CUDA_WHEELS[*]}"
    echo "== the loader in turbine/runtime:$tag-gpu finds every NVIDIA library's dependencies"
    for lib in "$nvidia"/*.so*; do
        if ! found=$(docker run --rm --entrypoint /lib64/ld-linux-x86-64.so.2 \
            "turbine/runtime:$tag-gpu" --list "/opt/nvidia/lib/${lib##*/}" 2>&1) ||
            grep -q "not found" <<<"$found"; then
            echo "build-images.sh: ${lib##*/} does not load in turbine/runtime:$tag-gpu:" >&2
            echo "$found" >&2
            exit 1
        fi
    done
    for s in text-encoder denoiser vae; do
        build "turbine/$s" -gpu "$work/services" --target "$s" \
            --build-arg "RUNTIME=turbine/runtime:$tag-gpu"
    done
fi

echo "== built (each also tagged dev$($gpu && echo ' / dev-gpu'))"
for image in "${built[@]}"; do
    docker image ls --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' "$image"
done
