# Sourced by vae_bench.sh and e2e_bench.sh from the repository root with OUT set: cuDNN comes from
# the torch venv's nvidia-cudnn wheel (or the system), and its directory goes on LD_LIBRARY_PATH so
# the backend's loader finds it; the library found is noted in $OUT/env.txt.
# cudarc (cuda-13000) tries libcudnn.so, libcudnn.so.13, .12, .11, .10, .9, .1 by name.
found() { find / \( -path /proc -o -path /sys \) -prune -o "$@" -print 2>/dev/null; }
cudnn=$(found \( -name 'libcudnn.so.9' -o -name 'libcudnn.so' \) | head -1)
if [ -n "$cudnn" ]; then
    export LD_LIBRARY_PATH="$(dirname "$cudnn")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "cuDNN: $cudnn" | tee -a "$OUT/env.txt"
else
    echo "cuDNN: no libcudnn.so.9 / libcudnn.so found (libcudnn.so*:" \
        "$(found -name 'libcudnn.so*' | head -3 | tr '\n' ' '));" \
        "conv3d will run on the direct kernel" | tee -a "$OUT/env.txt"
fi
