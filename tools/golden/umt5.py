"""Golden fixtures for the umT5 encoder and its tokenizer (turbine-models `umt5`).

References:
- the encoder is transformers' `UMT5EncoderModel` (5.23.0, eager attention) in fp32 on CPU with
  `feed_forward_proj="gated-gelu"`, run the way Wan's `T5EncoderModel.__call__` runs it: ids padded
  to 512 with an attention mask, then the first `seq_len` rows kept. A transcription of the original
  `wan/modules/t5.py` encoder (shared/reference/wan.md §4), fed the original-layout weights and the
  unpadded ids, must agree with it: that checks the key table and that padding changes nothing;
- the tokenizer is a SentencePiece Unigram model trained here by `sentencepiece` (byte fallback,
  `nmt_nfkc`, umT5's special ids pad 0, `</s>` 1, unk 2) on a small made-up corpus, converted to
  `tokenizer.json` by `tokenizers`' `SentencePieceUnigramTokenizer.from_spm`; expected ids come
  from `sentencepiece` itself after Wan's prompt cleaning (`wan/modules/tokenizers.py`, `clean=
  'whitespace'`: `ftfy.fix_text`, double `html.unescape`, whitespace collapse), truncated to 511
  and followed by `</s>` as `T5TokenizerFast(..., max_length=512, truncation=True)` does.

Writes into tests/fixtures/umt5/:
- `tiny.safetensors`: weights of the `tiny` preset (vocab 512, d_model 64, 4 heads x 16, d_ff 128,
  2 layers) in the original Wan key layout, bf16 (exactly what the fp32 reference ran); metadata
  `hf_names` maps each key to its `UMT5EncoderModel` name;
- `encode.safetensors`: `case{i}.out` `[L, 64]` for several lengths (metadata `ids`: the JSON
  list of each case's ids; one key, as safetensors writes several in random order), and `buckets`, the reference bucket of every relative position -511..511 (32
  buckets, max distance 128: the umT5-XXL setting);
- `tokenizer.json` and `tokens.json` (prompts and their expected ids).

Rerun from the repository root (pins in tools/golden/requirements.txt, CPU only, no network):

    python3 -m venv pyenv-golden && pyenv-golden/bin/pip install -r tools/golden/requirements.txt
    pyenv-golden/bin/python tools/golden/umt5.py
"""

import html
import json
import math
import re
import sys
import tempfile
from pathlib import Path

import ftfy
import sentencepiece as spm
import sentencepiece.sentencepiece_model_pb2
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tokenizers import Tokenizer
from transformers import UMT5Config, UMT5EncoderModel

# `from_spm` imports the protobuf module by its bare name.
sys.modules["sentencepiece_model_pb2"] = sentencepiece.sentencepiece_model_pb2
from tokenizers.implementations import SentencePieceUnigramTokenizer  # noqa: E402

OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "umt5"

TINY = dict(vocab_size=512, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4,
            relative_attention_num_buckets=32, relative_attention_max_distance=128)
TEXT_LEN = 512
EOS = 1

# Original Wan name -> `UMT5EncoderModel` name (wan.md §4); `{i}` is the block index.
ORIGINAL_TO_HF = [
    ("token_embedding.weight", "shared.weight"),
    ("blocks.{i}.norm1.weight", "encoder.block.{i}.layer.0.layer_norm.weight"),
    ("blocks.{i}.attn.q.weight", "encoder.block.{i}.layer.0.SelfAttention.q.weight"),
    ("blocks.{i}.attn.k.weight", "encoder.block.{i}.layer.0.SelfAttention.k.weight"),
    ("blocks.{i}.attn.v.weight", "encoder.block.{i}.layer.0.SelfAttention.v.weight"),
    ("blocks.{i}.attn.o.weight", "encoder.block.{i}.layer.0.SelfAttention.o.weight"),
    ("blocks.{i}.pos_embedding.embedding.weight",
     "encoder.block.{i}.layer.0.SelfAttention.relative_attention_bias.weight"),
    ("blocks.{i}.norm2.weight", "encoder.block.{i}.layer.1.layer_norm.weight"),
    ("blocks.{i}.ffn.gate.0.weight", "encoder.block.{i}.layer.1.DenseReluDense.wi_0.weight"),
    ("blocks.{i}.ffn.fc1.weight", "encoder.block.{i}.layer.1.DenseReluDense.wi_1.weight"),
    ("blocks.{i}.ffn.fc2.weight", "encoder.block.{i}.layer.1.DenseReluDense.wo.weight"),
    ("norm.weight", "encoder.final_layer_norm.weight"),
]


def hf_names(layers):
    names = {}
    for original, hf in ORIGINAL_TO_HF:
        for i in range(layers) if "{i}" in original else [None]:
            names[original.format(i=i)] = hf.format(i=i)
    return names


# ---- encoder ------------------------------------------------------------------------------------


def build(seed):
    torch.manual_seed(seed)
    config = UMT5Config(**TINY, feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6,
                        dropout_rate=0.0, is_encoder_decoder=False)
    config._attn_implementation = "eager"
    model = UMT5EncoderModel(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                # Norm weights default to ones; random values test that they are used.
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif "relative_attention_bias" in name:
                # O(1) like a trained table, so the bias visibly shapes attention.
                p.copy_(0.5 * torch.randn_like(p))
            elif name == "shared.weight":
                p.copy_(torch.randn_like(p))
            else:
                std = p.shape[1] ** -0.5
                if name.endswith(".q.weight"):
                    # T5 folds the missing 1/sqrt(d_kv) attention scale into q's initialisation.
                    std *= TINY["d_kv"] ** -0.5
                p.copy_(std * torch.randn_like(p))
            # bf16-representable values, so a bf16 fixture holds exactly what the fp32 model ran.
            p.copy_(p.to(torch.bfloat16).to(torch.float32))
    return model


def wan_bucket(rel, num_buckets=32, max_dist=128):
    """`T5RelativeEmbedding._relative_position_bucket` of wan/modules/t5.py (bidirectional)."""
    num_buckets //= 2
    buckets = (rel > 0).long() * num_buckets
    rel = rel.abs()
    max_exact = num_buckets // 2
    large = max_exact + (torch.log(rel.float() / max_exact) / math.log(max_dist / max_exact)
                         * (num_buckets - max_exact)).long()
    large = torch.min(large, torch.full_like(large, num_buckets - 1))
    return buckets + torch.where(rel < max_exact, rel, large)


def wan_encode(sd, ids):
    """The original `T5Encoder` forward on unpadded ids, fp32 (wan.md §4)."""
    heads, dk = TINY["num_heads"], TINY["d_kv"]

    def rms(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w

    n = len(ids)
    pos = torch.arange(n)
    buckets = wan_bucket(pos[None, :] - pos[:, None])
    x = sd["token_embedding.weight"][torch.tensor(ids)]
    for i in range(TINY["num_layers"]):
        p = f"blocks.{i}."
        h = rms(x, sd[p + "norm1.weight"])
        q, k, v = (F.linear(h, sd[p + f"attn.{m}.weight"]).view(n, heads, dk).transpose(0, 1) for m in "qkv")
        bias = sd[p + "pos_embedding.embedding.weight"][buckets].permute(2, 0, 1)
        attn = torch.softmax(q @ k.transpose(-1, -2) + bias, dim=-1) @ v
        x = x + F.linear(attn.transpose(0, 1).reshape(n, heads * dk), sd[p + "attn.o.weight"])
        h = rms(x, sd[p + "norm2.weight"])
        gate = F.gelu(F.linear(h, sd[p + "ffn.gate.0.weight"]), approximate="tanh")
        x = x + F.linear(F.linear(h, sd[p + "ffn.fc1.weight"]) * gate, sd[p + "ffn.fc2.weight"])
    return rms(x, sd["norm.weight"])


def hf_encode_padded(model, ids):
    """Wan's `T5EncoderModel.__call__`: pad to 512, mask, keep the first `seq_len` rows."""
    padded = torch.zeros(1, TEXT_LEN, dtype=torch.long)
    padded[0, : len(ids)] = torch.tensor(ids)
    mask = torch.zeros(1, TEXT_LEN, dtype=torch.long)
    mask[0, : len(ids)] = 1
    with torch.no_grad():
        out = model(input_ids=padded, attention_mask=mask).last_hidden_state[0]
    return out[: len(ids)]


def encoder_fixtures():
    model = build(seed=0)
    state = model.state_dict()
    assert torch.equal(state["shared.weight"], state["encoder.embed_tokens.weight"])
    names = hf_names(TINY["num_layers"])
    assert set(names.values()) == set(state) - {"encoder.embed_tokens.weight"}
    original = {k: state[hf].clone() for k, hf in names.items()}
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in original.items()},
              OUT / "tiny.safetensors", metadata={"hf_names": json.dumps(names)})

    g = torch.Generator().manual_seed(1)
    # 1: `</s>` alone (an empty prompt never gets here, but the shortest sequence does); 200 and 512
    # reach past the 128-token bucket range; 512 is a full, unpadded sequence.
    lengths = [1, 6, 31, 128, 200, 512]
    tensors, all_ids = {}, []
    for i, n in enumerate(lengths):
        ids = torch.randint(3, TINY["vocab_size"], (n,), generator=g).tolist()
        ids[-1] = EOS
        out = hf_encode_padded(model, ids)
        with torch.no_grad():
            wan = wan_encode(original, ids)
        err = ((wan - out).abs().max() / out.abs().max()).item()
        assert err < 1e-5, f"Wan transcription vs UMT5EncoderModel, length {n}: {err}"
        tensors[f"case{i}.out"] = out
        all_ids.append(ids)
    attn = model.encoder.block[0].layer[0].SelfAttention
    rel = torch.arange(-(TEXT_LEN - 1), TEXT_LEN)
    hf_buckets = attn._relative_position_bucket(rel)
    assert torch.equal(hf_buckets, wan_bucket(rel))
    tensors["buckets"] = hf_buckets.to(torch.float32)
    save_file({k: v.contiguous() for k, v in tensors.items()}, OUT / "encode.safetensors",
              metadata={"ids": json.dumps(all_ids)})


# ---- tokenizer ----------------------------------------------------------------------------------

CORPUS = """\
A red fox runs across a snowy field at dawn, cinematic lighting, slow motion.
A golden retriever plays with a ball on a sunny beach while waves roll in.
Aerial shot of a city skyline at night, neon lights reflecting on wet streets.
A chef slices fresh vegetables in a bright kitchen, close-up, shallow depth of field.
Two astronauts float inside a space station and look down at the blue Earth.
Rain falls on a quiet forest; drops slide along green leaves and moss.
A vintage car drives along a coastal road at sunset, the camera tracking beside it.
An old man reads a newspaper on a park bench as pigeons gather around him.
A paper boat drifts down a small stream between smooth grey stones.
Fireworks explode over a harbour, colourful sparks mirrored in the water.
Un chat noir dort sur le rebord d'une fenêtre, baigné de lumière douce.
Une boulangerie française le matin : croissants dorés, café crème et brioche.
Le vieux phare résiste aux vagues pendant la tempête, ciel gris et écume blanche.
Ein Hund läuft über die grüne Wiese, die Sonne scheint, Blätter fallen im Herbst.
Die Straße glänzt nach dem Regen, eine Straßenbahn fährt langsam vorbei.
Un niño juega con una cometa en la playa, el viento sopla y las gaviotas vuelan.
La señora prepara paella en una cocina pequeña, vapor y aroma de azafrán.
一只小猫在窗台上睡觉，阳光洒在它的身上，画面温暖而安静。
夜晚的城市街道，霓虹灯闪烁，行人撑着雨伞走过。
一条小船在湖面上缓缓前行，远处是连绵的青山和白云。
桜の花びらが舞う春の公園で、子どもたちが笑いながら走っている。
夜の東京、ネオンの光が濡れた道路に映っている。
강아지가 공원에서 뛰어놀고 있다. 하늘은 맑고 바람이 분다.
Ångström, naïve façade, crème brûlée, São Paulo, Zürich, Kraków, Reykjavík.
"""

PROMPTS = [
    "A red fox jumps over a snowy fence at dawn, cinematic lighting.",
    "  Un café   au lait\tsur une table en bois,\n lumière douce.  ",
    "一只猫在窗台上睡觉，阳光洒在它身上。",
    "桜の花びらが舞う夜の東京、ネオンの光。",
    "Ｆｕｌｌ-width ｌｅｔｔｅｒｓ, ① circled, a ﬁne ligature",
    "Fireworks 🎆 over the harbour 🚢 and a crab 🦀",
    "Tom &amp; Jerry &quot;classic&quot; &amp;amp; double-escaped &#39;quote&#39; &#x263A; &copy;",
    "<b>bold</b> &lt;tag&gt; &amp; more",
    "She said “hello” and ‘goodbye’ — it’s raining…",
    "cafe\u0301 cre\u0300me bru\u0302le\u0301e, Ångström, Straße",
    "Ein Hund läuft über die grüne Wiese; 강아지가 공원에서 뛰어논다.",
    "&nbsp;x&nbsp;",
    " ".join(f"scene {i}: a blue bird lands on a branch" for i in range(120)),
]


def wan_clean(text):
    """`HuggingfaceTokenizer._clean(text)` with `clean='whitespace'` (wan/modules/tokenizers.py)."""
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


def tokenizer_fixtures():
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text(CORPUS * 3)
        prefix = Path(tmp) / "spiece"
        spm.SentencePieceTrainer.train(
            input=str(corpus), model_prefix=str(prefix), model_type="unigram",
            vocab_size=TINY["vocab_size"], byte_fallback=True, normalization_rule_name="nmt_nfkc", character_coverage=0.99,
            pad_id=0, eos_id=EOS, unk_id=2, bos_id=-1, num_threads=1, minloglevel=2)
        sp = spm.SentencePieceProcessor(model_file=f"{prefix}.model")
        assert sp.get_piece_size() == TINY["vocab_size"]
        assert sp.id_to_piece(EOS) == "</s>"
        SentencePieceUnigramTokenizer.from_spm(f"{prefix}.model").save(str(OUT / "tokenizer.json"))

    converted = Tokenizer.from_file(str(OUT / "tokenizer.json"))
    cases = []
    for prompt in PROMPTS:
        clean = wan_clean(prompt)
        ids = sp.encode(clean)
        assert converted.encode(clean, add_special_tokens=False).ids == ids, prompt
        cases.append(dict(prompt=prompt, ids=ids[: TEXT_LEN - 1] + [EOS], untruncated_len=len(ids) + 1))
    assert any(c["untruncated_len"] > TEXT_LEN for c in cases), "no prompt exercises truncation"
    byte_pieces = {sp.piece_to_id(f"<0x{b:02X}>") for b in range(256)}
    assert any(i in byte_pieces for c in cases for i in c["ids"]), "no prompt exercises byte fallback"
    (OUT / "tokens.json").write_text(json.dumps(cases, ensure_ascii=False, indent=1) + "\n")


def main():
    torch.set_num_threads(2)
    OUT.mkdir(parents=True, exist_ok=True)
    encoder_fixtures()
    tokenizer_fixtures()
    for path in sorted(OUT.iterdir()):
        print(f"{path.stat().st_size:9d}  {path.relative_to(OUT.parent)}")


if __name__ == "__main__":
    main()
