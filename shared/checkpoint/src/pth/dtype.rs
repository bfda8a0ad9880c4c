//! Element types of torch storages, kept as stored: safetensors can hold every one of them, so a
//! conversion never has to guess a cast.

use std::fmt;

use safetensors::Dtype;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PthDType {
    Bool,
    U8,
    I8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F16,
    BF16,
    F32,
    F64,
    F8E4M3,
    F8E5M2,
    C64,
}

impl PthDType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            PthDType::Bool | PthDType::U8 | PthDType::I8 | PthDType::F8E4M3 | PthDType::F8E5M2 => 1,
            PthDType::I16 | PthDType::U16 | PthDType::F16 | PthDType::BF16 => 2,
            PthDType::I32 | PthDType::U32 | PthDType::F32 => 4,
            PthDType::I64 | PthDType::U64 | PthDType::F64 | PthDType::C64 => 8,
        }
    }

    pub fn safetensors(self) -> Dtype {
        match self {
            PthDType::Bool => Dtype::BOOL,
            PthDType::U8 => Dtype::U8,
            PthDType::I8 => Dtype::I8,
            PthDType::I16 => Dtype::I16,
            PthDType::U16 => Dtype::U16,
            PthDType::I32 => Dtype::I32,
            PthDType::U32 => Dtype::U32,
            PthDType::I64 => Dtype::I64,
            PthDType::U64 => Dtype::U64,
            PthDType::F16 => Dtype::F16,
            PthDType::BF16 => Dtype::BF16,
            PthDType::F32 => Dtype::F32,
            PthDType::F64 => Dtype::F64,
            PthDType::F8E4M3 => Dtype::F8_E4M3,
            PthDType::F8E5M2 => Dtype::F8_E5M2,
            PthDType::C64 => Dtype::C64,
        }
    }

    /// The real floating-point types a conversion may cast between; fp8 and integer tensors are
    /// quantized weights or indices and keep their type.
    pub fn is_float(self) -> bool {
        matches!(
            self,
            PthDType::F16 | PthDType::BF16 | PthDType::F32 | PthDType::F64
        )
    }

    /// The element type of a typed storage class (`torch.FloatStorage`), as `_rebuild_tensor_v2`
    /// receives it.
    pub(crate) fn from_storage_class(path: &str) -> Option<Self> {
        Some(match path.strip_prefix("torch.")? {
            "BoolStorage" => PthDType::Bool,
            "ByteStorage" => PthDType::U8,
            "CharStorage" => PthDType::I8,
            "ShortStorage" => PthDType::I16,
            "IntStorage" => PthDType::I32,
            "LongStorage" => PthDType::I64,
            "HalfStorage" => PthDType::F16,
            "BFloat16Storage" => PthDType::BF16,
            "FloatStorage" => PthDType::F32,
            "DoubleStorage" => PthDType::F64,
            "ComplexFloatStorage" => PthDType::C64,
            _ => return None,
        })
    }

    /// The element type named by a torch dtype global (`torch.float8_e4m3fn`), as
    /// `_rebuild_tensor_v3` receives it for dtypes that have no typed storage class.
    pub(crate) fn from_torch_dtype(path: &str) -> Option<Self> {
        Some(match path.strip_prefix("torch.")? {
            "bool" => PthDType::Bool,
            "uint8" => PthDType::U8,
            "int8" => PthDType::I8,
            "int16" => PthDType::I16,
            "uint16" => PthDType::U16,
            "int32" => PthDType::I32,
            "uint32" => PthDType::U32,
            "int64" => PthDType::I64,
            "uint64" => PthDType::U64,
            "float16" => PthDType::F16,
            "bfloat16" => PthDType::BF16,
            "float32" => PthDType::F32,
            "float64" => PthDType::F64,
            "float8_e4m3fn" => PthDType::F8E4M3,
            "float8_e5m2" => PthDType::F8E5M2,
            "complex64" => PthDType::C64,
            _ => return None,
        })
    }
}

/// torch's own names, so that messages read like the Python side.
impl fmt::Display for PthDType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PthDType::Bool => "bool",
            PthDType::U8 => "uint8",
            PthDType::I8 => "int8",
            PthDType::I16 => "int16",
            PthDType::U16 => "uint16",
            PthDType::I32 => "int32",
            PthDType::U32 => "uint32",
            PthDType::I64 => "int64",
            PthDType::U64 => "uint64",
            PthDType::F16 => "float16",
            PthDType::BF16 => "bfloat16",
            PthDType::F32 => "float32",
            PthDType::F64 => "float64",
            PthDType::F8E4M3 => "float8_e4m3fn",
            PthDType::F8E5M2 => "float8_e5m2",
            PthDType::C64 => "complex64",
        })
    }
}
