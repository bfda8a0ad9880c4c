//! Frames as the VAE decodes them (f32, channel-first, [-1, 1]) and their 8-bit forms: interleaved
//! RGB for GIF/PNG and BT.709 YUV 4:2:0 for H.264.

use openh264::formats::YUVSource;

use crate::error::{Error, Result};

/// One value of a decoded frame: the VAE's f32 in [-1, 1], or the 8-bit code ([`to_u8`]) the
/// stage services send frames as. Every writer quantizes to the code first, so both kinds of
/// chunk with the same codes write the same bytes.
pub trait Sample: Copy + Send + Sync {
    /// The value's 8-bit code.
    fn code(self) -> u8;
}

impl Sample for f32 {
    fn code(self) -> u8 {
        to_u8(self)
    }
}

impl Sample for u8 {
    fn code(self) -> u8 {
        self
    }
}

/// A run of decoded frames in the VAE's output layout: `[3, frames, height, width]`, RGB, each
/// value a [`Sample`] (f32 in [-1, 1] by default). The VAE decodes a few frames at a time, so
/// writers take one chunk per push.
#[derive(Clone, Copy, Debug)]
pub struct FrameChunk<'a, S = f32> {
    data: &'a [S],
    frames: usize,
    height: usize,
    width: usize,
}

impl<'a, S: Sample> FrameChunk<'a, S> {
    /// Checks that `shape` is `[3, frames, height, width]` with nonzero sizes and that `data`
    /// holds exactly that many values.
    pub fn new(data: &'a [S], shape: [usize; 4]) -> Result<Self> {
        let [channels, frames, height, width] = shape;
        if channels != 3 || frames == 0 || height == 0 || width == 0 {
            return Err(Error::Shape { shape });
        }
        let expected = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if expected != Some(data.len()) {
            return Err(Error::ElementCount {
                len: data.len(),
                shape,
            });
        }
        Ok(Self {
            data,
            frames,
            height,
            width,
        })
    }

    pub fn num_frames(&self) -> usize {
        self.frames
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    /// Frame `index` of this chunk, or `None` past the end.
    pub fn frame(&self, index: usize) -> Option<Frame<'a, S>> {
        (index < self.frames).then(|| self.frame_at(index))
    }

    pub fn frames(&self) -> impl ExactSizeIterator<Item = Frame<'a, S>> + 'a {
        let chunk = *self;
        (0..self.frames).map(move |i| chunk.frame_at(i))
    }

    /// `index` must be below `self.frames`.
    fn frame_at(&self, index: usize) -> Frame<'a, S> {
        let plane = self.height * self.width;
        let channel = self.frames * plane;
        let data = self.data;
        let at = |c: usize| &data[c * channel + index * plane..][..plane];
        Frame {
            r: at(0),
            g: at(1),
            b: at(2),
            width: self.width,
            height: self.height,
        }
    }
}

/// One frame of a [`FrameChunk`]: three `height × width` planes.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a, S = f32> {
    r: &'a [S],
    g: &'a [S],
    b: &'a [S],
    width: usize,
    height: usize,
}

impl<S: Sample> Frame<'_, S> {
    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    /// Interleaved RGB8, row-major, `height · width · 3` bytes: `(x + 1) / 2 · 255`, rounded and
    /// clamped, NaN as 0.
    pub fn to_rgb8(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.r.len() * 3);
        for ((&r, &g), &b) in self.r.iter().zip(self.g).zip(self.b) {
            out.extend([r.code(), g.code(), b.code()]);
        }
        out
    }

    /// BT.709 limited-range YUV 4:2:0 of the frame's RGB8 codes ([`Frame::to_rgb8`]'s rounding).
    /// Quantizing first makes 8-bit RGB the one interchange form: frames that travelled as u8
    /// (the VAE service sends them so) encode to the same bytes as frames that did not. Chroma is
    /// the mean of each 2×2 block; the H.264 SPS written by [`crate::Mp4Writer`] signals the same
    /// BT.709 limited-range colour space.
    pub fn to_yuv420(&self) -> Result<Yuv420> {
        let (w, h) = (self.width, self.height);
        if !w.is_multiple_of(2) || !h.is_multiple_of(2) {
            return Err(Error::OddDimensions {
                width: w,
                height: h,
            });
        }
        // Each pixel's codes once, as the [0, 1] values the luma and chroma formulas take.
        let rgb: Vec<[f32; 3]> = (0..w * h)
            .map(|i| [unit(self.r[i]), unit(self.g[i]), unit(self.b[i])])
            .collect();
        let y = rgb.iter().map(|&p| luma_code(p)).collect();
        let (cw, ch) = (w / 2, h / 2);
        let mut u = Vec::with_capacity(cw * ch);
        let mut v = Vec::with_capacity(cw * ch);
        for cy in 0..ch {
            for cx in 0..cw {
                let top = 2 * cy * w + 2 * cx;
                let mut mean = [0.0f32; 3];
                for i in [top, top + 1, top + w, top + w + 1] {
                    for (m, x) in mean.iter_mut().zip(rgb[i]) {
                        *m += 0.25 * x;
                    }
                }
                let [cb, cr] = chroma_codes(mean);
                u.push(cb);
                v.push(cr);
            }
        }
        Ok(Yuv420 {
            width: w,
            height: h,
            y,
            u,
            v,
        })
    }
}

/// `round((x + 1) / 2 · 255)`, clamped to [0, 255], NaN as 0: the one quantization of decoded
/// frames, here before the colour conversion and in the stage services before frames travel as u8
/// (`turbine_pipeline::rgb`), so a video encodes to the same bytes whichever way its frames went.
/// `/ 2` is exact, so this is the one rounding of `(x + 1) · 127.5`. Inlined across crates, so
/// that a loop quantizing a frame vectorizes.
#[inline]
pub fn to_u8(x: f32) -> u8 {
    round_code((x + 1.0) * 127.5)
}

/// `v.round() as u8`: half away from zero, clamped to 0..=255, NaN to 0. Written out because
/// `f32::round` is a `roundf` call on x86-64's baseline target, and a frame takes six roundings a
/// pixel; without branches, so that loops over a frame vectorize (a 480p chunk's 4.8M values
/// 4× faster than with a branch per clamp). Exact: `v − trunc(v)` is exact for every f32 below
/// 2^23.
// Not `clamp`: it keeps NaN, which must become 0 (`max` returns 0 for it).
#[allow(clippy::manual_clamp)]
fn round_code(v: f32) -> u8 {
    let v = v.max(0.0).min(255.0);
    // SAFETY: `v` is finite and in [0, 255], so it truncates to an i32 exactly; the unchecked
    // conversion spares the saturating one's NaN and range fix-ups, which keep it from
    // vectorizing well.
    let t = unsafe { v.to_int_unchecked::<i32>() };
    (t + i32::from(v - t as f32 >= 0.5)) as u8
}

/// The [0, 1] value of `x`'s 8-bit code.
fn unit(x: impl Sample) -> f32 {
    UNIT[usize::from(x.code())]
}

/// `code / 255` for every 8-bit code.
static UNIT: [f32; 256] = {
    let mut t = [0.0f32; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i as f32 / 255.0;
        i += 1;
    }
    t
};

// BT.709 (ITU-R BT.709-6, item 3.2-3.3): Y' = 0.2126 R' + 0.7152 G' + 0.0722 B',
// Cb = (B' - Y') / 1.8556, Cr = (R' - Y') / 1.5748; 8-bit limited range puts Y' on 16..=235
// and Cb/Cr on 16..=240 centred at 128.
const KR: f32 = 0.2126;
const KB: f32 = 0.0722;
const KG: f32 = 1.0 - KR - KB;

fn luma(rgb: [f32; 3]) -> f32 {
    KR * rgb[0] + KG * rgb[1] + KB * rgb[2]
}

fn luma_code(rgb: [f32; 3]) -> u8 {
    round_code(16.0 + 219.0 * luma(rgb))
}

fn chroma_codes(rgb: [f32; 3]) -> [u8; 2] {
    let y = luma(rgb);
    let cb = (rgb[2] - y) / (2.0 * (1.0 - KB));
    let cr = (rgb[0] - y) / (2.0 * (1.0 - KR));
    [
        round_code(128.0 + 224.0 * cb),
        round_code(128.0 + 224.0 * cr),
    ]
}

/// A planar YUV 4:2:0 picture (I420) with even width and height and tightly packed planes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Yuv420 {
    width: usize,
    height: usize,
    y: Vec<u8>,
    u: Vec<u8>,
    v: Vec<u8>,
}

impl Yuv420 {
    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    /// `width × height` luma.
    pub fn y_plane(&self) -> &[u8] {
        &self.y
    }

    /// `width/2 × height/2` Cb.
    pub fn u_plane(&self) -> &[u8] {
        &self.u
    }

    /// `width/2 × height/2` Cr.
    pub fn v_plane(&self) -> &[u8] {
        &self.v
    }
}

impl YUVSource for Yuv420 {
    fn dimensions(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    fn strides(&self) -> (usize, usize, usize) {
        (self.width, self.width / 2, self.width / 2)
    }

    fn y(&self) -> &[u8] {
        &self.y
    }

    fn u(&self) -> &[u8] {
        &self.u
    }

    fn v(&self) -> &[u8] {
        &self.v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2×2 frame of one colour given in [0, 255] RGB.
    fn solid(rgb: [f32; 3]) -> Vec<f32> {
        rgb.iter().flat_map(|&c| [c / 127.5 - 1.0; 4]).collect()
    }

    /// The written-out rounding against `f32::round` on every f32 from −2 to 300 in steps of
    /// 2^-10 and around each half-way point, plus the special values.
    #[test]
    fn round_code_is_f32_round() {
        let reference = |v: f32| v.round() as u8;
        let mut values: Vec<f32> = (-2048..=300 * 1024).map(|i| i as f32 / 1024.0).collect();
        for k in 0..=256 {
            let half = k as f32 + 0.5;
            values.extend([half.next_down(), half, half.next_up()]);
        }
        values.extend([
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -0.0,
            0.49999997,
            1e30,
        ]);
        for v in values {
            assert_eq!(round_code(v), reference(v), "{v:e}");
        }
    }

    #[test]
    fn unit_table_is_code_over_255() {
        for code in 0..=255u8 {
            assert_eq!(UNIT[usize::from(code)], f32::from(code) / 255.0);
        }
    }

    #[test]
    fn rgb8_rounds_and_clamps() {
        let data = [-1.0, 1.0, 0.0, -2.0, 2.0, f32::NAN];
        let chunk = FrameChunk::new(&data, [3, 1, 1, 2]).unwrap();
        // Planes: R = [-1, 1], G = [0, -2], B = [2, NaN]; 0 → 127.5 rounds half away from zero.
        let rgb = chunk.frame(0).unwrap().to_rgb8();
        assert_eq!(rgb, [0, 128, 255, 255, 0, 0]);
    }

    #[test]
    fn frames_are_sliced_channel_first() {
        // [3, 2, 1, 1]: value = 10·channel + frame.
        let data = [0.0, 1.0, 10.0, 11.0, 20.0, 21.0].map(|v: f32| v / 127.5 - 1.0);
        let chunk = FrameChunk::new(&data, [3, 2, 1, 1]).unwrap();
        assert_eq!(chunk.frame(1).unwrap().to_rgb8(), [1, 11, 21]);
        assert!(chunk.frame(2).is_none());
        assert_eq!(chunk.frames().len(), 2);
    }

    #[test]
    fn bad_shapes_are_errors() {
        let data = [0.0f32; 12];
        assert!(matches!(
            FrameChunk::new(&data, [4, 1, 1, 3]),
            Err(Error::Shape { .. })
        ));
        assert!(matches!(
            FrameChunk::new(&data, [3, 0, 2, 2]),
            Err(Error::Shape { .. })
        ));
        assert!(matches!(
            FrameChunk::new(&data, [3, 2, 2, 2]),
            Err(Error::ElementCount { len: 12, .. })
        ));
        assert!(matches!(
            FrameChunk::new(&data, [3, usize::MAX, 2, 2]),
            Err(Error::ElementCount { .. })
        ));
        let odd = FrameChunk::new(&data, [3, 1, 1, 4]).unwrap();
        assert!(matches!(
            odd.frame(0).unwrap().to_yuv420(),
            Err(Error::OddDimensions {
                width: 4,
                height: 1
            })
        ));
    }

    #[test]
    fn yuv_matches_bt709_limited_range_codes() {
        // Reference codes: ITU-R BT.709-6 matrix, 8-bit limited range.
        for (rgb, yuv) in [
            ([0.0, 0.0, 0.0], [16, 128, 128]),
            ([255.0, 255.0, 255.0], [235, 128, 128]),
            ([255.0, 0.0, 0.0], [63, 102, 240]),
            ([0.0, 255.0, 0.0], [173, 42, 26]),
            ([0.0, 0.0, 255.0], [32, 240, 118]),
        ] {
            let data = solid(rgb);
            let chunk = FrameChunk::new(&data, [3, 1, 2, 2]).unwrap();
            let pic = chunk.frame(0).unwrap().to_yuv420().unwrap();
            assert_eq!(pic.y_plane(), [yuv[0]; 4], "{rgb:?}");
            assert_eq!(
                [pic.u_plane(), pic.v_plane()],
                [[yuv[1]], [yuv[2]]],
                "{rgb:?}"
            );
        }
    }

    #[test]
    fn yuv_sees_only_the_8bit_codes() {
        // Values between codes, beyond [-1, 1] and NaN: passing them through u8 first (as the
        // VAE service does) must not change a single YUV sample.
        let data: Vec<f32> = (0..3 * 4 * 6)
            .map(|i| match i % 7 {
                0 => f32::NAN,
                1 => 1.7,
                _ => ((i * 37) % 101) as f32 / 50.0 - 1.0 + 0.0013,
            })
            .collect();
        let through_u8: Vec<f32> = data
            .iter()
            .map(|&x| f32::from(to_u8(x)) / 127.5 - 1.0)
            .collect();
        let yuv = |d: &[f32]| {
            let chunk = FrameChunk::new(d, [3, 1, 4, 6]).unwrap();
            chunk.frame(0).unwrap().to_yuv420().unwrap()
        };
        assert_eq!(yuv(&data), yuv(&through_u8));
        assert_ne!(data, through_u8);
    }

    #[test]
    fn chroma_is_the_mean_of_each_2x2_block() {
        // One 2×2 block: two black and two white pixels average to mid grey, neutral chroma;
        // luma stays per pixel.
        let plane = [-1.0, 1.0, 1.0, -1.0];
        let data: Vec<f32> = plane.iter().cycle().take(12).copied().collect();
        let chunk = FrameChunk::new(&data, [3, 1, 2, 2]).unwrap();
        let pic = chunk.frame(0).unwrap().to_yuv420().unwrap();
        assert_eq!(pic.y_plane(), [16, 235, 235, 16]);
        assert_eq!([pic.u_plane(), pic.v_plane()], [[128], [128]]);
    }
}
