//! The CPU umT5 encoder against transformers' `UMT5EncoderModel` (fp32, run as Wan runs it: padded
//! to 512 and masked), and the tokenizer against `sentencepiece`: fixtures from
//! tools/golden/umt5.py.
//!
//! Tolerance: 1e-4 of the output's scale. Both sides compute in f32 with the same weights; they
//! differ in summation order (GEMM blocking, softmax over 512 padded keys there vs L keys here)
//! only: measured ≤ 5e-7 through two blocks of K ≤ 128 dot products. 1e-4 leaves room for
//! platform differences while still catching any wrong formula (flipping the bucket direction or
//! swapping the FFN branches measured 0.7 and 0.4).

mod common;

use std::collections::{BTreeMap, HashMap};

use common::{fixture, load, max_rel_err, open};
use safetensors::tensor::TensorView;
use turbine_checkpoint::TensorStore;
use turbine_models::Error;
use turbine_models::seeded::seeded_store;
use turbine_models::umt5::weights::to_hf;
use turbine_models::umt5::{
    Layout, UmT5Config, UmT5Encoder, UmT5Tokenizer, UmT5Weights, relative_position_bucket,
};
use turbine_tensor::{CpuBackend, CpuTensor};

const TOL: f32 = 1e-4;
const TEXT_LEN: usize = 512;

fn tiny(store: &TensorStore) -> UmT5Encoder<CpuBackend> {
    UmT5Encoder::load(CpuBackend, UmT5Config::tiny(), store).unwrap()
}

fn load_err(config: UmT5Config, store: &TensorStore) -> String {
    UmT5Encoder::load(CpuBackend, config, store)
        .err()
        .expect("load should fail")
        .to_string()
}

/// `(ids, expected output)` of every fixture case.
fn cases() -> Vec<(Vec<u32>, CpuTensor)> {
    let store = open("umt5/encode.safetensors");
    let ids: Vec<Vec<u32>> = serde_json::from_str(store.metadata("ids").unwrap()).unwrap();
    ids.into_iter()
        .enumerate()
        .map(|(i, ids)| (ids, load(&store, &format!("case{i}.out"))))
        .collect()
}

#[test]
fn encoder_matches_umt5_encoder_model() {
    let model = tiny(&open("umt5/tiny.safetensors"));
    let cases = cases();
    assert!(cases.len() >= 4);
    for (ids, want) in &cases {
        let got = model.encode(ids).unwrap();
        let err = max_rel_err(&got, want);
        println!("length {:3}: max rel err {err:.2e}", ids.len());
        assert!(err <= TOL, "length {}: {err}", ids.len());
    }
}

#[test]
fn buckets_match_reference() {
    let store = open("umt5/encode.safetensors");
    let want = store.get("buckets").unwrap().to_f32_vec();
    assert_eq!(want.len(), 2 * TEXT_LEN - 1);
    for (i, bucket) in want.iter().enumerate() {
        let rel = i as i64 - (TEXT_LEN as i64 - 1);
        assert_eq!(
            relative_position_bucket(rel, 32, 128) as f32,
            *bucket,
            "relative position {rel}"
        );
    }
}

/// Writes `store`'s tensors under new names (dropping those mapped to `None`) into a temporary
/// safetensors file.
fn renamed(store: &TensorStore, rename: impl Fn(&str) -> Option<String>) -> tempfile::TempPath {
    let file = tempfile::Builder::new()
        .suffix(".safetensors")
        .tempfile()
        .unwrap();
    let mut views = HashMap::new();
    for name in store.names() {
        let Some(new_name) = rename(name) else {
            continue;
        };
        let info = store.info(name).unwrap();
        assert_eq!(info.dtype, turbine_tensor::DType::BF16);
        let view = TensorView::new(
            safetensors::Dtype::BF16,
            info.shape.clone(),
            store.bytes(name).unwrap(),
        )
        .unwrap();
        views.insert(new_name, view);
    }
    safetensors::serialize_to_file(views, None, file.path()).unwrap();
    file.into_temp_path()
}

#[test]
fn hugging_face_and_prefixed_layouts_give_the_same_output() {
    let weights = open("umt5/tiny.safetensors");
    let names: BTreeMap<String, String> =
        serde_json::from_str(weights.metadata("hf_names").unwrap()).unwrap();
    assert_eq!(names.len(), weights.len());
    for (original, hf) in &names {
        assert_eq!(&to_hf(original), hf);
    }
    let (ids, _) = &cases()[2];
    let want = tiny(&weights).encode(ids).unwrap();
    assert_eq!(
        UmT5Weights::new(&weights).unwrap().layout(),
        Layout::Original
    );
    // The HF names; then the tied embedding under its other name, behind a pipeline prefix.
    let variants: [fn(&str) -> Option<String>; 2] = [
        |n| Some(to_hf(n)),
        |n| {
            let hf = to_hf(n).replace("shared.weight", "encoder.embed_tokens.weight");
            Some(format!("text_encoder.{hf}"))
        },
    ];
    for rename in variants {
        let path = renamed(&weights, rename);
        let store = TensorStore::open(&path).unwrap();
        assert_eq!(
            UmT5Weights::new(&store).unwrap().layout(),
            Layout::HuggingFace
        );
        assert_eq!(tiny(&store).encode(ids).unwrap().data(), want.data());
    }
}

#[test]
fn load_errors_name_key_and_shapes() {
    let weights = open("umt5/tiny.safetensors");
    let wrong = UmT5Config {
        d_ff: 256,
        ..UmT5Config::tiny()
    };
    let err = load_err(wrong, &weights);
    assert!(
        err.contains("blocks.0.ffn.gate.0.weight")
            && err.contains("[256, 64]")
            && err.contains("[128, 64]"),
        "{err}"
    );

    let missing = |key: &'static str| renamed(&weights, move |n| (n != key).then(|| n.to_string()));
    let path = missing("blocks.1.norm2.weight");
    let err = load_err(UmT5Config::tiny(), &TensorStore::open(&path).unwrap());
    assert!(
        err.contains("missing tensor `blocks.1.norm2.weight`"),
        "{err}"
    );

    // In the HF layout the error names the HF key; the embedding error names both tied names.
    let path = renamed(&weights, |n| {
        (n != "blocks.1.ffn.fc2.weight" && n != "token_embedding.weight").then(|| to_hf(n))
    });
    let store = TensorStore::open(&path).unwrap();
    let err = load_err(UmT5Config::tiny(), &store);
    assert!(
        err.contains("missing tensor `encoder.block.1.layer.1.DenseReluDense.wo.weight`"),
        "{err}"
    );
    let path = renamed(&weights, |n| {
        (n != "token_embedding.weight").then(|| to_hf(n))
    });
    let err = load_err(UmT5Config::tiny(), &TensorStore::open(&path).unwrap());
    assert!(
        err.contains("`shared.weight`") && err.contains("`encoder.embed_tokens.weight`"),
        "{err}"
    );

    let not_umt5 = open("wan_dit/tiny.safetensors");
    let err = load_err(UmT5Config::tiny(), &not_umt5);
    assert!(err.contains("token_embedding.weight"), "{err}");
}

#[test]
fn encode_rejects_bad_ids() {
    let model = tiny(&open("umt5/tiny.safetensors"));
    for ids in [vec![], vec![5, 512, 1], vec![1; TEXT_LEN + 1]] {
        let err = model.encode(&ids).expect_err("should fail");
        assert!(matches!(err, Error::Input(_)), "{err}");
    }
    let err = model.encode(&[5, 512, 1]).err().unwrap().to_string();
    assert!(err.contains("512") && err.contains("position 1"), "{err}");
}

#[test]
fn seeded_weights_cover_every_tensor() {
    let config = UmT5Config::tiny();
    let weights = open("umt5/tiny.safetensors");
    let shapes = config.tensor_shapes();
    assert_eq!(shapes.len(), weights.len());
    for (name, shape) in &shapes {
        assert_eq!(&weights.info(name).unwrap().shape, shape, "{name}");
    }
    let store = seeded_store(&shapes, 3).unwrap();
    let model = UmT5Encoder::load(CpuBackend, config, &store).unwrap();
    assert_eq!(model.encode(&[7, 8, 1]).unwrap().shape(), [3, 64]);
}

#[derive(serde::Deserialize)]
struct TokenCase {
    prompt: String,
    ids: Vec<u32>,
    untruncated_len: usize,
}

fn token_cases() -> Vec<TokenCase> {
    let text = std::fs::read_to_string(fixture("umt5/tokens.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn tokenizer(max_len: usize) -> UmT5Tokenizer {
    UmT5Tokenizer::from_file(fixture("umt5/tokenizer.json"), max_len).unwrap()
}

#[test]
fn tokenizer_matches_sentencepiece() {
    let tok = tokenizer(TEXT_LEN);
    assert_eq!(tok.vocab_size(), UmT5Config::tiny().vocab_size);
    let cases = token_cases();
    assert!(cases.len() >= 8);
    for case in &cases {
        let got = tok.encode(&case.prompt).unwrap();
        assert_eq!(got.ids, case.ids, "{:?}", case.prompt);
        assert_eq!(
            got.untruncated_len, case.untruncated_len,
            "{:?}",
            case.prompt
        );
    }
}

#[test]
fn truncation_keeps_eos_within_max_len() {
    let cases = token_cases();
    let long = cases
        .iter()
        .find(|c| c.untruncated_len > TEXT_LEN)
        .expect("a prompt longer than 512 tokens");
    let got = tokenizer(TEXT_LEN).encode(&long.prompt).unwrap();
    assert!(got.truncated());
    assert_eq!(got.ids.len(), TEXT_LEN);
    assert_eq!(got.ids.last(), Some(&1));

    let short = tokenizer(8).encode(&cases[0].prompt).unwrap();
    let mut want = cases[0].ids[..7].to_vec();
    want.push(1);
    assert_eq!(short.ids, want);
    assert_eq!(short.untruncated_len, cases[0].ids.len());
    assert!(
        !tokenizer(TEXT_LEN)
            .encode(&cases[0].prompt)
            .unwrap()
            .truncated()
    );
}

#[test]
fn empty_prompt_is_an_error() {
    let tok = tokenizer(TEXT_LEN);
    for prompt in ["", " \n\t ", "&nbsp;\u{3000}"] {
        let err = tok.encode(prompt).expect_err("should fail");
        assert!(matches!(err, Error::Input(_)), "{prompt:?}: {err}");
    }
    assert!(UmT5Tokenizer::from_file(fixture("umt5/tokenizer.json"), 0).is_err());
    let err = UmT5Tokenizer::from_file(fixture("umt5/missing.json"), TEXT_LEN)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("missing.json"), "{err}");
}

#[test]
fn tokens_feed_the_encoder() {
    let tok = tokenizer(TEXT_LEN);
    let model = tiny(&open("umt5/tiny.safetensors"));
    for case in token_cases() {
        let ids = tok.encode(&case.prompt).unwrap().ids;
        let out = model.encode(&ids).unwrap();
        assert_eq!(out.shape(), [ids.len(), 64]);
    }
}
