//! The CPU Wan VAE against diffusers' `AutoencoderKLWan` (fp32): fixtures from tools/golden/vae.py,
//! weights in the original `Wan2.1_VAE.pth` layout.
//!
//! Tolerance: 1e-4 of the output's scale. Both sides compute in f32 from the same (bf16-exact)
//! weights and differ only in summation order inside convolutions (K ≤ 864) and attention. The
//! ~40 stacked layers amplify rounding: rounding the latents differently by one ulp (upstream's
//! `z / (1/std)` against diffusers' `z·std`) already moves the decoded video by ~5e-6 relative.
//! 1e-4 leaves 20× room for that while any wrong formula, cache frame or channel order shows as
//! ≥ 1e-2.

mod common;

use common::{load, max_rel_err, open, renamed};
use turbine_checkpoint::TensorStore;
use turbine_models::seeded::seeded_store;
use turbine_models::vae::{Layout, VaeWeights, WanVae, WanVaeConfig, weights::to_diffusers};
use turbine_tensor::{Backend, CpuBackend, CpuTensor, HostTensor};

const TOL: f32 = 1e-4;

fn tiny(store: &TensorStore) -> WanVae<CpuBackend> {
    WanVae::load(CpuBackend, WanVaeConfig::tiny(), store).unwrap()
}

fn cases(kind: &str) -> (TensorStore, usize) {
    let store = open("vae/cases.safetensors");
    let n = store
        .metadata(&format!("{kind}_cases"))
        .unwrap()
        .parse()
        .unwrap();
    (store, n)
}

#[test]
fn decode_matches_diffusers() {
    let vae = tiny(&open("vae/tiny.safetensors"));
    let (cases, n) = cases("decode");
    assert!(n >= 3);
    for i in 0..n {
        let z = load(&cases, &format!("decode{i}.z"));
        let want = load(&cases, &format!("decode{i}.video"));
        let got = vae.decode(&z).unwrap();
        let err = max_rel_err(&got, &want);
        println!(
            "decode{i} {:?} -> {:?}: max rel err {err:.2e}",
            z.shape(),
            got.shape()
        );
        assert!(err <= TOL, "decode{i}: {err}");
    }
}

#[test]
fn encode_matches_diffusers() {
    let vae = tiny(&open("vae/tiny.safetensors"));
    let (cases, n) = cases("encode");
    assert!(n >= 3);
    for i in 0..n {
        let video = load(&cases, &format!("encode{i}.video"));
        let want = load(&cases, &format!("encode{i}.mu"));
        let got = vae.encode(&video).unwrap();
        let err = max_rel_err(&got, &want);
        println!(
            "encode{i} {:?} -> {:?}: max rel err {err:.2e}",
            video.shape(),
            got.shape()
        );
        assert!(err <= TOL, "encode{i}: {err}");
    }
}

#[test]
fn stream_yields_frames_in_order() {
    let vae = tiny(&open("vae/tiny.safetensors"));
    let (cases, _) = cases("decode");
    let z = load(&cases, "decode2.z");
    let t = z.shape()[1];
    assert!(t >= 3);
    let whole = vae.decode(&z).unwrap();
    let b = CpuBackend;

    let chunks: Vec<CpuTensor> = vae
        .decode_stream(&z)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let counts: Vec<usize> = chunks.iter().map(|c| c.shape()[1]).collect();
    assert_eq!(
        counts,
        [1].into_iter().chain(vec![4; t - 1]).collect::<Vec<_>>()
    );
    assert_eq!(counts.iter().sum::<usize>(), vae.config().video_frames(t));
    let mut start = 0;
    for chunk in &chunks {
        let n = chunk.shape()[1];
        assert_eq!(chunk.data(), b.slice(&whole, 1, start, n).unwrap().data());
        start += n;
    }

    // The same through a session fed frame by frame.
    let mut session = vae.decode_session();
    for (i, chunk) in chunks.iter().enumerate() {
        let frame = b.slice(&z, 1, i, 1).unwrap();
        assert_eq!(session.push(&frame).unwrap().data(), chunk.data());
    }
}

#[test]
fn diffusers_and_prefixed_layouts_give_the_same_output() {
    let weights = open("vae/tiny.safetensors");
    let (cases, _) = cases("decode");
    let (enc_cases, _) = self::cases("encode");
    let z = load(&cases, "decode1.z");
    let video = load(&enc_cases, "encode1.video");
    let reference = tiny(&weights);
    let (want_video, want_mu) = (
        reference.decode(&z).unwrap(),
        reference.encode(&video).unwrap(),
    );
    let config = WanVaeConfig::tiny();
    for (rename, layout) in [
        (
            Box::new(|n: &str| Some(to_diffusers(&config, n))) as Box<dyn Fn(&str) -> _>,
            Layout::Diffusers,
        ),
        (
            Box::new(|n: &str| Some(format!("vae.{n}"))),
            Layout::Original,
        ),
    ] {
        let store = renamed(&weights, rename);
        assert_eq!(VaeWeights::new(&store, &config).unwrap().layout(), layout);
        let vae = tiny(&store);
        assert_eq!(vae.decode(&z).unwrap().data(), want_video.data());
        assert_eq!(vae.encode(&video).unwrap().data(), want_mu.data());
    }
}

#[test]
fn tensor_list_matches_the_checkpoint_and_seeded_weights_load() {
    let weights = open("vae/tiny.safetensors");
    let shapes = WanVaeConfig::tiny().tensor_shapes();
    assert_eq!(shapes.len(), weights.len());
    for (name, shape) in &shapes {
        let info = weights.info(name).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(&info.shape, shape, "{name}");
    }
    let vae = tiny(&seeded_store(&shapes, 7).unwrap());
    let z = CpuBackend
        .upload(&HostTensor::from_f32([16, 2, 2, 2], vec![0.3; 128]).unwrap())
        .unwrap();
    let out = vae.decode(&z).unwrap();
    assert_eq!(out.shape(), [3, 5, 16, 16]);
    assert!(out.data().iter().all(|v| v.is_finite()));
}

#[test]
fn load_errors_name_key_and_shapes() {
    let weights = open("vae/tiny.safetensors");
    let wrong = WanVaeConfig {
        base_dim: 16,
        ..WanVaeConfig::tiny()
    };
    let err = WanVae::load(CpuBackend, wrong, &weights)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("encoder.conv1.weight") && err.contains("[16, 3, 3, 3, 3]"),
        "{err}"
    );

    let config = WanVaeConfig::tiny();
    for (key, layout_name) in [
        ("decoder.upsamples.7.time_conv.bias", None),
        ("encoder.middle.1.norm.gamma", None),
        (
            "decoder.upsamples.4.shortcut.weight",
            Some("decoder.up_blocks.1.resnets.0.conv_shortcut.weight"),
        ),
    ] {
        let store = renamed(&weights, |n| {
            let stored = if layout_name.is_some() {
                to_diffusers(&config, n)
            } else {
                n.to_string()
            };
            (n != key).then_some(stored)
        });
        let err = WanVae::load(CpuBackend, config.clone(), &store)
            .err()
            .unwrap()
            .to_string();
        let named = layout_name.unwrap_or(key);
        assert!(err.contains(&format!("missing tensor `{named}`")), "{err}");
    }

    let not_vae = open("wan_dit/tiny.safetensors");
    let err = WanVae::load(CpuBackend, config, &not_vae)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("not a Wan VAE checkpoint"), "{err}");
}

#[test]
fn bad_inputs_are_errors() {
    let vae = tiny(&open("vae/tiny.safetensors"));
    let b = CpuBackend;
    let tensor = |shape: &[usize]| {
        let n = shape.iter().product();
        b.upload(&HostTensor::from_f32(shape.to_vec(), vec![0.1; n]).unwrap())
            .unwrap()
    };
    for (shape, needle) in [
        (&[15, 1, 2, 2][..], "latents must be [16, T, h, w]"),
        (&[16, 0, 2, 2], "T, h, w > 0"),
        (&[16, 2, 2], "latents must be"),
    ] {
        let err = vae.decode(&tensor(shape)).err().unwrap().to_string();
        assert!(err.contains(needle), "{shape:?}: {err}");
    }
    for (shape, needle) in [
        (&[3, 4, 16, 16][..], "1 + 4k frames"),
        (&[3, 5, 16, 12], "multiples of 8"),
        (&[4, 1, 16, 16], "video must be [3, F, H, W]"),
        (&[3, 1, 16], "video must be"),
    ] {
        let err = vae.encode(&tensor(shape)).err().unwrap().to_string();
        assert!(err.contains(needle), "{shape:?}: {err}");
    }

    let mut session = vae.decode_session();
    let err = session.push(&tensor(&[16, 2, 2, 3])).err().unwrap();
    assert!(err.to_string().contains("one latent frame"), "{err}");
    session.push(&tensor(&[16, 1, 2, 3])).unwrap();
    let err = session.push(&tensor(&[16, 1, 3, 2])).err().unwrap();
    assert!(
        err.to_string().contains("this session decodes 2x3"),
        "{err}"
    );
    assert_eq!(
        session.push(&tensor(&[16, 1, 2, 3])).unwrap().shape(),
        [3, 4, 16, 24]
    );
}
