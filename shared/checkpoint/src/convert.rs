//! `.pth` to safetensors conversion, and safetensors export for tensors made in Rust.
//!
//! Conversion streams: the safetensors writer asks each view for its bytes one tensor at a time
//! and a [`PthTensor`] reads them from the memory-mapped `.pth`, so peak memory is one gathered or
//! cast tensor rather than the checkpoint (the umT5 encoder `.pth` is 11 GB).

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

use half::{bf16, f16};
use safetensors::{Dtype, View};
use turbine_tensor::{HostData, HostTensor};

use crate::pth::{PthDType, PthFile, PthTensor, Skipped};
use crate::{Error, Result};

/// What floating-point tensors (f16, bf16, f32, f64) are written as. Integer, bool, fp8 and
/// complex tensors always keep their type: they are quantized weights, indices or masks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Cast {
    #[default]
    Keep,
    BF16,
    F32,
}

impl Cast {
    fn target(self, dtype: PthDType) -> PthDType {
        match self {
            Cast::Keep => dtype,
            Cast::BF16 | Cast::F32 if !dtype.is_float() => dtype,
            Cast::BF16 => PthDType::BF16,
            Cast::F32 => PthDType::F32,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ConvertOptions {
    /// Keep only the tensors under this dotted key (`state_dict`), named without it.
    pub select: Option<String>,
    /// Then drop this prefix (`net.`) from the names that start with it.
    pub strip_prefix: Option<String>,
    pub cast: Cast,
}

#[derive(Debug, Clone)]
pub struct ConvertReport {
    pub tensors: usize,
    /// Tensor bytes written, headers aside.
    pub data_bytes: u64,
    pub file_bytes: u64,
    /// Non-tensor entries of the whole checkpoint.
    pub skipped: Vec<Skipped>,
    /// Tensors left out because they lie outside the selected key.
    pub unselected: usize,
    /// Names written as they were because they lack the stripped prefix.
    pub unprefixed: Vec<String>,
}

/// Converts a torch.save checkpoint into one safetensors file, keeping tensor names (dotted,
/// nested dicts flattened) unless `options` select a sub-dict or strip a prefix. The metadata
/// records `format: pt` and the source file name.
pub fn convert(input: &Path, output: &Path, options: &ConvertOptions) -> Result<ConvertReport> {
    let fail = |path: &Path, msg: String| Error::Convert {
        path: path.to_path_buf(),
        msg,
    };
    if let (Ok(a), Ok(b)) = (input.canonicalize(), output.canonicalize())
        && a == b
    {
        return Err(fail(output, "the output would overwrite the input".into()));
    }
    let pth = PthFile::open(input)?;
    pth.verify_checksums()?;

    let mut views = Vec::new();
    let mut names = HashSet::new();
    let mut unselected = 0;
    let mut unprefixed = Vec::new();
    for tensor in pth.tensors() {
        let Some(name) = selected(tensor.name(), options).map_err(|msg| fail(input, msg))? else {
            unselected += 1;
            continue;
        };
        let name = match &options.strip_prefix {
            Some(prefix) => match name.strip_prefix(prefix.as_str()) {
                Some("") => {
                    let msg = format!("stripping `{prefix}` from `{name}` leaves no name");
                    return Err(fail(input, msg));
                }
                Some(rest) => rest,
                None => {
                    unprefixed.push(name.to_string());
                    name
                }
            },
            None => name,
        };
        if !names.insert(name) {
            let msg = format!("two tensors would both be written as `{name}`");
            return Err(fail(input, msg));
        }
        let cast = options.cast;
        views.push((name.to_string(), CastView { tensor, cast }));
    }
    if views.is_empty() {
        return Err(fail(input, nothing_selected(&pth, options)));
    }
    if let Some(prefix) = &options.strip_prefix
        && unprefixed.len() == views.len()
    {
        let msg = format!("no tensor name starts with `{prefix}`");
        return Err(fail(input, msg));
    }

    let tensors = views.len();
    let data_bytes = views.iter().map(|(_, v)| v.data_len() as u64).sum();
    let source = input.file_name().map_or_else(
        || input.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let metadata = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("source".to_string(), source),
    ]);
    write_safetensors(output, views, metadata)?;
    let file_bytes = std::fs::metadata(output)
        .map_err(|e| Error::io(output, e))?
        .len();
    Ok(ConvertReport {
        tensors,
        data_bytes,
        file_bytes,
        skipped: pth.skipped().to_vec(),
        unselected,
        unprefixed,
    })
}

/// A tensor's name below the selected key, or `None` when it lies outside it.
fn selected<'n>(
    name: &'n str,
    options: &ConvertOptions,
) -> std::result::Result<Option<&'n str>, String> {
    let Some(key) = &options.select else {
        return Ok(Some(name));
    };
    if name == key {
        return Err(format!(
            "`{key}` is a tensor, not a dict of tensors to select"
        ));
    }
    Ok(name
        .strip_prefix(key.as_str())
        .and_then(|rest| rest.strip_prefix('.')))
}

fn nothing_selected(pth: &PthFile, options: &ConvertOptions) -> String {
    let Some(key) = &options.select else {
        return "the checkpoint holds no tensors".into();
    };
    let roots: BTreeSet<&str> = pth
        .tensors()
        .map(|t| t.name().split('.').next().unwrap_or_default())
        .collect();
    let roots: Vec<&str> = roots.into_iter().collect();
    format!(
        "no tensors under `{key}`; tensors lie under: {}",
        roots.join(", ")
    )
}

/// Writes tensors to a safetensors file (through a temporary file renamed into place, so a
/// failed write leaves no partial output), from any [`View`], e.g. a [`HostView`].
pub fn write_safetensors<V: View>(
    path: &Path,
    tensors: impl IntoIterator<Item = (String, V)>,
    metadata: HashMap<String, String>,
) -> Result<()> {
    let metadata = (!metadata.is_empty()).then_some(metadata);
    safetensors::serialize_to_file(tensors, metadata, path).map_err(|e| Error::Convert {
        path: path.to_path_buf(),
        msg: format!("cannot write safetensors: {e}"),
    })?;
    // The writer renames a private (0600) temporary file into place; weights are shared
    // read-only with the serving processes, which may run as another user.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}

/// A [`HostTensor`] as a safetensors [`View`], to export weights made in Rust (random
/// initializations, test fixtures).
#[derive(Debug, Clone, Copy)]
pub struct HostView<'a>(pub &'a HostTensor);

impl View for HostView<'_> {
    fn dtype(&self) -> Dtype {
        match self.0.data {
            HostData::F32(_) => Dtype::F32,
            HostData::F16(_) => Dtype::F16,
            HostData::BF16(_) => Dtype::BF16,
            HostData::I8(_) => Dtype::I8,
        }
    }

    fn shape(&self) -> &[usize] {
        &self.0.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self.0.tensor_bytes().bytes())
    }

    fn data_len(&self) -> usize {
        self.0.data.len() * self.dtype().bitsize() / 8
    }
}

/// A `.pth` tensor written in its own type or the one a [`Cast`] asks for.
struct CastView<'a> {
    tensor: PthTensor<'a>,
    cast: Cast,
}

impl View for CastView<'_> {
    fn dtype(&self) -> Dtype {
        self.cast.target(self.tensor.dtype()).safetensors()
    }

    fn shape(&self) -> &[usize] {
        self.tensor.shape()
    }

    fn data(&self) -> Cow<'_, [u8]> {
        let bytes = self.tensor.bytes();
        let from = self.tensor.dtype();
        let Some(read) = read_float(from).filter(|_| self.cast.target(from) != from) else {
            return bytes;
        };
        let values = bytes.chunks_exact(from.size()).map(read);
        Cow::Owned(match self.cast {
            Cast::Keep => return bytes,
            Cast::BF16 => values
                .flat_map(|x| bf16::from_f64(x).to_le_bytes())
                .collect(),
            Cast::F32 => values.flat_map(|x| (x as f32).to_le_bytes()).collect(),
        })
    }

    fn data_len(&self) -> usize {
        self.tensor.numel() * self.cast.target(self.tensor.dtype()).size()
    }
}

/// Decodes one little-endian element of a real floating-point type; every one of them is exact
/// in f64, so a cast rounds once.
fn read_float(dtype: PthDType) -> Option<fn(&[u8]) -> f64> {
    match dtype {
        PthDType::F16 => Some(|c| f16::from_le_bytes([c[0], c[1]]).to_f64()),
        PthDType::BF16 => Some(|c| bf16::from_le_bytes([c[0], c[1]]).to_f64()),
        PthDType::F32 => Some(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]).into()),
        PthDType::F64 => {
            Some(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        }
        PthDType::Bool
        | PthDType::U8
        | PthDType::I8
        | PthDType::I16
        | PthDType::U16
        | PthDType::I32
        | PthDType::U32
        | PthDType::I64
        | PthDType::U64
        | PthDType::F8E4M3
        | PthDType::F8E5M2
        | PthDType::C64 => None,
    }
}
