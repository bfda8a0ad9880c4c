//! GIF and PNG outputs read back with the `gif` and `png` decoders.

mod common;

use std::io::Cursor;

use common::{chunk, frame_range, moving_square, psnr};
use turbine_media::{Error, FrameChunk, GifConfig, GifWriter, PngFrameDump, write_png};

const W: usize = 64;
const H: usize = 48;
const N: usize = 17;

/// Decodes a GIF into (width, height, repeat, per-frame (delay, RGB8)).
fn decode_gif(file: &[u8]) -> (u16, u16, gif::Repeat, Vec<(u16, Vec<u8>)>) {
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::RGBA);
    let mut decoder = options.read_info(file).unwrap();
    let mut frames = Vec::new();
    while let Some(frame) = decoder.read_next_frame().unwrap() {
        let rgb = frame
            .buffer
            .chunks_exact(4)
            .flat_map(|px| [px[0], px[1], px[2]])
            .collect();
        frames.push((frame.delay, rgb));
    }
    (decoder.width(), decoder.height(), decoder.repeat(), frames)
}

fn decode_png(file: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut reader = png::Decoder::new(Cursor::new(file)).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(
        (info.color_type, info.bit_depth),
        (png::ColorType::Rgb, png::BitDepth::Eight)
    );
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

#[test]
fn gif_round_trip() {
    let data = moving_square(N, H, W);
    let mut writer = GifWriter::new(Vec::new(), W, H, GifConfig::default()).unwrap();
    for (start, len) in [(0, 5), (5, 12)] {
        writer
            .push(&chunk(&frame_range(&data, N, start, len), H, W))
            .unwrap();
    }
    assert_eq!(writer.frames_written(), N as u64);
    let file = writer.finish().unwrap();

    let (width, height, repeat, frames) = decode_gif(&file);
    assert_eq!((width, height), (W as u16, H as u16));
    assert_eq!(repeat, gif::Repeat::Infinite);
    assert_eq!(frames.len(), N);
    let total: u32 = frames.iter().map(|&(delay, _)| u32::from(delay)).sum();
    assert_eq!(total, 106, "17 frames at 16 fps last 1.0625 s");
    // One 256-colour palette per frame: on this two-axis gradient NeuQuant at the default speed
    // reaches 27-30 dB (34 dB at speed 1).
    let input = chunk(&data, H, W);
    for (index, (_, rgb)) in frames.iter().enumerate() {
        let db = psnr(rgb, &input.frame(index).unwrap().to_rgb8());
        assert!(db > 25.0, "frame {index}: PSNR {db:.1} dB");
    }
}

#[test]
fn gif_downscales() {
    let data = moving_square(3, H, W);
    let config = GifConfig {
        downscale: 4,
        ..GifConfig::default()
    };
    let mut writer = GifWriter::new(Vec::new(), W, H, config).unwrap();
    writer.push(&chunk(&data, H, W)).unwrap();
    let (width, height, _, frames) = decode_gif(&writer.finish().unwrap());
    assert_eq!((width, height), (16, 12));
    assert_eq!(frames.len(), 3);
    assert!(frames.iter().all(|(_, rgb)| rgb.len() == 16 * 12 * 3));
}

#[test]
fn gif_rejects_bad_input() {
    let writer = GifWriter::new(Vec::new(), W, H, GifConfig::default()).unwrap();
    assert!(matches!(writer.finish(), Err(Error::NoFrames)));
    let mut writer = GifWriter::new(Vec::new(), W, H, GifConfig::default()).unwrap();
    let other = moving_square(1, 32, 32);
    assert!(matches!(
        writer.push(&chunk(&other, 32, 32)),
        Err(Error::SizeMismatch { .. })
    ));
}

#[test]
fn png_round_trip_is_exact() {
    let data = moving_square(1, H, W);
    let frame = FrameChunk::new(&data, [3, 1, H, W])
        .unwrap()
        .frame(0)
        .unwrap();
    let mut file = Vec::new();
    write_png(&mut file, &frame).unwrap();
    assert_eq!(decode_png(&file), (W as u32, H as u32, frame.to_rgb8()));
}

#[test]
fn png_dump_numbers_frames_across_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let data = moving_square(N, H, W);
    let mut dump = PngFrameDump::create(dir.path().join("frames")).unwrap();
    for (start, len) in [(0, 4), (4, 13)] {
        dump.push(&chunk(&frame_range(&data, N, start, len), H, W))
            .unwrap();
    }
    assert_eq!(dump.frames_written(), N);
    let mut names: Vec<String> = std::fs::read_dir(dump.dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), N);
    assert_eq!(
        (&*names[0], &*names[N - 1]),
        ("frame_00000.png", "frame_00016.png")
    );

    let input = chunk(&data, H, W);
    for index in [0, 4, N - 1] {
        let (_, _, rgb) = decode_png(&std::fs::read(dump.frame_path(index)).unwrap());
        assert!(
            rgb == input.frame(index).unwrap().to_rgb8(),
            "frame {index}"
        );
    }
}
