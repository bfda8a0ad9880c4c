//! The `.pth` reader against the fixtures of `tools/golden/pth_cases.py`: every case byte for
//! byte against `cases_expected.safetensors`, every broken file refused with a message naming it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::SafeTensors;
use turbine_checkpoint::pth::PthFile;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/pth")
        .join(name)
}

/// Broken fixtures and what their error must say, besides the file name.
const BAD: &[(&str, &[&str])] = &[
    ("legacy", &["legacy", "save it again with torch.save"]),
    (
        "bad_missing_storage",
        &["tensor `w`", "`forged/data/1` is missing"],
    ),
    (
        "bad_short_storage",
        &["tensor `w`", "reaches element 8 of a storage of 4 elements"],
    ),
    (
        "bad_storage_size",
        &["tensor `w`", "holds 12 bytes, data.pkl declares 16"],
    ),
    ("bad_pickle", &["forged/data.pkl", "truncated"]),
    ("bad_compressed", &["tensor `w`", "compressed"]),
    ("bad_root", &["top-level object is a tensor"]),
];

fn expected_file() -> Vec<u8> {
    std::fs::read(fixture("cases_expected.safetensors")).unwrap()
}

/// `skipped/<case>` metadata: the non-tensor names of each good case.
fn cases(expected: &[u8]) -> BTreeMap<String, Vec<String>> {
    let (_, header) = SafeTensors::read_metadata(expected).unwrap();
    header
        .metadata()
        .as_ref()
        .unwrap()
        .iter()
        .filter_map(|(k, v)| {
            let case = k.strip_prefix("skipped/")?;
            Some((case.to_string(), serde_json::from_str(v).unwrap()))
        })
        .collect()
}

#[test]
fn every_fixture_is_tested() {
    let cases = cases(&expected_file());
    for entry in std::fs::read_dir(fixture("")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "pth") {
            let stem = path.file_stem().unwrap().to_str().unwrap();
            assert!(
                cases.contains_key(stem) || BAD.iter().any(|(b, _)| *b == stem),
                "{stem}.pth is neither a case nor a known broken file"
            );
        }
    }
}

#[test]
fn cases_match_torch_byte_for_byte() {
    let expected = expected_file();
    let st = SafeTensors::deserialize(&expected).unwrap();
    let cases = cases(&expected);
    assert!(cases.len() >= 7, "{cases:?}");
    for (case, skipped) in &cases {
        let pth = PthFile::open(fixture(&format!("{case}.pth"))).unwrap();
        let prefix = format!("{case}/");
        let mut want: Vec<&str> = st
            .names()
            .into_iter()
            .filter_map(|n| n.strip_prefix(&prefix))
            .collect();
        want.sort();
        let mut got: Vec<&str> = pth.tensors().map(|t| t.name()).collect();
        got.sort();
        assert_eq!(got, want, "{case}: tensor names");
        for t in pth.tensors() {
            let key = format!("{prefix}{}", t.name());
            let view = st.tensor(&key).unwrap();
            assert_eq!(t.dtype().safetensors(), view.dtype(), "{key}: dtype");
            assert_eq!(t.shape(), view.shape(), "{key}: shape");
            assert_eq!(t.bytes().as_ref(), view.data(), "{key}: bytes");
        }
        let names: Vec<&str> = pth.skipped().iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, *skipped, "{case}: skipped");
        pth.verify_checksums().unwrap();
    }
}

#[test]
fn skipped_entries_say_what_they_are() {
    let pth = PthFile::open(fixture("turbowan.pth")).unwrap();
    let kinds: Vec<String> = pth.skipped().iter().map(ToString::to_string).collect();
    assert_eq!(
        kinds,
        [
            "optimizer.param_groups (list)",
            "args (argparse.Namespace)",
            "iteration (int)"
        ]
    );
    let nested = PthFile::open(fixture("nested.pth")).unwrap();
    let kinds: Vec<&str> = nested.skipped().iter().map(|s| s.kind.as_str()).collect();
    assert_eq!(kinds, ["int", "dict", "None"]);
}

#[test]
fn broken_files_are_refused_with_clear_errors() {
    for (stem, needles) in BAD {
        let name = format!("{stem}.pth");
        let err = PthFile::open(fixture(&name)).expect_err(stem).to_string();
        assert!(
            err.contains(&name),
            "{stem}: `{err}` does not name the file"
        );
        for needle in *needles {
            assert!(err.contains(needle), "{stem}: `{err}` lacks `{needle}`");
        }
    }
}

#[test]
fn other_files_are_not_mistaken_for_checkpoints() {
    let err = PthFile::open(fixture("cases_expected.safetensors"))
        .expect_err("safetensors")
        .to_string();
    assert!(err.contains("not a zip archive"), "{err}");
}

#[test]
fn every_truncation_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    for case in ["views", "exotic"] {
        let bytes = std::fs::read(fixture(&format!("{case}.pth"))).unwrap();
        let path = dir.path().join(format!("{case}.pth"));
        for len in 0..bytes.len() {
            std::fs::write(&path, &bytes[..len]).unwrap();
            let err = PthFile::open(&path).expect_err(&format!("{case} cut at {len}"));
            assert!(err.to_string().contains(&format!("{case}.pth")), "{err}");
        }
    }
}

/// Offset and length of a record's data, from its zip local header.
fn record_range(zip: &[u8], name: &str) -> std::ops::Range<usize> {
    let at = zip
        .windows(name.len())
        .position(|w| w == name.as_bytes())
        .unwrap();
    let header = at - 30;
    let u16_at = |i: usize| usize::from(u16::from_le_bytes([zip[i], zip[i + 1]]));
    let size = u16_at(header + 18) | (u16_at(header + 20) << 16);
    let start = at + name.len() + u16_at(header + 28);
    start..start + size
}

#[test]
fn flipped_bytes_never_panic_and_corrupted_records_are_caught() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("views.pth")).unwrap();
    let pickle = record_range(&bytes, "views/data.pkl");
    let storage = record_range(&bytes, "views/data/0");
    let path = dir.path().join("views.pth");
    for i in 0..bytes.len() {
        let mut flipped = bytes.clone();
        flipped[i] ^= 0xff;
        std::fs::write(&path, &flipped).unwrap();
        let opened = PthFile::open(&path);
        if pickle.contains(&i) {
            let err = opened.expect_err("a flipped data.pkl byte").to_string();
            assert!(
                err.contains("views/data.pkl") && err.contains("CRC"),
                "{err}"
            );
            continue;
        }
        let Ok(pth) = opened else { continue };
        for t in pth.tensors() {
            t.bytes();
        }
        let verified = pth.verify_checksums();
        if storage.contains(&i) {
            let err = verified.expect_err("a flipped storage byte").to_string();
            assert!(
                err.contains("views/data/0") && err.contains("tensor `base`"),
                "{err}"
            );
        }
    }
}

#[test]
fn views_share_storage_without_copying_contiguous_ones() {
    let pth = PthFile::open(fixture("views.pth")).unwrap();
    let row = pth.tensor("row").unwrap();
    assert!(matches!(row.bytes(), std::borrow::Cow::Borrowed(_)));
    let transposed = pth.tensor("transposed").unwrap();
    assert_eq!(transposed.shape(), [6, 4]);
    assert!(matches!(transposed.bytes(), std::borrow::Cow::Owned(_)));
}
