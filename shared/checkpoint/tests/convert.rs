//! `.pth` -> safetensors -> `TensorStore` round trips, casts, selection errors, and export of
//! Rust-made tensors.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use half::bf16;
use safetensors::{Dtype, SafeTensors};
use turbine_checkpoint::TensorStore;
use turbine_checkpoint::convert::{Cast, ConvertOptions, HostView, convert, write_safetensors};
use turbine_checkpoint::pth::PthFile;
use turbine_tensor::{DType, HostData, HostTensor};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/pth")
        .join(name)
}

fn options(select: Option<&str>, strip_prefix: Option<&str>, cast: Cast) -> ConvertOptions {
    ConvertOptions {
        select: select.map(Into::into),
        strip_prefix: strip_prefix.map(Into::into),
        cast,
    }
}

#[test]
fn turbowan_state_dict_round_trips_into_a_tensor_store() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("turbowan.safetensors");
    let opts = options(Some("state_dict"), Some("net."), Cast::Keep);
    let report = convert(&fixture("turbowan.pth"), &out, &opts).unwrap();
    assert_eq!(report.tensors, 6);
    assert_eq!(report.unselected, 2, "the optimizer's tensors");
    assert_eq!(report.unprefixed, ["logvar.weight"]);
    let skipped: Vec<&str> = report.skipped.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(skipped, ["optimizer.param_groups", "args", "iteration"]);
    assert_eq!(report.file_bytes, std::fs::metadata(&out).unwrap().len());

    let store = TensorStore::open(&out).unwrap();
    let mut names: Vec<&str> = store.names().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "blocks.0.norm.weight",
            "blocks.0.self_attn.q.scale",
            "blocks.0.self_attn.q.weight",
            "head.bias",
            "head.weight",
            "logvar.weight",
        ]
    );
    assert_eq!(store.metadata("format"), Some("pt"));
    assert_eq!(store.metadata("source"), Some("turbowan.pth"));
    let pth = PthFile::open(fixture("turbowan.pth")).unwrap();
    for name in names {
        let src = if name.starts_with("logvar") {
            format!("state_dict.{name}")
        } else {
            format!("state_dict.net.{name}")
        };
        let src = pth.tensor(&src).unwrap();
        assert_eq!(store.bytes(name).unwrap(), src.bytes().as_ref(), "{name}");
        assert_eq!(store.info(name).unwrap().shape, src.shape(), "{name}");
    }
    let q = store.get("blocks.0.self_attn.q.weight").unwrap();
    assert_eq!((q.dtype(), q.shape.as_slice()), (DType::I8, &[4, 3][..]));
}

#[test]
fn casts_apply_to_floats_only() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("exotic.safetensors");
    convert(
        &fixture("exotic.pth"),
        &out,
        &options(None, None, Cast::BF16),
    )
    .unwrap();
    let bytes = std::fs::read(&out).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let dtype = |n: &str| st.tensor(n).unwrap().dtype();
    assert_eq!(dtype("f8_e4m3"), Dtype::F8_E4M3);
    assert_eq!(dtype("f8_t"), Dtype::F8_E4M3);
    assert_eq!(dtype("u64"), Dtype::U64);
    assert_eq!(dtype("c64"), Dtype::C64);
    assert_eq!(dtype("param"), Dtype::BF16);
    let with_attr = st.tensor("with_attr").unwrap();
    let want: Vec<u8> = [0.0f32, 1.0, 2.0]
        .iter()
        .flat_map(|&x| bf16::from_f32(x).to_le_bytes())
        .collect();
    assert_eq!(with_attr.data(), want);
}

#[test]
fn f32_cast_matches_the_source_values() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nested.safetensors");
    convert(
        &fixture("nested.pth"),
        &out,
        &options(Some("state_dict"), None, Cast::F32),
    )
    .unwrap();
    let store = TensorStore::open(&out).unwrap();
    let pth = PthFile::open(fixture("nested.pth")).unwrap();
    let w = pth.tensor("state_dict.net.blocks.0.w").unwrap();
    let want: Vec<f32> = w
        .bytes()
        .chunks_exact(2)
        .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
        .collect();
    let got = store.get("net.blocks.0.w").unwrap();
    assert_eq!(got.data, HostData::F32(want));
    assert!(
        store
            .names()
            .all(|n| store.info(n).unwrap().dtype == DType::F32)
    );
}

#[test]
fn bad_options_and_inputs_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    let turbowan = fixture("turbowan.pth");
    let err = |input: &Path, opts: ConvertOptions| {
        convert(input, &out, &opts)
            .expect_err("must fail")
            .to_string()
    };
    let msg = err(&turbowan, options(Some("model"), None, Cast::Keep));
    assert!(
        msg.contains("no tensors under `model`") && msg.contains("optimizer, state_dict"),
        "{msg}"
    );
    let msg = err(&turbowan, options(None, Some("module."), Cast::Keep));
    assert!(
        msg.contains("no tensor name starts with `module.`"),
        "{msg}"
    );
    let msg = err(&turbowan, options(Some("iteration.x"), None, Cast::Keep));
    assert!(msg.contains("no tensors under"), "{msg}");
    let nested = fixture("nested.pth");
    let msg = err(
        &nested,
        options(Some("state_dict.logvar"), None, Cast::Keep),
    );
    assert!(msg.contains("is a tensor"), "{msg}");
    let msg = err(&fixture("legacy.pth"), ConvertOptions::default());
    assert!(
        msg.contains("legacy.pth") && msg.contains("legacy"),
        "{msg}"
    );
    let msg = convert(&turbowan, &turbowan, &ConvertOptions::default())
        .expect_err("in place")
        .to_string();
    assert!(msg.contains("overwrite the input"), "{msg}");
    assert!(!out.exists());
}

#[test]
fn a_corrupted_storage_stops_the_conversion() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(fixture("nested.pth")).unwrap();
    // The one storage record holding 4 f32 bytes of zeros is `logvar`'s; flip its first byte.
    let name = b"nested/data/3";
    let at = bytes.windows(name.len()).position(|w| w == name).unwrap();
    let extra = usize::from(u16::from_le_bytes([bytes[at - 2], bytes[at - 1]]));
    bytes[at + name.len() + extra] ^= 0xff;
    let input = dir.path().join("nested.pth");
    std::fs::write(&input, &bytes).unwrap();
    let out = dir.path().join("out.safetensors");
    let msg = convert(&input, &out, &ConvertOptions::default())
        .expect_err("corrupted")
        .to_string();
    assert!(
        msg.contains("tensor `state_dict.logvar`") && msg.contains("CRC-32"),
        "{msg}"
    );
    assert!(!out.exists());
}

#[test]
fn host_tensors_export_and_load_back() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("random.safetensors");
    let w = HostTensor::new(
        [2, 3],
        HostData::BF16((0..6).map(|i| bf16::from_f32(i as f32 - 2.5)).collect()),
    )
    .unwrap();
    let b = HostTensor::from_f32([3], vec![0.5, -1.0, 7.25]).unwrap();
    let q = HostTensor::new([4], HostData::I8(vec![-128, -1, 0, 127])).unwrap();
    let tensors = [("w", &w), ("b", &b), ("q", &q)].map(|(n, t)| (n.to_string(), HostView(t)));
    let metadata = HashMap::from([("seed".to_string(), "7".to_string())]);
    write_safetensors(&out, tensors, metadata).unwrap();
    let store = TensorStore::open(&out).unwrap();
    assert_eq!(store.get("w").unwrap(), w);
    assert_eq!(store.get("b").unwrap(), b);
    assert_eq!(store.get("q").unwrap(), q);
    assert_eq!(store.metadata("seed"), Some("7"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
    }
}

#[test]
fn mapped_tensors_are_the_stored_bytes_and_keep_the_file_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mapped.safetensors");
    let w = HostTensor::new(
        [2, 3],
        HostData::BF16((0..6).map(|i| bf16::from_f32(i as f32 * 0.75)).collect()),
    )
    .unwrap();
    let b = HostTensor::from_f32([3], vec![0.5, -1.0, 7.25]).unwrap();
    let tensors = [("w", &w), ("b", &b)].map(|(n, t)| (n.to_string(), HostView(t)));
    write_safetensors(&out, tensors, HashMap::new()).unwrap();
    let store = TensorStore::open(&out).unwrap();
    assert_eq!(store.data_bytes(), 6 * 2 + 3 * 4);
    let err = store.mapped("w", &[3, 2]).unwrap_err().to_string();
    assert!(err.contains("expected shape [3, 2], found [2, 3]"), "{err}");
    assert!(store.mapped("nope", &[1]).is_err());
    let mapped = store.mapped("w", &[2, 3]).unwrap();
    drop(store);
    assert_eq!(mapped.tensor_bytes().to_host(), w);
}
