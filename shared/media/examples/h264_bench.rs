//! H.264 MP4 encoding throughput at Wan 2.1's 480p size, for the encoder options.
//!
//! ```sh
//! cargo run --release -p turbine-media --example h264_bench [-- NOISE [PACE_MS]]
//! ```
//!
//! Encodes 81 frames of 832×480 (a moving gradient under noise of ±NOISE, 0.25 by default: the
//! random-weight VAE's output is noise, H.264's worst case) pushed in chunks of 4 frames as the VAE
//! hands them over, with one encoder at a time and with one per core, and prints frames per second
//! from the first push to `finish` (the best of 3 runs), the file size and the luma PSNR of the
//! decoded file against the encoder's input. Then, with one encoder per core and chunks pushed at
//! the VAE's pace (one every PACE_MS, 50 by default), the time from the last push to `finish`
//! returning, with and without the clip's length declared (`Mp4Config::frames`).

use std::io::Cursor;
use std::num::NonZeroUsize;
use std::thread;
use std::time::{Duration, Instant};

use openh264::decoder::Decoder;
use openh264::formats::YUVSource;
use turbine_media::{FrameChunk, Mp4Config, Mp4Writer};

const W: usize = 832;
const H: usize = 480;
const FRAMES: usize = 81;
/// The Wan VAE decodes the first frame alone, then 4 frames per latent frame.
const CHUNK: usize = 4;
const RUNS: usize = 3;

fn main() {
    let noise = std::env::args()
        .nth(1)
        .map_or(0.25, |arg| arg.parse().expect("NOISE is a number"));
    // 12.5 ms a frame by default, about the H100 host's VAE at 480p.
    let pace = Duration::from_millis(std::env::args().nth(2).map_or(50, |arg| {
        arg.parse()
            .expect("PACE_MS is a whole number of milliseconds")
    }));
    let cores = thread::available_parallelism().unwrap();
    let chunks = clip(noise);
    let luma: Vec<Vec<u8>> = chunks
        .iter()
        .flat_map(|data| {
            let frames: Vec<_> = chunk(data).frames().collect();
            frames.into_iter().map(|f| f.to_yuv420().unwrap())
        })
        .map(|picture| picture.y_plane().to_vec())
        .collect();
    println!("{FRAMES} frames of {W}x{H}, chunks of {CHUNK}, noise ±{noise}, {cores} cores");
    println!("keyframe interval | threads | frames/s | seconds | bytes | luma PSNR (dB)");
    for (keyframe_interval, threads) in [
        (32, NonZeroUsize::MIN),
        (32, cores),
        (16, NonZeroUsize::MIN),
        (16, cores),
    ] {
        let config = Mp4Config {
            keyframe_interval,
            threads: Some(threads),
            ..Mp4Config::default()
        };
        let mut seconds = f64::INFINITY;
        let mut file = Vec::new();
        for _ in 0..RUNS {
            let start = Instant::now();
            let mut writer = Mp4Writer::new(Vec::new(), W, H, config).unwrap();
            for data in &chunks {
                writer.push(&chunk(data)).unwrap();
            }
            file = writer.finish_into_sink().unwrap().1;
            seconds = seconds.min(start.elapsed().as_secs_f64());
        }
        let db = luma_psnr(&decode_luma(&file), &luma);
        println!(
            "{keyframe_interval:>17} | {threads:>7} | {:>8.1} | {seconds:>7.3} | {:>7} | {db:.2}",
            FRAMES as f64 / seconds,
            file.len(),
        );
    }
    println!("\nchunks every {pace:?}, {cores} threads, keyframe interval 16");
    println!(
        "length declared | finish after last push (s, best of {RUNS}) | bytes | luma PSNR (dB)"
    );
    for frames in [None, Some(FRAMES as u64)] {
        let config = Mp4Config {
            threads: Some(cores),
            frames,
            ..Mp4Config::default()
        };
        let mut finish = f64::INFINITY;
        let mut file = Vec::new();
        for _ in 0..RUNS {
            let (seconds, bytes) = paced(&chunks, config, pace);
            finish = finish.min(seconds);
            file = bytes;
        }
        let db = luma_psnr(&decode_luma(&file), &luma);
        println!(
            "{:>15} | {finish:>41.3} | {:>7} | {db:.2}",
            frames.is_some(),
            file.len()
        );
    }
}

/// Pushes the chunks `pace` apart; seconds from the last push to `finish`, and the file.
fn paced(chunks: &[Vec<f32>], config: Mp4Config, pace: Duration) -> (f64, Vec<u8>) {
    let mut writer = Mp4Writer::new(Vec::new(), W, H, config).unwrap();
    let start = Instant::now();
    for (i, data) in chunks.iter().enumerate() {
        thread::sleep((start + pace * i as u32).saturating_duration_since(Instant::now()));
        writer.push(&chunk(data)).unwrap();
    }
    let last = Instant::now();
    let file = writer.finish_into_sink().unwrap().1;
    (last.elapsed().as_secs_f64(), file)
}

/// The clip as the VAE's chunks: a first frame alone, then `CHUNK` frames each.
fn clip(amplitude: f32) -> Vec<Vec<f32>> {
    let mut state = 0x2545_f491_u32;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state as f32 / u32::MAX as f32 * 2.0 - 1.0) * amplitude
    };
    let mut bounds = vec![0, 1];
    while *bounds.last().unwrap() < FRAMES {
        bounds.push((bounds.last().unwrap() + CHUNK).min(FRAMES));
    }
    bounds
        .windows(2)
        .map(|w| {
            let frames = w[0]..w[1];
            let mut data = Vec::with_capacity(3 * frames.len() * H * W);
            for c in 0..3 {
                for t in frames.clone() {
                    for y in 0..H {
                        for x in 0..W {
                            let phase = (x + 4 * t) as f32 / W as f32 + (c * y) as f32 / H as f32;
                            let base = (phase * std::f32::consts::TAU).sin() * 0.6;
                            data.push((base + noise()).clamp(-1.0, 1.0));
                        }
                    }
                }
            }
            data
        })
        .collect()
}

fn chunk(data: &[f32]) -> FrameChunk<'_> {
    FrameChunk::new(data, [3, data.len() / (3 * H * W), H, W]).unwrap()
}

/// Every sample of the MP4's one track through OpenH264's decoder, as luma planes.
fn decode_luma(file: &[u8]) -> Vec<Vec<u8>> {
    let mut mp4 = mp4::Mp4Reader::read_header(Cursor::new(file), file.len() as u64).unwrap();
    let (&id, track) = mp4.tracks().iter().next().unwrap();
    let mut annexb = Vec::new();
    for set in [
        track.sequence_parameter_set().unwrap(),
        track.picture_parameter_set().unwrap(),
    ] {
        annexb.extend([0, 0, 0, 1]);
        annexb.extend(set);
    }
    let mut decoder = Decoder::new().unwrap();
    let mut planes = Vec::new();
    for sample_id in 1..=track.sample_count() {
        let sample = mp4.read_sample(id, sample_id).unwrap().unwrap();
        let mut nals = &sample.bytes[..];
        while !nals.is_empty() {
            let len = u32::from_be_bytes(nals[..4].try_into().unwrap()) as usize;
            annexb.extend([0, 0, 0, 1]);
            annexb.extend(&nals[4..4 + len]);
            nals = &nals[4 + len..];
        }
        let picture = decoder.decode(&annexb).unwrap().unwrap();
        let stride = picture.strides().0;
        planes.push(
            picture
                .y()
                .chunks(stride)
                .take(H)
                .flat_map(|row| &row[..W])
                .copied()
                .collect(),
        );
        annexb.clear();
    }
    planes
}

/// PSNR over all frames' luma together.
fn luma_psnr(decoded: &[Vec<u8>], input: &[Vec<u8>]) -> f64 {
    assert_eq!(decoded.len(), input.len(), "every frame decodes");
    let (mut sse, mut count) = (0.0, 0usize);
    for (a, b) in decoded.iter().zip(input) {
        sse += a
            .iter()
            .zip(b)
            .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
            .sum::<f64>();
        count += a.len();
    }
    10.0 * (255.0 * 255.0 / (sse / count as f64).max(1e-10)).log10()
}
