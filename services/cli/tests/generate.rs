//! `turbine generate` as a user runs it: the binary on the bundled tiny preset writes an MP4 that
//! an independent demuxer (the `mp4` crate) and decoder (OpenH264's) read back with the requested
//! frame count, size and frame rate; bad input exits non-zero with a clear message and no panic.

use std::io::Cursor;
use std::path::Path;
use std::process::{Command, Output};

use openh264::decoder::Decoder;
use openh264::formats::YUVSource;

fn turbine(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_turbine"))
        .args(args)
        .current_dir(dir)
        .env_remove("TURBINE_MODEL_DIR")
        .output()
        .expect("run turbine")
}

struct ReadBack {
    width: u16,
    height: u16,
    fps: f64,
    samples: u32,
    decoded: usize,
    picture_size: (usize, usize),
}

fn read_back(file: &[u8]) -> ReadBack {
    let mut mp4 = mp4::Mp4Reader::read_header(Cursor::new(file), file.len() as u64).unwrap();
    let (&id, track) = mp4.tracks().iter().next().unwrap();
    assert_eq!(track.media_type().unwrap(), mp4::MediaType::H264);
    let (width, height, fps, samples) = (
        track.width(),
        track.height(),
        track.frame_rate(),
        track.sample_count(),
    );
    let mut annexb = Vec::new();
    for set in [
        track.sequence_parameter_set().unwrap(),
        track.picture_parameter_set().unwrap(),
    ] {
        annexb.extend([0, 0, 0, 1]);
        annexb.extend(set);
    }
    let mut decoder = Decoder::new().unwrap();
    let (mut decoded, mut picture_size) = (0, (0, 0));
    for sample_id in 1..=samples {
        let sample = mp4.read_sample(id, sample_id).unwrap().unwrap();
        // Samples hold 4-byte length-prefixed NAL units; the decoder takes Annex-B.
        let mut nals = &sample.bytes[..];
        while !nals.is_empty() {
            let len = u32::from_be_bytes(nals[..4].try_into().unwrap()) as usize;
            annexb.extend([0, 0, 0, 1]);
            annexb.extend(&nals[4..4 + len]);
            nals = &nals[4 + len..];
        }
        if let Some(picture) = decoder.decode(&annexb).unwrap() {
            decoded += 1;
            picture_size = picture.dimensions();
        }
        annexb.clear();
    }
    ReadBack {
        width,
        height,
        fps,
        samples,
        decoded,
        picture_size,
    }
}

#[test]
fn tiny_preset_writes_a_readable_mp4() {
    let dir = tempfile::tempdir().unwrap();
    let out = turbine(
        &[
            "generate",
            "--prompt",
            "a lighthouse on a cliff at dusk",
            "--width",
            "64",
            "--height",
            "48",
            "--frames",
            "13",
            "--fps",
            "24",
            "--out",
            "clip.mp4",
            "--timings-json",
            "timings.json",
        ],
        dir.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let mp4 = read_back(&std::fs::read(dir.path().join("clip.mp4")).unwrap());
    assert_eq!((mp4.width, mp4.height), (64, 48));
    assert_eq!(mp4.samples, 13);
    assert_eq!(mp4.decoded, 13);
    assert_eq!(mp4.picture_size, (64, 48));
    assert!((mp4.fps - 24.0).abs() < 1e-6, "fps {}", mp4.fps);

    let timings: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("timings.json")).unwrap()).unwrap();
    assert_eq!(timings["report"]["frames"], 13);
    assert_eq!(
        timings["report"]["timesteps"],
        serde_json::json!([988.0, 932.0, 852.0, 608.0])
    );
    assert!(
        timings["report"]["timings"]["vae_decode_s"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    // One frame first, then four a latent frame; each chunk reaches the host after its decode
    // was queued, and the sink after that, in order.
    let chunks = timings["report"]["timings"]["chunks"].as_array().unwrap();
    let frames: Vec<u64> = chunks
        .iter()
        .map(|c| c["frames"].as_u64().unwrap())
        .collect();
    assert_eq!(frames, [1, 4, 4, 4]);
    let mut last_written = 0.0;
    for chunk in chunks {
        let at = |key: &str| chunk[key].as_f64().unwrap();
        let (queued, decoded, written) = (at("queued_s"), at("decoded_s"), at("written_s"));
        assert!(
            0.0 < queued && queued <= decoded && decoded <= written && last_written <= written,
            "{chunk}"
        );
        last_written = written;
    }
    let load_s = timings["load_s"].as_f64().unwrap();
    for model in ["text_encoder", "dit", "vae"] {
        let load = &timings["load"][model];
        let seconds = load["seconds"].as_f64().unwrap();
        assert!(seconds > 0.0 && seconds <= load_s, "{model}: {load}");
        assert!(load["bytes"].as_u64().unwrap() > 0, "{model}: {load}");
        assert!(load["gb_per_s"].as_f64().unwrap() > 0.0, "{model}: {load}");
    }
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere");
    let corrupt = dir.path().join("corrupt");
    std::fs::create_dir(&corrupt).unwrap();
    std::fs::write(
        corrupt.join("diffusion_pytorch_model.safetensors"),
        b"\x10\x00\x00\x00\x00\x00\x00\x00{not json",
    )
    .unwrap();
    let cases: [(&[&str], &str); 8] = [
        (&["--frames", "12"], "frames"),
        (&["--width", "100"], "width"),
        (&["--prompt", "   "], "prompt"),
        (
            &["--model-dir", missing.to_str().unwrap()],
            "does not exist",
        ),
        (
            &["--model-dir", corrupt.to_str().unwrap()],
            "diffusion_pytorch_model.safetensors: not a valid safetensors file",
        ),
        (&["--steps", "9"], "steps"),
        (
            &["--attention", "sagesla", "--sla-block-q", "32"],
            "--sla-block-q/--sla-block-k: SageSLA blocks are 64 x 128",
        ),
        // The tiny preset is not SLA-tuned.
        (&["--attention", "sagesla"], "proj_l"),
    ];
    for (extra, needle) in cases {
        let mut args = vec![
            "generate", "--prompt", "a cat", "--frames", "5", "--out", "x.mp4",
        ];
        args.extend_from_slice(extra);
        let out = turbine(&args, dir.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra:?} succeeded");
        assert!(stderr.contains(needle), "{extra:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{extra:?}: {stderr}");
    }
}

/// Whether this machine has a GPU the CUDA backend starts on.
fn gpu_present() -> bool {
    turbine_tensor::CudaBackend::new(0).is_ok()
}

#[test]
fn device_cuda_without_a_gpu_is_a_clear_error_and_auto_falls_back_to_the_cpu() {
    if gpu_present() {
        eprintln!("a GPU is present: the no-GPU behaviour cannot be observed here");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = [
        "generate", "--prompt", "a cat", "--width", "32", "--height", "32", "--frames", "5",
        "--out", "x.mp4",
    ];
    for (extra, needle) in [
        (
            &["--device", "cuda"][..],
            "--device cuda:0: the CUDA backend cannot start",
        ),
        (
            &["--device", "cuda:1"],
            "--device cuda:1: the CUDA backend cannot start",
        ),
        (
            &["--device", "gpu"],
            "expected auto, cpu, cuda or cuda:N, got `gpu`",
        ),
        (
            &["--device", "cpu", "--quant", "fp8"],
            "--quant fp8 needs a CUDA device",
        ),
        (&["--quant", "fp8"], "--quant fp8 needs a CUDA device"),
        (&["--quant", "int8"], "--quant int8 needs a CUDA device"),
    ] {
        let args: Vec<&str> = base.iter().copied().chain(extra.iter().copied()).collect();
        let out = turbine(&args, dir.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra:?} succeeded");
        assert!(stderr.contains(needle), "{extra:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{extra:?}: {stderr}");
        assert!(!dir.path().join("x.mp4").exists(), "{extra:?} wrote a file");
    }

    let out = turbine(&base, dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("device: cpu (--device auto: no usable GPU: "),
        "{stderr}"
    );
    assert!(std::fs::metadata(dir.path().join("x.mp4")).unwrap().len() > 0);
}
