//! PyTorch `.pth` reader (torch.save zip + pickle).
//!
//! A torch.save file is a zip archive holding `<archive>/data.pkl`, a pickle of the saved object
//! whose tensors point by persistent id at raw storages `<archive>/data/<key>`. [`PthFile::open`]
//! runs the pickle through a small VM, flattens nested dicts into dotted names, and checks every
//! tensor view against its storage; tensor bytes are then read lazily from the memory-mapped file.
//! Values that are not tensors (epoch counters, configs, argparse namespaces) are reported as
//! [`Skipped`] rather than refused, since training checkpoints are full of them.
//!
//! Not supported, with an error saying so: the legacy pre-zip format, big-endian files,
//! compressed records, and storage types safetensors cannot hold.

mod archive;
mod dtype;
mod layout;
mod pickle;
mod tree;

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use crate::{Error, Result};
use archive::{Archive, Record};
pub use dtype::PthDType;
use layout::Layout;
use pickle::TensorRef;

/// A non-tensor entry of a checkpoint, by flattened name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub name: String,
    /// Python's name for it: `int`, `dict`, `None`, or a class path like `argparse.Namespace`.
    pub kind: String,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.kind)
    }
}

/// An opened `.pth` checkpoint: tensor names, types and views, with the bytes left in the file.
pub struct PthFile {
    archive: Archive,
    entries: Vec<Entry>,
    skipped: Vec<Skipped>,
}

struct Entry {
    name: String,
    dtype: PthDType,
    layout: Layout,
    record_name: String,
    record: Record,
}

impl fmt::Debug for PthFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PthFile")
            .field("path", &self.archive.path())
            .field("tensors", &self.entries.len())
            .field("skipped", &self.skipped)
            .finish()
    }
}

impl PthFile {
    /// Reads the archive index and `data.pkl`, and validates every tensor's storage and view;
    /// no tensor bytes are read.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let archive = Archive::open(path.as_ref())?;
        let (entries, skipped) = decode(&archive, archive.pickle()?)?;
        Ok(Self {
            archive,
            entries,
            skipped,
        })
    }

    pub fn path(&self) -> &Path {
        self.archive.path()
    }

    /// Tensors in the order the checkpoint lists them.
    pub fn tensors(&self) -> impl ExactSizeIterator<Item = PthTensor<'_>> {
        self.entries
            .iter()
            .map(|entry| PthTensor { file: self, entry })
    }

    pub fn tensor(&self, name: &str) -> Option<PthTensor<'_>> {
        self.tensors().find(|t| t.name() == name)
    }

    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// Checks the CRC-32 of every storage record in use: one read of the tensor data, which
    /// [`PthFile::open`] leaves alone, to catch a corrupted download before converting it.
    pub fn verify_checksums(&self) -> Result<()> {
        let mut checked = HashSet::new();
        for entry in &self.entries {
            if checked.insert(entry.record_name.as_str()) && !self.archive.crc_ok(&entry.record) {
                return Err(Error::PthTensor {
                    path: self.path().to_path_buf(),
                    key: entry.name.clone(),
                    msg: format!(
                        "storage record `{}` fails its CRC-32 check: the file is corrupted",
                        self.archive.full_name(&entry.record_name)
                    ),
                });
            }
        }
        Ok(())
    }
}

/// One tensor of a [`PthFile`].
#[derive(Clone, Copy)]
pub struct PthTensor<'a> {
    file: &'a PthFile,
    entry: &'a Entry,
}

impl fmt::Debug for PthTensor<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PthTensor")
            .field("name", &self.name())
            .field("dtype", &self.dtype())
            .field("shape", &self.shape())
            .finish()
    }
}

impl<'a> PthTensor<'a> {
    pub fn name(&self) -> &'a str {
        &self.entry.name
    }

    pub fn dtype(&self) -> PthDType {
        self.entry.dtype
    }

    pub fn shape(&self) -> &'a [usize] {
        &self.entry.layout.shape
    }

    pub fn numel(&self) -> usize {
        self.entry.layout.numel()
    }

    /// Contiguous row-major little-endian bytes: borrowed from the map when the view is
    /// contiguous, gathered otherwise (transposes, strided slices, stride-0 expands).
    pub fn bytes(&self) -> Cow<'a, [u8]> {
        let storage = self.file.archive.bytes(&self.entry.record);
        self.entry.layout.gather(storage, self.entry.dtype.size())
    }
}

/// Runs `data.pkl` and resolves every tensor it names against the archive's storage records.
fn decode(archive: &Archive, pkl: &[u8]) -> Result<(Vec<Entry>, Vec<Skipped>)> {
    let path = archive.path();
    let pickle = pickle::parse(pkl).map_err(|e| Error::Pth {
        path: path.to_path_buf(),
        msg: format!("{}: {e}", archive.full_name("data.pkl")),
    })?;
    let flat = tree::flatten(&pickle).map_err(|msg| Error::Pth {
        path: path.to_path_buf(),
        msg,
    })?;
    let mut names = HashSet::new();
    let mut entries = Vec::with_capacity(flat.tensors.len());
    for (name, tensor) in flat.tensors {
        let entry = if names.insert(name.clone()) {
            resolve(archive, &name, tensor)
        } else {
            Err("two entries flatten to this name".into())
        };
        entries.push(entry.map_err(|msg| Error::PthTensor {
            path: path.to_path_buf(),
            key: name,
            msg,
        })?);
    }
    Ok((entries, flat.skipped))
}

/// Finds the tensor's storage record and checks its size and the view against it.
fn resolve(archive: &Archive, name: &str, t: &TensorRef) -> std::result::Result<Entry, String> {
    let (dtype, declared) = element_type(t)?;
    let record_name = format!("data/{}", t.storage.key);
    let record = archive.record(&record_name).ok_or_else(|| {
        format!(
            "storage record `{}` is missing",
            archive.full_name(&record_name)
        )
    })?;
    let bytes = archive.stored(&record_name, record)?;
    if u64::try_from(bytes.len()).ok() != Some(declared) {
        return Err(format!(
            "storage record `{}` holds {} bytes, data.pkl declares {declared}",
            archive.full_name(&record_name),
            bytes.len()
        ));
    }
    let layout = Layout::new(t.offset, &t.shape, &t.strides, bytes.len() / dtype.size())?;
    Ok(Entry {
        name: name.to_string(),
        dtype,
        layout,
        record_name,
        record: record.clone(),
    })
}

/// The tensor's element type and its storage's size in bytes as data.pkl declares it.
fn element_type(t: &TensorRef) -> std::result::Result<(PthDType, u64), String> {
    let class = t.storage.class.as_str();
    let typed = |class: &str| {
        PthDType::from_storage_class(class)
            .ok_or_else(|| format!("storage type `{class}` is not supported"))
    };
    let (dtype, elem) = match &t.dtype {
        None => {
            let dtype = typed(class)?;
            (dtype, dtype.size())
        }
        Some(name) => {
            let dtype = PthDType::from_torch_dtype(name)
                .ok_or_else(|| format!("dtype `{name}` is not supported"))?;
            let elem = if class == "torch.storage.UntypedStorage" {
                1
            } else {
                typed(class)?.size()
            };
            (dtype, elem)
        }
    };
    let declared = t
        .storage
        .numel
        .checked_mul(elem as u64)
        .ok_or("storage size overflows")?;
    Ok((dtype, declared))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Truncations and single-byte changes of real torch pickles, run against the real storage
    /// records: errors are expected, panics are bugs. `PthFile::open` would stop these at the
    /// data.pkl CRC check, so the VM is fed directly.
    #[test]
    fn mutated_pickles_never_panic() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/pth");
        for case in ["views", "module", "exotic", "turbowan"] {
            let archive = Archive::open(&dir.join(format!("{case}.pth"))).unwrap();
            let pkl = archive.pickle().unwrap().to_vec();
            assert!(decode(&archive, &pkl).is_ok(), "{case}");
            let run = |pkl: &[u8]| {
                if let Ok((entries, _)) = decode(&archive, pkl) {
                    for e in &entries {
                        e.layout.gather(archive.bytes(&e.record), e.dtype.size());
                    }
                }
            };
            for len in 0..pkl.len() {
                run(&pkl[..len]);
            }
            let mut mutated = pkl.clone();
            for (i, &byte) in pkl.iter().enumerate() {
                let opcodes = b"().0Q}]qhRsbtuKJX\x85\x86\x93\x94";
                let values = [0, 1, 0x7f, 0x80, 0xff, byte ^ 1, byte ^ 0x80];
                for &b in values.iter().chain(opcodes) {
                    mutated[i] = b;
                    run(&mutated);
                }
                mutated[i] = byte;
            }
        }
    }
}
