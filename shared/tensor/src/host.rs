use half::{bf16, f16};

use crate::{DType, Error, Result};

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

    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    pub fn numel(&self) -> usize {
        self.data.len()
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
