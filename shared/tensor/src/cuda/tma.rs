//! TMA tensor maps: the descriptors with which a Hopper kernel has the copy engine load a box of a
//! tensor into shared memory (`tma_load_3d` in kernels/wgmma.cuh), encoded on the host per launch.

use cudarc::driver::sys::{
    self, CUresult, CUtensorMapDataType, CUtensorMapFloatOOBfill, CUtensorMapInterleave,
    CUtensorMapL2promotion, CUtensorMapSwizzle,
};

use crate::{Error, Result};

/// A `CUtensorMap` as a kernel parameter struct holds it (`TensorMap` in kernels/flash.cu):
/// 128 opaque bytes, 64-byte aligned.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub(super) struct TensorMap([u64; 16]);

impl TensorMap {
    /// The map of a launch whose kernel does not load by TMA.
    pub(super) const UNUSED: Self = Self([0; 16]);

    /// bf16 `[rows, heads, dh]` at `ptr` (contiguous) in boxes of `box_rows` rows of one head
    /// and 64 channels (128 bytes), each box row landing 128 bytes after the last with the
    /// 128-byte swizzle (16-byte chunk c of row r at chunk c ^ (r % 8), for a 1024-byte aligned
    /// box); rows past the tensor's end arrive as zeros.
    pub(super) fn bf16_rows(
        op: &'static str,
        ptr: u64,
        rows: usize,
        heads: usize,
        dh: usize,
        box_rows: u32,
    ) -> Result<Self> {
        const ELEM: u64 = 2;
        let dims = [dh as u64, heads as u64, rows as u64];
        // Bytes between consecutive heads, then rows (the innermost stride is the element's).
        let strides = [dh as u64 * ELEM, (heads * dh) as u64 * ELEM];
        let boxes = [64u32, 1, box_rows];
        let steps = [1u32; 3];
        let mut map = std::mem::MaybeUninit::<sys::CUtensorMap>::uninit();
        // SAFETY: every array holds `rank` (3) entries, strides `rank − 1`; `map` is written by
        // the call before it is read, and only when it succeeds.
        let result = unsafe {
            sys::cuTensorMapEncodeTiled(
                map.as_mut_ptr(),
                CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
                3,
                ptr as *mut std::ffi::c_void,
                dims.as_ptr(),
                strides.as_ptr(),
                boxes.as_ptr(),
                steps.as_ptr(),
                CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
                CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_128B,
                CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
            )
        };
        if result != CUresult::CUDA_SUCCESS {
            return Err(Error::Backend {
                backend: "cuda",
                msg: format!(
                    "{op}: encoding a TMA map of bf16 [{rows}, {heads}, {dh}] at {ptr:#x} \
                     ({box_rows}-row boxes): {result:?}"
                ),
            });
        }
        // SAFETY: initialized by the successful call above.
        Ok(Self(unsafe { map.assume_init() }.opaque))
    }
}
