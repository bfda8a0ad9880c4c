//! Tensors over gRPC: split into chunks of at most [`CHUNK_BYTES`] of data, each repeating the
//! header (name, dtype, shape), and reassembled with every field checked.

use bytes::{Bytes, BytesMut};
use half::{bf16, f16};
use turbine_proto::v1::{Dtype as WireDType, TensorChunk};
use turbine_tensor::{HostData, HostTensor};

use crate::{Error, Result};

/// Largest `data` of one chunk: well under gRPC's common 4 MiB message limit, large enough that
/// per-message overhead is negligible for GPU-sized tensors.
pub const CHUNK_BYTES: usize = 1 << 20;

/// Largest tensor a receiver accepts (1 GiB): far above any Wan latent, context or frame chunk,
/// and a bound on what a malformed header can make a server allocate.
pub const MAX_TENSOR_BYTES: u64 = 1 << 30;

/// A tensor's bytes on the wire: f32/bf16/f16 as stored, u8 for RGB frames.
#[derive(Debug, Clone, PartialEq)]
pub struct WireTensor {
    pub dtype: WireDType,
    pub shape: Vec<usize>,
    pub data: Bytes,
}

fn elem_size(dtype: WireDType) -> Option<usize> {
    match dtype {
        WireDType::F32 => Some(4),
        WireDType::Bf16 | WireDType::F16 => Some(2),
        WireDType::U8 => Some(1),
        WireDType::Unspecified => None,
    }
}

impl WireTensor {
    /// A float tensor in its storage dtype (int8 tensors never travel).
    pub fn from_host(t: &HostTensor) -> Result<Self> {
        let (dtype, data): (WireDType, Vec<u8>) = match &t.data {
            HostData::F32(v) => (
                WireDType::F32,
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            HostData::BF16(v) => (
                WireDType::Bf16,
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            HostData::F16(v) => (
                WireDType::F16,
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            // Int8 weights never travel; asking to send one is a bug of the caller.
            HostData::I8(_) => {
                let e = turbine_tensor::Error::DType {
                    op: "sending a tensor over gRPC",
                    dtype: turbine_tensor::DType::I8,
                };
                return Err(turbine_pipeline::Error::Tensor(e).into());
            }
        };
        Ok(Self {
            dtype,
            shape: t.shape.clone(),
            data: data.into(),
        })
    }

    /// u8 RGB planes `[3, n, H, W]` (video frames).
    pub fn from_u8(shape: Vec<usize>, data: Vec<u8>) -> Self {
        Self {
            dtype: WireDType::U8,
            shape,
            data: data.into(),
        }
    }

    /// The tensor as host data (u8 is refused: callers of frames read `data` directly).
    pub fn to_host(&self, field: &'static str) -> Result<HostTensor> {
        let b = &self.data;
        let data = match self.dtype {
            WireDType::F32 => HostData::F32(
                b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            WireDType::Bf16 => HostData::BF16(
                b.chunks_exact(2)
                    .map(|c| bf16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            ),
            WireDType::F16 => HostData::F16(
                b.chunks_exact(2)
                    .map(|c| f16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            ),
            WireDType::U8 | WireDType::Unspecified => {
                return Err(Error::invalid(
                    field,
                    format!("dtype {:?} is not a float type", self.dtype),
                ));
            }
        };
        HostTensor::new(self.shape.clone(), data).map_err(|e| Error::invalid(field, e.to_string()))
    }

    /// The chunks that carry this tensor under `name` (at least one, even when empty).
    pub fn chunks(&self, name: &str) -> Vec<TensorChunk> {
        let shape: Vec<u64> = self.shape.iter().map(|&d| d as u64).collect();
        let pieces = self.data.len().div_ceil(CHUNK_BYTES).max(1);
        (0..pieces)
            .map(|i| {
                let start = i * CHUNK_BYTES;
                let end = (start + CHUNK_BYTES).min(self.data.len());
                TensorChunk {
                    name: name.to_string(),
                    dtype: self.dtype as i32,
                    shape: shape.clone(),
                    offset: start as u64,
                    data: self.data.slice(start..end),
                }
            })
            .collect()
    }
}

/// Reassembles one tensor from its chunks, checking each against the first: same name, dtype
/// and shape, contiguous offsets, no overrun. `field` names the request field in errors.
#[derive(Debug)]
pub struct TensorAssembler {
    field: &'static str,
    /// When set, every chunk must carry this name.
    name: Option<&'static str>,
    header: Option<(String, WireDType, Vec<usize>, usize)>,
    data: BytesMut,
}

impl TensorAssembler {
    pub fn new(field: &'static str) -> Self {
        Self {
            field,
            name: None,
            header: None,
            data: BytesMut::new(),
        }
    }

    /// An assembler that also requires every chunk to be named `name` (which names the field).
    pub fn named(name: &'static str) -> Self {
        Self {
            name: Some(name),
            ..Self::new(name)
        }
    }

    fn invalid(&self, msg: impl std::fmt::Display) -> Error {
        Error::invalid(self.field, msg.to_string())
    }

    /// Adds a chunk; returns the whole tensor once its last byte has arrived.
    pub fn push(&mut self, chunk: TensorChunk) -> Result<Option<WireTensor>> {
        if let Some(name) = self.name
            && chunk.name != name
        {
            return Err(self.invalid(format!("chunk named {:?}, expected {name:?}", chunk.name)));
        }
        let dtype = WireDType::try_from(chunk.dtype)
            .ok()
            .filter(|d| *d != WireDType::Unspecified)
            .ok_or_else(|| self.invalid(format!("unknown dtype {}", chunk.dtype)))?;
        let shape: Vec<usize> = chunk.shape.iter().map(|&d| d as usize).collect();
        match &self.header {
            None => {
                let elem =
                    elem_size(dtype).ok_or_else(|| self.invalid("dtype unspecified"))? as u64;
                let numel = chunk
                    .shape
                    .iter()
                    .try_fold(1u64, |n, &d| n.checked_mul(d))
                    .ok_or_else(|| self.invalid(format!("shape {:?} overflows", chunk.shape)))?;
                let bytes = numel
                    .checked_mul(elem)
                    .filter(|b| *b <= MAX_TENSOR_BYTES)
                    .ok_or_else(|| {
                        self.invalid(format!(
                            "shape {:?} exceeds {MAX_TENSOR_BYTES} bytes",
                            chunk.shape
                        ))
                    })?;
                self.header = Some((chunk.name.clone(), dtype, shape, bytes as usize));
                self.data.reserve(bytes as usize);
            }
            Some((name, d, s, _)) => {
                if *name != chunk.name || *d != dtype || *s != shape {
                    return Err(self.invalid(format!(
                        "chunk header ({}, {dtype:?}, {shape:?}) differs from the first chunk's ({name}, {d:?}, {s:?})",
                        chunk.name
                    )));
                }
            }
        }
        let Some((_, dtype, shape, total)) = &self.header else {
            unreachable!("set above");
        };
        if chunk.offset != self.data.len() as u64 {
            return Err(self.invalid(format!(
                "chunk at offset {} but {} bytes received so far",
                chunk.offset,
                self.data.len()
            )));
        }
        if self.data.len() + chunk.data.len() > *total {
            return Err(self.invalid(format!(
                "chunks carry more than the {total} bytes of shape {shape:?}"
            )));
        }
        self.data.extend_from_slice(&chunk.data);
        if self.data.len() == *total {
            let tensor = WireTensor {
                dtype: *dtype,
                shape: shape.clone(),
                data: std::mem::take(&mut self.data).freeze(),
            };
            self.header = None;
            return Ok(Some(tensor));
        }
        Ok(None)
    }

    /// Errors if a tensor was begun but not finished (the stream ended early).
    pub fn finish(&self) -> Result<()> {
        match &self.header {
            Some((_, _, shape, total)) => Err(self.invalid(format!(
                "stream ended after {} of {total} bytes of shape {shape:?}",
                self.data.len()
            ))),
            None => Ok(()),
        }
    }
}

/// Reads a stream that carries exactly one tensor named `name`, then ends.
pub async fn read_tensor(
    input: &mut tonic::Streaming<TensorChunk>,
    name: &'static str,
) -> Result<WireTensor> {
    let mut assembler = TensorAssembler::named(name);
    let mut tensor = None;
    while let Some(chunk) = input.message().await.map_err(Error::RequestStream)? {
        if tensor.is_some() {
            return Err(Error::invalid(
                name,
                "the stream carries more than one tensor",
            ));
        }
        tensor = assembler.push(chunk)?;
    }
    assembler.finish()?;
    tensor.ok_or_else(|| Error::invalid(name, "the stream ended before any chunk"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(n: usize) -> HostTensor {
        HostTensor::from_f32([n], (0..n).map(|i| i as f32 * 0.5 - 3.0).collect()).unwrap()
    }

    #[test]
    fn round_trip_over_several_chunks() {
        let t = tensor(600_000); // 2.4 MB -> 3 chunks
        let wire = WireTensor::from_host(&t).unwrap();
        let chunks = wire.chunks("x");
        assert_eq!(chunks.len(), 3);
        assert!(chunks.iter().all(|c| c.data.len() <= CHUNK_BYTES));
        let mut asm = TensorAssembler::new("x");
        let mut out = None;
        for c in chunks {
            assert!(out.is_none());
            out = asm.push(c).unwrap();
        }
        asm.finish().unwrap();
        assert_eq!(out.unwrap().to_host("x").unwrap(), t);
    }

    #[test]
    fn malformed_streams_are_invalid_argument() {
        let wire = WireTensor::from_host(&tensor(300_000)).unwrap();
        let chunks = wire.chunks("x");
        let cases: Vec<(Vec<TensorChunk>, &str)> = vec![
            (
                vec![TensorChunk {
                    offset: 5,
                    ..chunks[0].clone()
                }],
                "offset",
            ),
            (
                vec![
                    chunks[0].clone(),
                    TensorChunk {
                        shape: vec![7],
                        ..chunks[1].clone()
                    },
                ],
                "differs",
            ),
            (
                vec![TensorChunk {
                    dtype: 99,
                    ..chunks[0].clone()
                }],
                "dtype",
            ),
            (
                vec![TensorChunk {
                    shape: vec![u64::MAX, 4],
                    ..chunks[0].clone()
                }],
                "overflows",
            ),
            (
                vec![TensorChunk {
                    shape: vec![1 << 40],
                    ..chunks[0].clone()
                }],
                "exceeds",
            ),
            (
                vec![TensorChunk {
                    shape: vec![2],
                    ..chunks[0].clone()
                }],
                "more than",
            ),
        ];
        for (stream, needle) in cases {
            let mut asm = TensorAssembler::new("context");
            let err = tonic::Status::from(
                stream
                    .into_iter()
                    .map(|c| asm.push(c))
                    .find_map(Result::err)
                    .unwrap(),
            );
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
            assert!(
                err.message().starts_with("context: ") && err.message().contains(needle),
                "{}",
                err.message()
            );
        }
        let mut asm = TensorAssembler::new("context");
        asm.push(chunks[0].clone()).unwrap();
        assert_eq!(
            asm.finish().unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
