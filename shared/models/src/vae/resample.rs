//! Upstream's `Resample`: 2× spatial down/upsampling per frame, optionally with 2× in time.

use turbine_tensor::{Backend, HostTensor};

use super::causal_conv::{CausalConv3d, Conv, FeatCache, dims};
use super::weights::Loader;
use crate::Result;

/// `downsample2d`: ZeroPad2d(right 1, bottom 1) + Conv2d(C, C, 3, stride 2) per frame.
/// `downsample3d` adds a time convolution (kernel 3, stride 2, no padding) over the newest frame
/// of the previous chunk + this chunk: the first chunk (one frame) passes through, a later chunk of
/// 4 frames becomes 2 (and 2 become 1).
pub(super) struct Downsample<B: Backend> {
    conv: Conv<B>,
    time: Option<(Conv<B>, usize)>,
}

impl<B: Backend> Downsample<B> {
    pub fn load(l: &mut Loader<B>, name: &str, c: usize, temporal: bool) -> Result<Self> {
        let conv = Conv::load(
            l,
            &format!("{name}.resample.1"),
            &[c, c, 3, 3],
            [1, 2, 2],
            [[0, 0], [0, 1], [0, 1]],
        )?;
        let time = if temporal {
            let time_conv = Conv::load(
                l,
                &format!("{name}.time_conv"),
                &[c, c, 3, 1, 1],
                [2, 1, 1],
                [[0; 2]; 3],
            )?;
            Some((time_conv, l.slot()))
        } else {
            None
        };
        Ok(Downsample { conv, time })
    }

    pub fn forward(&self, b: &B, x: &B::Tensor, cache: &mut FeatCache<B>) -> Result<B::Tensor> {
        let x = self.conv.forward(b, x)?;
        let Some((time_conv, slot)) = &self.time else {
            return Ok(x);
        };
        let n = dims(b, &x)?[0];
        let newest = b.slice(&x, 0, n - 1, 1)?;
        let y = match cache.take(*slot) {
            Some(past) => time_conv.forward(b, &b.concat(&[&past, &x], 0)?)?,
            None => x,
        };
        cache.put(*slot, newest);
        Ok(y)
    }
}

/// `upsample2d`: nearest 2× (upstream's `nearest-exact`, the same at factor 2) + Conv2d(C, C/2, 3,
/// pad 1) per frame. `upsample3d` first doubles time: a causal time convolution to 2C channels,
/// channels `[0, C)` becoming frame 2i and `[C, 2C)` frame 2i+1.
///
/// The upsampled frame repeats each pixel four times, so the 3×3 convolution of it reads only
/// 2×2 distinct pixels per output: it runs as one 2×2 convolution of the low-resolution frame to
/// the four output phases ([`phase_filter`]), 4/9 of the multiply-adds and no upsampled copy, and
/// [`Backend::interleave_phases`] puts each phase's pixels in place.
pub(super) struct Upsample<B: Backend> {
    time_conv: Option<CausalConv3d<B>>,
    conv: Conv<B>,
}

impl<B: Backend> Upsample<B> {
    pub fn load(l: &mut Loader<B>, name: &str, c: usize, temporal: bool) -> Result<Self> {
        let time_conv = if temporal {
            Some(CausalConv3d::load(
                l,
                &format!("{name}.time_conv"),
                [2 * c, c, 3, 1, 1],
            )?)
        } else {
            None
        };
        let (w, bias) = l.host_conv(&format!("{name}.resample.1"), &[c / 2, c, 3, 3])?;
        let (w, bias) = phase_filter(&w, &bias, [c / 2, c])?;
        let (w, bias) = l.upload_conv(&w, &bias)?;
        let conv = Conv::new(w, bias, [1; 3], [[0, 0], [1, 1], [1, 1]]);
        Ok(Upsample { time_conv, conv })
    }

    /// `first`: this is the first chunk of the video, whose single latent frame must stay one
    /// frame. Upstream skips the time convolution then and parks the marker `'Rep'` in its cache
    /// slot, so that the second chunk runs it on zero history; leaving the slot empty does exactly
    /// that.
    pub fn forward(
        &self,
        b: &B,
        x: &B::Tensor,
        cache: &mut FeatCache<B>,
        first: bool,
    ) -> Result<B::Tensor> {
        let x = match &self.time_conv {
            Some(time_conv) if !first => {
                let [t, h, w, c] = dims(b, x)?;
                let y = b.reshape(&time_conv.forward(b, x, cache)?, &[t, h, w, 2, c])?;
                let y = b.permute(&y, &[0, 3, 1, 2, 4])?;
                b.reshape(&y, &[2 * t, h, w, c])?
            }
            _ => x.clone(),
        };
        Ok(b.interleave_phases(&self.conv.forward(b, &x)?)?)
    }
}

/// Kernel rows (columns alike) that land on each of the two low-resolution rows an output phase
/// reads: output row 2y + a reads upsampled rows 2y + a − 1, 2y + a, 2y + a + 1, which repeat
/// low rows y − 1, y, y (a = 0) or y, y, y + 1 (a = 1) — the window at low rows y + a − 1 and
/// y + a of a 2×2 convolution padded by one.
const PHASE_TAPS: [[&[usize]; 2]; 2] = [[&[0], &[1, 2]], [&[0, 1], &[2]]];

/// A 3×3 filter `[Cout, Cin, 3, 3]` and its bias as the 2×2 filter `[4·Cout, Cin, 2, 2]` of the
/// four output phases, phase `(a, b)` in filters `[(2a + b)·Cout, (2a + b + 1)·Cout)`, each tap
/// the f32 sum of the 3×3 taps on its pixel.
fn phase_filter(
    w: &HostTensor,
    bias: &HostTensor,
    [cout, cin]: [usize; 2],
) -> Result<(HostTensor, HostTensor)> {
    let w = w.f32_elements();
    let mut phases = Vec::with_capacity(16 * cout * cin);
    for [a, b] in [[0, 0], [0, 1], [1, 0], [1, 1]] {
        for filter in w.chunks(9) {
            // Tap (i, j) of phase (a, b): the 3×3 taps in kernel rows PHASE_TAPS[a][i] and
            // columns PHASE_TAPS[b][j], summed a row at a time.
            for rows in PHASE_TAPS[a] {
                for cols in PHASE_TAPS[b] {
                    let row = |r: usize| cols.iter().map(|&s| filter[3 * r + s]).sum::<f32>();
                    phases.push(rows.iter().map(|&r| row(r)).sum());
                }
            }
        }
    }
    Ok((
        HostTensor::from_f32([4 * cout, cin, 2, 2], phases)?,
        HostTensor::from_f32([4 * cout], bias.f32_elements().repeat(4))?,
    ))
}

#[cfg(test)]
mod tests {
    use turbine_tensor::{Backend, CpuBackend, HostTensor};

    use super::phase_filter;

    fn wave(shape: &[usize], step: f32) -> HostTensor {
        let n = shape.iter().product();
        HostTensor::from_f32(shape, (0..n).map(|i| (i as f32 * step).sin()).collect()).unwrap()
    }

    /// `[F, H, W, C]` with each pixel repeated 2×2.
    fn upsample(x: &HostTensor) -> HostTensor {
        let &[f, h, w, c] = &x.shape[..] else {
            unreachable!()
        };
        let src = x.f32_elements();
        let mut out = Vec::with_capacity(4 * src.len());
        for t in 0..f {
            for y in 0..2 * h {
                for x in 0..2 * w {
                    out.extend_from_slice(&src[((t * h + y / 2) * w + x / 2) * c..][..c]);
                }
            }
        }
        HostTensor::from_f32([f, 2 * h, 2 * w, c], out).unwrap()
    }

    /// The four phases' 2×2 convolution, interleaved, equals the 3×3 convolution of the 2×
    /// nearest-upsampled frames, the borders included.
    #[test]
    fn phases_convolve_as_the_upsampled_frame() {
        let b = CpuBackend;
        let (cin, cout) = (6, 5);
        let (w, bias) = (wave(&[cout, cin, 3, 3], 0.37), wave(&[cout], 1.3));
        let x = wave(&[2, 3, 4, cin], 0.11);
        let filter = |w: &HostTensor, k: usize| {
            let w = b.reshape(&b.upload(w).unwrap(), &[w.shape[0], cin, 1, k, k]);
            b.permute(&w.unwrap(), &[0, 2, 3, 4, 1]).unwrap()
        };
        let pad = [[0, 0], [1, 1], [1, 1]];
        let want = b
            .conv3d(
                &b.upload(&upsample(&x)).unwrap(),
                &filter(&w, 3),
                Some(&b.upload(&bias).unwrap()),
                [1; 3],
                pad,
            )
            .unwrap();
        let (wp, bp) = phase_filter(&w, &bias, [cout, cin]).unwrap();
        let phases = b
            .conv3d(
                &b.upload(&x).unwrap(),
                &filter(&wp, 2),
                Some(&b.upload(&bp).unwrap()),
                [1; 3],
                pad,
            )
            .unwrap();
        assert_eq!(b.shape(&phases), [2, 4, 5, 4 * cout]);
        let got = b.interleave_phases(&phases).unwrap();
        assert_eq!(b.shape(&got), [2, 6, 8, cout]);
        let worst = got
            .data()
            .iter()
            .zip(want.data())
            .map(|(g, w)| (g - w).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-5, "{worst}");
    }
}
