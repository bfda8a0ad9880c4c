//! Memory-mapped safetensors: one file, several shards, or a sharded `*.index.json`; or seeded
//! random tensors with no file at all, generated when asked for.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use safetensors::{Dtype as StDtype, SafeTensors};
use turbine_tensor::{DType, HostBytes, HostData, HostTensor, SeededValues};

use crate::{Error, Result};

/// Where a tensor lives and what it is, read from the safetensors headers only.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub dtype: DType,
    pub shape: Vec<usize>,
    source: Source,
}

#[derive(Debug, Clone, PartialEq)]
enum Source {
    /// Bytes `start..end` of file number `file`.
    Stored {
        file: usize,
        start: usize,
        end: usize,
    },
    /// bf16 values generated on demand.
    Seeded(SeededValues),
}

impl TensorInfo {
    /// Bytes of the tensor's data.
    fn data_bytes(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dtype.size_in_bytes()
    }
}

/// The bytes of one safetensors file: mapped from disk, or built in memory (seeded demo weights).
enum Backing {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Backing {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Backing::Mapped(m) => m,
            Backing::Owned(v) => v,
        }
    }
}

impl AsRef<[u8]> for Backing {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

/// Read-only access by name to the tensors of one or more safetensors files, zero-copy until a
/// tensor is asked for.
pub struct TensorStore {
    /// Shared with the [`HostBytes`] handed out, which keep a file mapped while they live.
    files: Vec<(PathBuf, Arc<Backing>)>,
    index: BTreeMap<String, TensorInfo>,
    /// The `__metadata__` string maps of all files, merged.
    metadata: BTreeMap<String, String>,
}

impl std::fmt::Debug for TensorStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorStore")
            .field(
                "files",
                &self.files.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            )
            .field("tensors", &self.index.len())
            .finish()
    }
}

// safetensors' `Dtype` is non-exhaustive and keeps growing; the store takes only the four
// element types the runtime computes with.
#[allow(clippy::wildcard_enum_match_arm)]
fn dtype_of(dtype: StDtype) -> Option<DType> {
    match dtype {
        StDtype::F32 => Some(DType::F32),
        StDtype::F16 => Some(DType::F16),
        StDtype::BF16 => Some(DType::BF16),
        StDtype::I8 => Some(DType::I8),
        _ => None,
    }
}

impl TensorStore {
    /// Opens a `.safetensors` file, a sharded `*.index.json`, or a directory holding either.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if path.is_dir() {
            return Self::open_dir(path);
        }
        if path.extension().is_some_and(|e| e == "json") {
            return Self::open_index(path);
        }
        Self::open_files(&[path.to_path_buf()])
    }

    fn open_dir(dir: &Path) -> Result<Self> {
        let mut files = Vec::new();
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        for entry in entries {
            let path = entry.map_err(|e| Error::io(dir, e))?.path();
            if path.extension().is_some_and(|e| e == "safetensors") {
                files.push(path);
            }
        }
        if files.is_empty() {
            return Err(Error::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no .safetensors files"),
            ));
        }
        files.sort();
        Self::open_files(&files)
    }

    fn open_index(index: &Path) -> Result<Self> {
        #[derive(serde::Deserialize)]
        struct Index {
            weight_map: BTreeMap<String, String>,
        }
        let text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
        let parsed: Index = serde_json::from_str(&text).map_err(|e| Error::Safetensors {
            path: index.to_path_buf(),
            msg: format!("bad index: {e}"),
        })?;
        let dir = index.parent().unwrap_or(Path::new("."));
        let mut shards: Vec<PathBuf> = parsed.weight_map.values().map(|f| dir.join(f)).collect();
        shards.sort();
        shards.dedup();
        Self::open_files(&shards)
    }

    /// Opens several shards as one store; a name present in two shards is an error.
    pub fn open_files(paths: &[PathBuf]) -> Result<Self> {
        let mut store = Self::empty();
        for path in paths {
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            // SAFETY: the map is read-only; a checkpoint modified while mapped is outside our
            // contract, as for every mmap-based loader.
            let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
            store.add(path.clone(), Backing::Mapped(mmap))?;
        }
        Ok(store)
    }

    /// A store over safetensors bytes held in memory; `name` stands for the path in errors.
    pub fn from_bytes(name: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<Self> {
        let mut store = Self::empty();
        store.add(name.into(), Backing::Owned(bytes))?;
        Ok(store)
    }

    /// A store of bf16 tensors `(name, shape, values)` that exist only as their generator: reading
    /// one generates it on the host, and [`TensorStore::seeded`] hands the generator to a backend
    /// that writes the values where they go. `metadata` stands for the file's `__metadata__`.
    pub fn from_seeded(
        tensors: impl IntoIterator<Item = (String, Vec<usize>, SeededValues)>,
        metadata: BTreeMap<String, String>,
    ) -> Result<Self> {
        let mut store = Self::empty();
        for (name, shape, values) in tensors {
            let info = TensorInfo {
                dtype: DType::BF16,
                shape,
                source: Source::Seeded(values),
            };
            if store.index.insert(name.clone(), info).is_some() {
                return Err(Error::Invalid {
                    key: name,
                    msg: "seeded twice".into(),
                });
            }
        }
        store.metadata = metadata;
        Ok(store)
    }

    fn empty() -> Self {
        Self {
            files: Vec::new(),
            index: BTreeMap::new(),
            metadata: BTreeMap::new(),
        }
    }

    fn add(&mut self, path: PathBuf, bytes: Backing) -> Result<()> {
        let bad = |e: safetensors::SafeTensorError| Error::Safetensors {
            path: path.clone(),
            msg: e.to_string(),
        };
        let st = SafeTensors::deserialize(&bytes).map_err(bad)?;
        let (_, header) = SafeTensors::read_metadata(&bytes).map_err(bad)?;
        if let Some(m) = header.metadata() {
            self.metadata
                .extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let base = bytes.as_ptr() as usize;
        let file = self.files.len();
        for (name, view) in st.tensors() {
            let dtype = dtype_of(view.dtype()).ok_or_else(|| Error::UnsupportedDType {
                key: name.clone(),
                dtype: format!("{:?}", view.dtype()),
            })?;
            let start = view.data().as_ptr() as usize - base;
            let info = TensorInfo {
                dtype,
                shape: view.shape().to_vec(),
                source: Source::Stored {
                    file,
                    start,
                    end: start + view.data().len(),
                },
            };
            if self.index.insert(name.clone(), info).is_some() {
                return Err(Error::Invalid {
                    key: name,
                    msg: format!(
                        "present in more than one shard (again in {})",
                        path.display()
                    ),
                });
            }
        }
        self.files.push((path, Arc::new(bytes)));
        Ok(())
    }

    /// A `__metadata__` entry of the file(s).
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name)
    }

    /// Bytes of tensor data in the store (headers excluded): what loading every tensor reads.
    pub fn data_bytes(&self) -> u64 {
        self.index
            .values()
            .map(|info| info.data_bytes() as u64)
            .sum()
    }

    /// The raw little-endian bytes of a stored tensor, borrowed from the map; an error for a
    /// seeded one, which has no bytes until generated.
    pub fn bytes(&self, name: &str) -> Result<&[u8]> {
        let info = self.index.get(name).ok_or_else(|| Error::missing(name))?;
        match info.source {
            Source::Stored { file, start, end } => Ok(&self.files[file].1[start..end]),
            Source::Seeded(_) => Err(Error::Invalid {
                key: name.to_string(),
                msg: "seeded: generated when read, no stored bytes".into(),
            }),
        }
    }

    /// Copies a tensor out of the map in its stored dtype (a seeded one is generated).
    pub fn get(&self, name: &str) -> Result<HostTensor> {
        let info = self.index.get(name).ok_or_else(|| Error::missing(name))?;
        match info.source {
            Source::Stored { file, start, end } => {
                let data = HostData::from_le_bytes(info.dtype, &self.files[file].1[start..end]);
                Ok(HostTensor::new(info.shape.clone(), data)?)
            }
            Source::Seeded(values) => Ok(values.host(&info.shape)?),
        }
    }

    /// The generator of a seeded tensor of exactly `expected` shape; `None` for a stored tensor.
    pub fn seeded(&self, name: &str, expected: &[usize]) -> Result<Option<SeededValues>> {
        let info = self.shaped(name, expected)?;
        Ok(match info.source {
            Source::Stored { .. } => None,
            Source::Seeded(values) => Some(values),
        })
    }

    /// [`TensorStore::get`] after checking the shape.
    pub fn get_shaped(&self, name: &str, expected: &[usize]) -> Result<HostTensor> {
        self.shaped(name, expected)?;
        self.get(name)
    }

    /// A tensor of exactly `expected` shape left in the map, for a backend to read without an
    /// intermediate copy; it keeps the file mapped while it lives. A seeded tensor is generated
    /// into bytes of its own.
    pub fn mapped(&self, name: &str, expected: &[usize]) -> Result<HostBytes> {
        let info = self.shaped(name, expected)?;
        let (owner, range): (Arc<dyn AsRef<[u8]> + Send + Sync>, _) = match info.source {
            Source::Stored { file, start, end } => (self.files[file].1.clone(), start..end),
            Source::Seeded(values) => {
                let mut bytes = vec![0u8; info.data_bytes()];
                values.fill(&mut bytes);
                let len = bytes.len();
                (Arc::new(bytes), 0..len)
            }
        };
        Ok(HostBytes::new(
            info.shape.clone(),
            info.dtype,
            owner,
            range,
        )?)
    }

    fn shaped(&self, name: &str, expected: &[usize]) -> Result<&TensorInfo> {
        let info = self.index.get(name).ok_or_else(|| Error::missing(name))?;
        if info.shape != expected {
            return Err(Error::ShapeMismatch {
                key: name.to_string(),
                expected: expected.to_vec(),
                found: info.shape.clone(),
            });
        }
        Ok(info)
    }
}
