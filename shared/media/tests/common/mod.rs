//! Synthetic clips shared by the integration tests.

use turbine_media::{FrameChunk, Sample};

/// `[3, frames, height, width]` in [-1, 1]: red ramps left to right, green top to bottom, blue
/// with time, and a 12×12 yellow square moves 3 px right and 1 px down per frame, so every frame
/// differs and motion is tracked.
pub fn moving_square(frames: usize, height: usize, width: usize) -> Vec<f32> {
    let mut data = vec![0.0; 3 * frames * height * width];
    for c in 0..3 {
        for t in 0..frames {
            for y in 0..height {
                for x in 0..width {
                    let inside = (3 * t..3 * t + 12).contains(&x) && (t..t + 12).contains(&y);
                    let v = match (inside, c) {
                        (true, 2) => -0.9,
                        (true, _) => 0.9,
                        (false, 0) => x as f32 / width as f32 * 1.6 - 0.8,
                        (false, 1) => y as f32 / height as f32 * 1.6 - 0.8,
                        (false, _) => t as f32 / frames as f32 - 0.5,
                    };
                    data[((c * frames + t) * height + y) * width + x] = v;
                }
            }
        }
    }
    data
}

/// Frames `start..start + len` of a `[3, frames, height, width]` clip, as their own chunk data.
pub fn frame_range<T: Copy>(data: &[T], frames: usize, start: usize, len: usize) -> Vec<T> {
    let per_channel = data.len() / 3;
    let plane = per_channel / frames;
    (0..3)
        .flat_map(|c| &data[c * per_channel + start * plane..][..len * plane])
        .copied()
        .collect()
}

pub fn chunk<S: Sample>(data: &[S], height: usize, width: usize) -> FrameChunk<'_, S> {
    let frames = data.len() / (3 * height * width);
    FrameChunk::new(data, [3, frames, height, width]).unwrap()
}

/// Peak signal-to-noise ratio of two 8-bit images, in dB.
pub fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let sse: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum();
    let mse = sse / a.len() as f64;
    10.0 * (255.0 * 255.0 / mse.max(1e-10)).log10()
}
