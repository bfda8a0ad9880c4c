//! 8-bit video: the one quantization of decoded frames ([`to_u8`], turbine-media's, which it
//! also applies before its colour conversion). Frames leave the VAE as f32 in [−1, 1]; stage
//! services ship them as u8, so a video encodes to the same bytes whichever way its frames
//! travelled.

pub use turbine_media::to_u8;
use turbine_tensor::{HostData, HostTensor};

use crate::{Error, Result};

/// The inverse of [`to_u8`] on its codes: `v / 127.5 − 1`, which [`to_u8`] maps back to `v`.
pub fn from_u8(v: u8) -> f32 {
    f32::from(v) / 127.5 - 1.0
}

/// Frames `[3, n, H, W]` in [−1, 1] as u8 RGB planes of the same layout.
pub fn quantize_frames(frames: &HostTensor) -> Result<Vec<u8>> {
    match &frames.data {
        HostData::F32(v) => Ok(v.iter().copied().map(to_u8).collect()),
        HostData::BF16(_) | HostData::F16(_) | HostData::I8(_) => Err(Error::invalid(
            "frames",
            format!("dtype {} must be f32", frames.dtype()),
        )),
    }
}

/// u8 RGB planes back to f32 in [−1, 1] (the input of the VAE encoder).
pub fn dequantize_frames(shape: &[usize], data: &[u8]) -> Result<HostTensor> {
    Ok(HostTensor::from_f32(
        shape,
        data.iter().copied().map(from_u8).collect(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_extremes_clamp() {
        for v in 0..=255u8 {
            assert_eq!(to_u8(from_u8(v)), v);
        }
        assert_eq!(
            [-1.0, 1.0, 0.0, -2.0, 2.0, f32::NAN].map(to_u8),
            [0, 255, 128, 0, 255, 0]
        );
    }
}
