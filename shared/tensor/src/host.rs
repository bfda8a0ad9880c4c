use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use half::{bf16, f16};
use rayon::prelude::*;

use crate::{DType, Error, Result};

// Element bytes go to safetensors files and to the GPU as they lie in memory, unswapped.
#[cfg(target_endian = "big")]
compile_error!("turbine-tensor assumes a little-endian host");

/// Typed element storage on the host, the unit of transfer between checkpoints and backends.
#[derive(Debug, Clone, PartialEq)]
pub enum HostData {
    F32(Vec<f32>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    I8(Vec<i8>),
}

impl HostData {
    pub fn len(&self) -> usize {
        match self {
            HostData::F32(v) => v.len(),
            HostData::F16(v) => v.len(),
            HostData::BF16(v) => v.len(),
            HostData::I8(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dtype(&self) -> DType {
        match self {
            HostData::F32(_) => DType::F32,
            HostData::F16(_) => DType::F16,
            HostData::BF16(_) => DType::BF16,
            HostData::I8(_) => DType::I8,
        }
    }

    /// Elements of `dtype` from their little-endian bytes (unaligned reads: checkpoint offsets
    /// need not be aligned); a trailing partial element is ignored. On all cores: the umT5 token
    /// table alone is 2.1 GB read from a checkpoint's map.
    pub fn from_le_bytes(dtype: DType, bytes: &[u8]) -> HostData {
        match dtype {
            DType::F32 => HostData::F32(
                bytes
                    .par_chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            DType::F16 => HostData::F16(
                bytes
                    .par_chunks_exact(2)
                    .map(|c| f16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            ),
            DType::BF16 => HostData::BF16(
                bytes
                    .par_chunks_exact(2)
                    .map(|c| bf16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            ),
            DType::I8 => HostData::I8(bytes.par_iter().map(|&b| b as i8).collect()),
        }
    }

    /// The elements' bytes in memory order, which is little-endian (checked at compile time).
    fn as_bytes(&self) -> &[u8] {
        match self {
            HostData::F32(v) => bytemuck::cast_slice(v),
            HostData::F16(v) => bytemuck::cast_slice(v),
            HostData::BF16(v) => bytemuck::cast_slice(v),
            HostData::I8(v) => bytemuck::cast_slice(v),
        }
    }
}

/// A dense row-major tensor as little-endian element bytes: what a backend copies to its memory,
/// whether the bytes are a [`HostTensor`]'s or still in a memory-mapped checkpoint ([`HostBytes`]).
#[derive(Debug, Clone, Copy)]
pub struct TensorBytes<'a> {
    shape: &'a [usize],
    dtype: DType,
    /// The elements' bytes, any alignment.
    bytes: &'a [u8],
}

impl<'a> TensorBytes<'a> {
    pub fn shape(&self) -> &'a [usize] {
        self.shape
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The element count the bytes hold (a [`HostTensor`] built by hand may disagree with its
    /// shape; backends check).
    pub fn numel(&self) -> usize {
        self.bytes.len() / self.dtype.size_in_bytes()
    }

    /// The elements copied into an owned tensor.
    pub fn to_host(&self) -> HostTensor {
        HostTensor {
            shape: self.shape.to_vec(),
            data: HostData::from_le_bytes(self.dtype, self.bytes),
        }
    }
}

/// A tensor whose little-endian bytes stay where they are (a checkpoint's memory map), shared with
/// their owner rather than copied: backends read them straight into their own memory, with no
/// intermediate [`HostTensor`].
#[derive(Clone)]
pub struct HostBytes {
    shape: Vec<usize>,
    dtype: DType,
    owner: Arc<dyn AsRef<[u8]> + Send + Sync>,
    range: Range<usize>,
}

impl std::fmt::Debug for HostBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostBytes{:?} {}", self.shape, self.dtype)
    }
}

impl HostBytes {
    /// The tensor `shape` of `dtype` stored in `owner`'s bytes `range`; an error unless the range
    /// lies inside the owner and holds exactly the shape's elements.
    pub fn new(
        shape: impl Into<Vec<usize>>,
        dtype: DType,
        owner: Arc<dyn AsRef<[u8]> + Send + Sync>,
        range: Range<usize>,
    ) -> Result<Self> {
        let shape = shape.into();
        let numel: usize = shape.iter().product();
        let len = (*owner).as_ref().len();
        if range.start > range.end || range.end > len {
            return Err(Error::invalid(
                "host_bytes",
                format!("byte range {range:?} outside the {len} bytes of its owner"),
            ));
        }
        if numel.checked_mul(dtype.size_in_bytes()) != Some(range.len()) {
            return Err(Error::ElementCount {
                len: range.len() / dtype.size_in_bytes(),
                shape,
            });
        }
        Ok(Self {
            shape,
            dtype,
            owner,
            range,
        })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn tensor_bytes(&self) -> TensorBytes<'_> {
        TensorBytes {
            shape: &self.shape,
            dtype: self.dtype,
            bytes: &(*self.owner).as_ref()[self.range.clone()],
        }
    }
}

/// A dense, row-major tensor in host memory.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: HostData,
}

impl HostTensor {
    pub fn new(shape: impl Into<Vec<usize>>, data: HostData) -> Result<Self> {
        let shape = shape.into();
        let numel: usize = shape.iter().product();
        if numel != data.len() {
            return Err(Error::ElementCount {
                len: data.len(),
                shape,
            });
        }
        Ok(Self { shape, data })
    }

    pub fn from_f32(shape: impl Into<Vec<usize>>, data: Vec<f32>) -> Result<Self> {
        Self::new(shape, HostData::F32(data))
    }

    /// An f32 tensor of `shape` holding zeros.
    pub fn zeros(shape: impl Into<Vec<usize>>) -> Self {
        let shape = shape.into();
        let numel = shape.iter().product();
        Self {
            shape,
            data: HostData::F32(vec![0.0; numel]),
        }
    }

    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    pub fn numel(&self) -> usize {
        self.data.len()
    }

    pub fn tensor_bytes(&self) -> TensorBytes<'_> {
        TensorBytes {
            shape: &self.shape,
            dtype: self.dtype(),
            bytes: self.data.as_bytes(),
        }
    }

    /// The elements widened to f32 (int8 values are returned as their integer value).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            HostData::F32(v) => v.clone(),
            HostData::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
            HostData::BF16(v) => v.iter().map(|x| x.to_f32()).collect(),
            HostData::I8(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// The elements as f32: borrowed when they are f32 already, else widened as
    /// [`HostTensor::to_f32_vec`] does.
    pub fn f32_elements(&self) -> Cow<'_, [f32]> {
        match &self.data {
            HostData::F32(v) => Cow::Borrowed(v),
            HostData::F16(_) | HostData::BF16(_) | HostData::I8(_) => Cow::Owned(self.to_f32_vec()),
        }
    }

    /// Converts a float tensor to another float storage type (round to nearest even).
    pub fn to_dtype(&self, dtype: DType) -> Result<HostTensor> {
        if !self.dtype().is_float() || !dtype.is_float() {
            return Err(Error::DType {
                op: "to_dtype",
                dtype: if self.dtype().is_float() {
                    dtype
                } else {
                    self.dtype()
                },
            });
        }
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        let v = self.to_f32_vec();
        let data = match dtype {
            DType::F32 => HostData::F32(v),
            DType::F16 => HostData::F16(v.iter().map(|&x| f16::from_f32(x)).collect()),
            DType::BF16 => HostData::BF16(v.iter().map(|&x| bf16::from_f32(x)).collect()),
            DType::I8 => unreachable!("checked above"),
        };
        Ok(HostTensor {
            shape: self.shape.clone(),
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    #[test]
    fn f32_elements_borrow_f32_and_widen_the_rest() -> Result<()> {
        let t = HostTensor::from_f32([2, 3], vec![0.5, -1.25, 3.0, 1e-3, 7.0, -0.0])?;
        assert!(matches!(t.f32_elements(), Cow::Borrowed(v) if v == t.to_f32_vec().as_slice()));
        let b = t.to_dtype(DType::BF16)?;
        assert!(matches!(b.f32_elements(), Cow::Owned(v) if v == b.to_f32_vec()));
        Ok(())
    }
}
