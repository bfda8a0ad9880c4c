//! Launcher for `kernels/seeded.cu`: seeded random weights generated in device memory, the same
//! values as the host generator ([`crate::seeded`]).

use cudarc::driver::DeviceRepr;

use super::device::Device;
use super::{CudaTensor, dt_code, kernels};
use crate::{DType, Error, Result, SeededValues};

#[repr(C)]
struct SeededArgs {
    out: u64,
    n: u64,
    key: u64,
    mean: f32,
    scale: f32,
    normal: i32,
    out_dt: i32,
}

// SAFETY: `#[repr(C)]` mirror of the kernel's parameter struct (device pointers and `u64` as u64,
// `float` as f32, `int` as i32).
unsafe impl DeviceRepr for SeededArgs {}

/// A new tensor of `shape` holding `values` as `dtype` (f32 or bf16; f32 holds the bf16 values
/// widened), allocated exactly: generated tensors are weights.
pub(super) fn generate(
    dev: &Device,
    values: &SeededValues,
    shape: &[usize],
    dtype: DType,
) -> Result<CudaTensor> {
    if !matches!(dtype, DType::F32 | DType::BF16) {
        return Err(Error::DType {
            op: "seeded",
            dtype,
        });
    }
    let n: usize = shape.iter().product();
    let out = CudaTensor::whole(shape, dtype, dev.alloc_exact(n, dtype)?);
    dev.launch_elements(
        kernels::SEEDED,
        n,
        &SeededArgs {
            out: out.ptr(),
            n: n as u64,
            key: values.key(),
            mean: values.mean(),
            scale: values.scale(),
            normal: i32::from(values.is_normal()),
            out_dt: dt_code(dtype),
        },
    )?;
    Ok(out)
}
