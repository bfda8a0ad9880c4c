//! MP4 output read back by independent code: the `mp4` crate demuxes (not muxide, which wrote
//! it) and OpenH264's decoder decodes.

mod common;

use std::io::Cursor;
use std::num::NonZeroUsize;
use std::time::Duration;

use common::{chunk, frame_range, moving_square, psnr};
use openh264::decoder::Decoder;
use openh264::formats::YUVSource;
use turbine_media::{Error, FrameChunk, Mp4Config, Mp4Info, Mp4Writer, Sample, to_u8};

const W: usize = 64;
const H: usize = 48;
const N: usize = 17;

/// Encodes `data` (`N` frames of `W × H`) pushed in chunks of the given sizes.
fn encode<S: Sample>(data: &[S], chunk_sizes: &[usize], config: Mp4Config) -> (Mp4Info, Vec<u8>) {
    let frames = data.len() / (3 * W * H);
    assert_eq!(chunk_sizes.iter().sum::<usize>(), frames);
    let mut writer = Mp4Writer::new(Vec::new(), W, H, config).unwrap();
    let mut start = 0;
    for &len in chunk_sizes {
        let part = frame_range(data, frames, start, len);
        writer.push(&chunk(&part, H, W)).unwrap();
        start += len;
    }
    assert_eq!(writer.frames_written(), frames as u64);
    writer.finish_into_sink().unwrap()
}

struct Demuxed {
    width: u16,
    height: u16,
    timescale: u32,
    duration: Duration,
    frame_rate: f64,
    /// (start time, duration, is sync) per sample, in track timescale units.
    timing: Vec<(u64, u32, bool)>,
    /// The avcC box's SPS and PPS.
    parameter_sets: [Vec<u8>; 2],
    /// Each sample's NAL units.
    nals: Vec<Vec<Vec<u8>>>,
    /// Decoded pictures as interleaved RGB8 (BT.709 limited range inverted).
    rgb: Vec<Vec<u8>>,
}

impl Demuxed {
    /// The indices of the sync samples (IDR pictures).
    fn sync_samples(&self) -> Vec<usize> {
        self.timing
            .iter()
            .enumerate()
            .filter_map(|(i, &(_, _, sync))| sync.then_some(i))
            .collect()
    }

    /// Asserts that every decoded picture is above `min_db` of PSNR against `data`'s frame (RGB8).
    fn assert_psnr_above(&self, data: &[f32], frames: usize, min_db: f64) {
        for (i, decoded) in self.rgb.iter().enumerate() {
            let db = psnr(decoded, &input_rgb8(data, frames, i));
            assert!(db > min_db, "frame {i}: PSNR {db:.1} dB");
        }
    }
}

fn demux_and_decode(file: &[u8]) -> Demuxed {
    let mut mp4 = mp4::Mp4Reader::read_header(Cursor::new(file), file.len() as u64).unwrap();
    assert_eq!(mp4.tracks().len(), 1);
    let (&id, track) = mp4.tracks().iter().next().unwrap();
    assert_eq!(track.track_type().unwrap(), mp4::TrackType::Video);
    assert_eq!(track.media_type().unwrap(), mp4::MediaType::H264);
    // The avcC box carries SPS and PPS; samples are 4-byte length-prefixed NAL units.
    let parameter_sets = [
        track.sequence_parameter_set().unwrap().to_vec(),
        track.picture_parameter_set().unwrap().to_vec(),
    ];
    let mut annexb = Vec::new();
    for set in &parameter_sets {
        annexb.extend([0, 0, 0, 1]);
        annexb.extend(set);
    }
    let (width, height) = (track.width(), track.height());
    let (timescale, duration, frame_rate) =
        (track.timescale(), track.duration(), track.frame_rate());
    let mut decoder = Decoder::new().unwrap();
    let (mut timing, mut nals, mut rgb) = (Vec::new(), Vec::new(), Vec::new());
    for sample_id in 1..=track.sample_count() {
        let sample = mp4.read_sample(id, sample_id).unwrap().unwrap();
        timing.push((sample.start_time, sample.duration, sample.is_sync));
        let mut rest = &sample.bytes[..];
        let mut units = Vec::new();
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            annexb.extend([0, 0, 0, 1]);
            annexb.extend(&rest[4..4 + len]);
            units.push(rest[4..4 + len].to_vec());
            rest = &rest[4 + len..];
        }
        nals.push(units);
        if let Some(picture) = decoder.decode(&annexb).unwrap() {
            rgb.push(bt709_to_rgb8(&picture));
        }
        annexb.clear();
    }
    Demuxed {
        width,
        height,
        timescale,
        duration,
        frame_rate,
        timing,
        parameter_sets,
        nals,
        rgb,
    }
}

/// The inverse of the writer's BT.709 limited-range matrix, so decoded pictures compare with
/// the RGB8 the frames convert to. (OpenH264's own RGB output assumes BT.601.)
fn bt709_to_rgb8(picture: &impl YUVSource) -> Vec<u8> {
    let (w, h) = picture.dimensions();
    let (ys, us, vs) = picture.strides();
    let mut out = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            let luma = (f32::from(picture.y()[y * ys + x]) - 16.0) / 219.0;
            let cb = (f32::from(picture.u()[y / 2 * us + x / 2]) - 128.0) / 224.0;
            let cr = (f32::from(picture.v()[y / 2 * vs + x / 2]) - 128.0) / 224.0;
            let r = luma + 1.5748 * cr;
            let b = luma + 1.8556 * cb;
            let g = (luma - 0.2126 * r - 0.0722 * b) / 0.7152;
            out.extend([r, g, b].map(|c| (c * 255.0).round().clamp(0.0, 255.0) as u8));
        }
    }
    out
}

fn input_rgb8(data: &[f32], frames: usize, index: usize) -> Vec<u8> {
    let chunk = FrameChunk::new(data, [3, frames, H, W]).unwrap();
    chunk.frame(index).unwrap().to_rgb8()
}

#[test]
fn frames_that_travelled_as_u8_encode_to_the_same_bytes() {
    // Off-grid values: the moving square plus a ramp that lands between 8-bit codes.
    let data: Vec<f32> = moving_square(N, H, W)
        .iter()
        .enumerate()
        .map(|(i, v)| (v + (i % 13) as f32 * 0.0007).clamp(-1.2, 1.2))
        .collect();
    // The stage services' round trip: `round((x + 1) / 2 · 255)` on the wire, `v / 127.5 − 1` back.
    let through_u8: Vec<f32> = data
        .iter()
        .map(|&x| f32::from(((x + 1.0) * 127.5).round() as u8) / 127.5 - 1.0)
        .collect();
    assert_ne!(data, through_u8);
    let (_, direct) = encode(&data, &[1, 4, 4, 4, 4], Mp4Config::default());
    let (_, via_u8) = encode(&through_u8, &[1, 4, 4, 4, 4], Mp4Config::default());
    assert!(direct == via_u8, "the MP4 bytes differ");
    // The codes themselves, as the orchestrator pushes the VAE service's frames.
    let codes: Vec<u8> = data.iter().map(|&x| to_u8(x)).collect();
    let (_, as_codes) = encode(&codes, &[1, 4, 4, 4, 4], Mp4Config::default());
    assert!(direct == as_codes, "the MP4 bytes of u8 chunks differ");
}

#[test]
fn independent_demuxer_and_decoder_read_the_clip_back() {
    let data = moving_square(N, H, W);
    let (info, file) = encode(&data, &[N], Mp4Config::default());

    let tick = 90_000 / 16;
    assert_eq!(
        info,
        Mp4Info {
            frames: N as u64,
            width: W,
            height: H,
            fps: 16.0,
            duration: Duration::from_millis(1062) + Duration::from_micros(500),
            bytes: file.len() as u64,
        }
    );

    let clip = demux_and_decode(&file);
    assert_eq!((clip.width, clip.height), (W as u16, H as u16));
    assert_eq!(clip.timescale, 90_000);
    assert_eq!(clip.duration, info.duration);
    assert_eq!(clip.frame_rate, 16.0);
    assert_eq!(clip.timing.len(), N);
    for (i, &(start, duration, sync)) in clip.timing.iter().enumerate() {
        assert_eq!(
            (start, duration),
            (i as u64 * tick, tick as u32),
            "sample {i}"
        );
        // The default keyframe interval (16) makes frames 0 and 16 seek points.
        assert_eq!(sync, i % 16 == 0, "sample {i}");
    }

    assert_eq!(clip.rgb.len(), N, "every sample decodes to a picture");
    for index in [0, N / 2, N - 1] {
        let db = psnr(&clip.rgb[index], &input_rgb8(&data, N, index));
        assert!(db > 30.0, "frame {index}: PSNR {db:.1} dB");
    }
}

#[test]
fn keyframe_interval_marks_sync_samples() {
    let data = moving_square(N, H, W);
    let config = Mp4Config {
        keyframe_interval: 8,
        ..Mp4Config::default()
    };
    let (_, file) = encode(&data, &[N], config);
    assert_eq!(demux_and_decode(&file).sync_samples(), [0, 8, 16]);
}

#[test]
fn chunking_does_not_change_the_file() {
    let data = moving_square(N, H, W);
    let (_, whole) = encode(&data, &[N], Mp4Config::default());
    for sizes in [&[1, 4, 4, 4, 4][..], &[5, 12], &[1; N]] {
        let (_, chunked) = encode(&data, sizes, Mp4Config::default());
        assert!(chunked == whole, "chunks {sizes:?} changed the file");
    }
}

#[test]
fn fps_sets_the_timing() {
    let data = moving_square(N, H, W);
    let config = Mp4Config {
        fps: 24.0,
        ..Mp4Config::default()
    };
    let (info, file) = encode(&data, &[N], config);
    let clip = demux_and_decode(&file);
    let tick = 90_000 / 24;
    assert!(clip.timing.iter().all(|&(_, duration, _)| duration == tick));
    assert_eq!(clip.timing[N - 1].0, (N as u64 - 1) * u64::from(tick));
    assert_eq!(clip.duration.as_micros(), 708_333, "17 frames / 24 fps");
    assert_eq!(info.duration.as_micros(), 708_333);
}

#[test]
fn bitrate_target_sets_the_size() {
    // Noise does not compress, so the rate controller, not the content, sets the size.
    let mut state = 1u32;
    let data: Vec<f32> = (0..3 * N * H * W)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            0.2 * ((state >> 8) as f32 / (1 << 23) as f32 - 1.0)
        })
        .collect();
    for bps in [50_000, 190_000] {
        let config = Mp4Config {
            bitrate_bps: Some(bps),
            ..Mp4Config::default()
        };
        let info = encode(&data, &[N], config).0;
        let ratio = info.bytes as f64 * 8.0 / info.duration.as_secs_f64() / f64::from(bps);
        assert!(
            (0.7..1.3).contains(&ratio),
            "{bps} bit/s: {ratio:.2}× the target"
        );
    }
}

#[test]
fn single_frame_and_smallest_size_encode() {
    let data = moving_square(1, 16, 16);
    let mut writer = Mp4Writer::new(Vec::new(), 16, 16, Mp4Config::default()).unwrap();
    writer.push(&chunk(&data, 16, 16)).unwrap();
    let (info, file) = writer.finish_into_sink().unwrap();
    assert_eq!(info.frames, 1);
    assert_eq!(info.duration, Duration::from_micros(62_500));
    let mp4 = mp4::Mp4Reader::read_header(Cursor::new(&file), file.len() as u64).unwrap();
    assert_eq!(mp4.sample_count(1).unwrap(), 1);
    // muxide has no next frame to take a duration from and writes one 90 kHz tick.
    assert_eq!(mp4.tracks()[&1].duration(), Duration::from_micros(11));
}

#[test]
fn create_writes_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    let data = moving_square(N, H, W);
    let mut writer = Mp4Writer::create(&path, W, H, Mp4Config::default()).unwrap();
    writer.push(&chunk(&data, H, W)).unwrap();
    let info = writer.finish().unwrap();
    let file = std::fs::read(&path).unwrap();
    assert_eq!(file.len() as u64, info.bytes);
    assert_eq!(demux_and_decode(&file).rgb.len(), N);
}

#[test]
fn bad_input_is_an_error() {
    let new = |w, h, config| Mp4Writer::new(Vec::new(), w, h, config).map(|_| ());
    let fps = |fps| Mp4Config {
        fps,
        ..Mp4Config::default()
    };
    let default = Mp4Config::default();
    assert!(matches!(
        new(65, 48, default),
        Err(Error::OddDimensions { .. })
    ));
    for (w, h) in [(14, 64), (64, 8), (4096, 64), (2176, 2176)] {
        assert!(
            matches!(new(w, h, default), Err(Error::UnsupportedSize { .. })),
            "{w}x{h}"
        );
    }
    for bad in [0.0, 0.5, 61.0, f64::NAN] {
        assert!(matches!(
            new(W, H, fps(bad)),
            Err(Error::InvalidParameter { name: "fps", .. })
        ));
    }
    // 4 bits per pixel per frame at 64×48, 16 fps is 196,608 bit/s.
    for bps in [0, 196_609] {
        let bitrate = Mp4Config {
            bitrate_bps: Some(bps),
            ..default
        };
        assert!(matches!(
            new(W, H, bitrate),
            Err(Error::InvalidParameter {
                name: "bitrate_bps",
                ..
            })
        ));
    }
    assert!(
        new(
            W,
            H,
            Mp4Config {
                bitrate_bps: Some(196_608),
                ..default
            }
        )
        .is_ok()
    );

    let writer = Mp4Writer::new(Vec::new(), W, H, default).unwrap();
    assert!(matches!(writer.finish(), Err(Error::NoFrames)));

    let mut writer = Mp4Writer::new(Vec::new(), W, H, default).unwrap();
    let other = moving_square(2, 32, 32);
    assert!(matches!(
        writer.push(&chunk(&other, 32, 32)),
        Err(Error::SizeMismatch {
            got_width: 32,
            got_height: 32,
            ..
        })
    ));
}

/// Frames of the segmented clip: six segments of 8 frames and one of 2.
const SEGMENTED: usize = 50;

/// The segmented clip's frames as the VAE hands them over: the first alone, then 4 at a time.
fn vae_chunks() -> Vec<usize> {
    [1].into_iter().chain([4; 12]).chain([1]).collect()
}

/// Seek points every 8 frames, `threads` of them encoded at once.
fn segmented(threads: usize) -> Mp4Config {
    Mp4Config {
        keyframe_interval: 8,
        threads: NonZeroUsize::new(threads),
        ..Mp4Config::default()
    }
}

/// The moving square under seeded noise of ±0.05, so that every frame costs bits.
fn noisy_square(frames: usize) -> Vec<f32> {
    let mut state = 0x9e37_79b9_u32;
    moving_square(frames, H, W)
        .iter()
        .map(|&v| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (v + 0.05 * ((state >> 8) as f32 / (1 << 23) as f32 - 1.0)).clamp(-1.0, 1.0)
        })
        .collect()
}

#[test]
fn segments_encoded_apart_decode_as_one_stream() {
    let data = noisy_square(SEGMENTED);
    let (info, file) = encode(&data, &vae_chunks(), segmented(3));
    assert_eq!(info.frames, SEGMENTED as u64);

    let clip = demux_and_decode(&file);
    let tick = 90_000 / 16;
    assert_eq!(clip.timing.len(), SEGMENTED);
    for (i, &(start, duration, sync)) in clip.timing.iter().enumerate() {
        assert_eq!(
            (start, duration, sync),
            (i as u64 * tick, tick as u32, i % 8 == 0),
            "sample {i}"
        );
    }
    assert_eq!(
        clip.rgb.len(),
        SEGMENTED,
        "every sample decodes to a picture"
    );
    // 26.7 to 36.0 dB at the 200 kbit/s floor; the P pictures that carry the moving square get
    // the fewest bits.
    clip.assert_psnr_above(&data, SEGMENTED, 25.0);

    // Each segment's IDR picture repeats the avcC's SPS and PPS in band; no other sample has any.
    let [sps, pps] = &clip.parameter_sets;
    for (i, nals) in clip.nals.iter().enumerate() {
        let types: Vec<u8> = nals.iter().map(|nal| nal[0] & 0x1f).collect();
        if i % 8 == 0 {
            assert_eq!(types, [7, 8, 5], "sample {i}");
            assert!(nals[0] == *sps && nals[1] == *pps, "sample {i}");
        } else {
            assert_eq!(types, [1], "sample {i}");
        }
    }
    // The segments' encoders number their IDR pictures alike (the first 1, the others 2, after
    // their warm-up's). Two IDR pictures in a row would break H.264 7.4.3, which is why a
    // segment's only IDR picture is its first and only the last segment may be one frame long.
    let log2_max_frame_num = log2_max_frame_num(sps);
    let ids: Vec<u32> = clip
        .nals
        .iter()
        .step_by(8)
        .map(|nals| idr_pic_id(&nals[2], log2_max_frame_num))
        .collect();
    assert_eq!(ids, [1, 2, 2, 2, 2, 2, 2], "idr_pic_id");
}

#[test]
fn thread_count_does_not_change_the_file() {
    let data = noisy_square(SEGMENTED);
    let (_, one) = encode(&data, &[SEGMENTED], segmented(1));
    for threads in [2, 7] {
        let (_, many) = encode(&data, &[SEGMENTED], segmented(threads));
        assert!(many == one, "{threads} threads changed the file");
    }
}

#[test]
fn a_declared_length_cuts_the_last_stretch_shorter() {
    let data = noisy_square(SEGMENTED);
    let known = Mp4Config {
        frames: Some(SEGMENTED as u64),
        ..segmented(3)
    };
    let (info, file) = encode(&data, &vae_chunks(), known);
    assert_eq!(info.frames, SEGMENTED as u64);
    let clip = demux_and_decode(&file);
    assert_eq!(
        clip.rgb.len(),
        SEGMENTED,
        "every sample decodes to a picture"
    );
    // Seek points every 8 frames up to frame 40, then the last 10 frames as 5, 3, 2 (the regular
    // cuts would have left 8 and 2).
    assert_eq!(clip.sync_samples(), [0, 8, 16, 24, 32, 40, 45, 48]);
    clip.assert_psnr_above(&data, SEGMENTED, 25.0);
    // As with regular cuts, the file does not depend on the encoder threads.
    for threads in [1, 7] {
        let config = Mp4Config {
            threads: NonZeroUsize::new(threads),
            ..known
        };
        assert!(
            encode(&data, &[SEGMENTED], config).1 == file,
            "{threads} threads"
        );
    }

    // A clip that stops early is still a valid file; one frame too many is refused.
    let part = frame_range(&data, SEGMENTED, 0, 20);
    let (info, file) = {
        let mut writer = Mp4Writer::new(Vec::new(), W, H, known).unwrap();
        writer.push(&chunk(&part, H, W)).unwrap();
        writer.finish_into_sink().unwrap()
    };
    assert_eq!(info.frames, 20);
    assert_eq!(demux_and_decode(&file).rgb.len(), 20);
    let short = Mp4Config {
        frames: Some(19),
        ..known
    };
    let mut writer = Mp4Writer::new(Vec::new(), W, H, short).unwrap();
    let error = writer.push(&chunk(&part, H, W)).unwrap_err();
    assert!(
        matches!(error, Error::TooManyFrames { declared: 19 }),
        "{error}"
    );
}

#[test]
fn keyframe_intervals_below_two_keep_one_encoder() {
    let data = noisy_square(N);
    let every_frame = Mp4Config {
        keyframe_interval: 1,
        ..Mp4Config::default()
    };
    let clip = demux_and_decode(&encode(&data, &[N], every_frame).1);
    assert_eq!(clip.rgb.len(), N);
    assert!(clip.timing.iter().all(|&(_, _, sync)| sync));
    // H.264 7.4.3: IDR pictures in a row differ in idr_pic_id, which one encoder counts up.
    let log2_max_frame_num = log2_max_frame_num(&clip.parameter_sets[0]);
    let ids: Vec<u32> = clip
        .nals
        .iter()
        .map(|nals| idr_pic_id(nals.last().unwrap(), log2_max_frame_num))
        .collect();
    assert!(
        ids.windows(2).all(|pair| pair[0] != pair[1]),
        "idr_pic_id {ids:?}"
    );

    let first_only = Mp4Config {
        keyframe_interval: 0,
        ..Mp4Config::default()
    };
    let clip = demux_and_decode(&encode(&data, &[N], first_only).1);
    assert_eq!(clip.rgb.len(), N);
    assert_eq!(clip.sync_samples(), [0]);
}

#[test]
fn a_writer_dropped_unfinished_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    let data = noisy_square(N);
    let config = Mp4Config {
        keyframe_interval: 4,
        ..Mp4Config::default()
    };
    let mut writer = Mp4Writer::create(&path, W, H, config).unwrap();
    writer.push(&chunk(&data, H, W)).unwrap();
    drop(writer);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
}

#[test]
fn writer_can_move_to_an_encoding_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<Mp4Writer<std::io::BufWriter<std::fs::File>>>();
}

/// Reads an RBSP: a NAL unit after its header byte, emulation prevention bytes removed.
struct Bits {
    rbsp: Vec<u8>,
    pos: usize,
}

impl Bits {
    fn new(nal: &[u8]) -> Self {
        let (mut rbsp, mut zeros) = (Vec::new(), 0);
        for &byte in &nal[1..] {
            if zeros >= 2 && byte == 3 {
                zeros = 0;
                continue;
            }
            zeros = if byte == 0 { zeros + 1 } else { 0 };
            rbsp.push(byte);
        }
        Self { rbsp, pos: 0 }
    }

    fn bits(&mut self, n: u32) -> u32 {
        (0..n).fold(0, |acc, _| {
            let bit = (self.rbsp[self.pos / 8] >> (7 - self.pos % 8)) & 1;
            self.pos += 1;
            acc << 1 | u32::from(bit)
        })
    }

    /// Exp-Golomb `ue(v)`.
    fn ue(&mut self) -> u32 {
        let mut zeros = 0;
        while self.bits(1) == 0 {
            zeros += 1;
        }
        (1 << zeros) - 1 + self.bits(zeros)
    }
}

/// The frame_num width a slice header uses, from a Baseline SPS of frame macroblocks only (so
/// that no field flag sits between frame_num and idr_pic_id).
fn log2_max_frame_num(sps: &[u8]) -> u32 {
    let mut bits = Bits::new(sps);
    assert_eq!(bits.bits(8), 66, "profile_idc: Baseline");
    bits.bits(16); // constraint flags, reserved zero bits, level_idc
    bits.ue(); // seq_parameter_set_id
    let log2_max_frame_num = bits.ue() + 4;
    match bits.ue() {
        0 => drop(bits.ue()), // log2_max_pic_order_cnt_lsb_minus4
        2 => {}
        other => panic!("pic_order_cnt_type {other}"),
    }
    bits.ue(); // max_num_ref_frames
    bits.bits(1); // gaps_in_frame_num_value_allowed_flag
    bits.ue(); // pic_width_in_mbs_minus1
    bits.ue(); // pic_height_in_map_units_minus1
    assert_eq!(bits.bits(1), 1, "frame_mbs_only_flag");
    log2_max_frame_num
}

/// `idr_pic_id` of an IDR slice (NAL unit type 5).
fn idr_pic_id(slice: &[u8], log2_max_frame_num: u32) -> u32 {
    assert_eq!(slice[0] & 0x1f, 5, "an IDR slice");
    let mut bits = Bits::new(slice);
    bits.ue(); // first_mb_in_slice
    bits.ue(); // slice_type
    bits.ue(); // pic_parameter_set_id
    bits.bits(log2_max_frame_num); // frame_num
    bits.ue()
}
