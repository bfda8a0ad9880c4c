# Sourced by e2e_bench.sh and services_check.sh from the repository root with OUT set. Sets
# MODEL and UMT5_DIR (defaults under /tmp) and the runs' shared `prompt`. No real weights reach
# these hosts, so unless $MODEL already holds one (a KEEP_MODEL run before), a 1.3B model folder
# is built from random weights:
#   - DiT: Wan2.1-1.3B with SLA proj_l, seeded, written by `turbine bench --export-weights`;
#   - umT5-XXL: UMT5EncoderModel's layout from tools/gpu/umt5_parity.py (run it first, or let
#     umt5_bench.sh keep it with KEEP_UMT5=1; $UMT5_DIR/umt5-xxl.safetensors), else built here;
#   - VAE: diffusers AutoencoderKLWan with random weights (tools/gpu/vae_parity.py's builder);
#   - tokenizer: the tests' small SentencePiece model (google/umt5-xxl's is not on the host): the
#     prompt's token count differs from the real tokenizer's, its cost does not.
# Sets model_status to 1 when a part could not be built.
MODEL=${MODEL:-/tmp/turbine-e2e}
UMT5_DIR=${UMT5_DIR:-/tmp/turbine-umt5}
prompt="A red panda walks along a mossy branch in a misty bamboo forest at dawn, soft golden light \
filtering through the leaves, slow camera pan, shallow depth of field, cinematic, highly detailed"
model_status=0
[ -f "$MODEL/config.json" ] && return 0
WORK=$MODEL source tools/gpu/wheels.sh
mkdir -p "$MODEL/google/umt5-xxl"
timeout 240 .gpu/turbine bench --model 1.3b --attention sagesla --warmup 0 --iters 1 \
    --export-weights "$MODEL/diffusion_pytorch_model.safetensors" >"$OUT/export-dit.log" 2>&1 \
    || { echo "DiT export failed"; model_status=1; }
if [ ! -f "$UMT5_DIR/umt5-xxl.safetensors" ]; then
    timeout 300 python3 tools/gpu/umt5_parity.py --dir "$UMT5_DIR" --lengths 77 \
        >"$OUT/umt5-weights.log" 2>&1 || { echo "umT5 weights failed"; model_status=1; }
fi
python3 - "$MODEL/Wan2.1_VAE.safetensors" <<'PY' || { echo "VAE weights failed"; model_status=1; }
import sys
import torch
from safetensors.torch import save_file
sys.path.insert(0, "tools/gpu")
from vae_parity import build
state = {k: v.to(torch.bfloat16).contiguous() for k, v in build(20261126).state_dict().items()}
save_file(state, sys.argv[1])
PY
# Wan2.1-T2V-1.3B's config.json, so commands given only --model-dir know the DiT's shape.
cat >"$MODEL/config.json" <<'JSON'
{"_class_name": "WanModel", "model_type": "t2v", "dim": 1536, "eps": 1e-06, "ffn_dim": 8960,
 "freq_dim": 256, "in_dim": 16, "num_heads": 12, "num_layers": 30, "out_dim": 16, "text_len": 512}
JSON
cp tests/fixtures/umt5/tokenizer.json "$MODEL/google/umt5-xxl/tokenizer.json"
# The converted umT5 file's conventional name, so services given only --model-dir find it.
ln -sf "$UMT5_DIR/umt5-xxl.safetensors" "$MODEL/models_t5_umt5-xxl-enc-bf16.safetensors"
ls -la "$MODEL" "$UMT5_DIR" | tee -a "$OUT/env.txt"
