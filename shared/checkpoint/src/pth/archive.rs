//! The zip side of a torch.save file. torch writes every record uncompressed, so the file is
//! memory-mapped and records are plain byte ranges of the map: tensors are read lazily and a
//! contiguous one is never copied before it is written out.

use std::collections::HashMap;
use std::fs::File;
use std::io::Cursor;
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use zip::{CompressionMethod, ZipArchive};

use crate::{Error, Result};

#[derive(Debug, Clone)]
pub(super) struct Record {
    pub range: Range<usize>,
    crc32: u32,
    stored: bool,
}

pub(super) struct Archive {
    path: PathBuf,
    map: Mmap,
    /// The archive folder, `<name>/`: torch names it after the file it first saved to.
    prefix: String,
    /// By name below `prefix`.
    records: HashMap<String, Record>,
}

impl Archive {
    pub fn open(path: &Path) -> Result<Self> {
        let fail = |msg: String| Error::Pth {
            path: path.to_path_buf(),
            msg,
        };
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len == 0 {
            return Err(fail("the file is empty".into()));
        }
        // SAFETY: the map is read-only; a checkpoint modified while mapped is outside our
        // contract, as for every mmap-based loader.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        if !map.starts_with(b"PK\x03\x04") {
            return Err(fail(if is_legacy(&map) {
                "legacy (pre-1.6) torch.save format, which this reader does not support: load \
                 it in Python and save it again with torch.save, whose zip format is the \
                 default since torch 1.6"
                    .into()
            } else {
                "not a zip archive, so not a torch.save checkpoint".into()
            }));
        }
        let records = index(&map).map_err(|e| fail(format!("broken zip archive: {e}")))?;

        let mut pickles = records
            .keys()
            .filter_map(|name| name.strip_suffix("/data.pkl"))
            .filter(|dir| !dir.contains('/'));
        let prefix = match (pickles.next(), pickles.next()) {
            (Some(dir), None) => format!("{dir}/"),
            (None, _) => {
                return Err(fail(
                    "no `<archive>/data.pkl` record, so not a torch.save checkpoint".into(),
                ));
            }
            (Some(_), Some(_)) => {
                return Err(fail("several `<archive>/data.pkl` records".into()));
            }
        };
        let records = records
            .into_iter()
            .filter_map(|(name, r)| Some((name.strip_prefix(&prefix)?.to_string(), r)))
            .collect();
        let archive = Self {
            path: path.to_path_buf(),
            map,
            prefix,
            records,
        };
        archive.check_byte_order()?;
        Ok(archive)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The full record name, as `unzip -l` lists it.
    pub fn full_name(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub fn record(&self, name: &str) -> Option<&Record> {
        self.records.get(name)
    }

    /// The bytes of a record, refusing compressed ones: those could only be read by inflating
    /// them into memory, and torch.save never writes them.
    pub fn stored(&self, name: &str, record: &Record) -> std::result::Result<&[u8], String> {
        if !record.stored {
            return Err(format!(
                "record `{}` is compressed; torch.save stores records uncompressed, so re-save \
                 the checkpoint with torch.save",
                self.full_name(name)
            ));
        }
        Ok(self.bytes(record))
    }

    /// Record ranges were checked against the map when indexing.
    pub fn bytes(&self, record: &Record) -> &[u8] {
        &self.map[record.range.clone()]
    }

    pub fn crc_ok(&self, record: &Record) -> bool {
        crc32fast::hash(self.bytes(record)) == record.crc32
    }

    /// `data.pkl`, checksummed: a corrupted pickle could otherwise decode into wrong shapes.
    pub fn pickle(&self) -> Result<&[u8]> {
        let fail = |msg: String| Error::Pth {
            path: self.path.clone(),
            msg,
        };
        let record = self
            .record("data.pkl")
            .ok_or_else(|| fail("no data.pkl".into()))?;
        let bytes = self.stored("data.pkl", record).map_err(fail)?;
        if !self.crc_ok(record) {
            return Err(fail(format!(
                "record `{}` fails its CRC-32 check: the file is corrupted",
                self.full_name("data.pkl")
            )));
        }
        Ok(bytes)
    }

    /// Storages are read as little-endian; torch records the writer's byte order since 1.13
    /// (older files, without the record, come from little-endian machines).
    fn check_byte_order(&self) -> Result<()> {
        let Some(record) = self.record("byteorder") else {
            return Ok(());
        };
        let order = self.stored("byteorder", record);
        match order {
            Ok(b"little") => Ok(()),
            Ok(other) => Err(Error::Pth {
                path: self.path.clone(),
                msg: format!(
                    "byte order `{}` is not supported: re-save the checkpoint on a \
                     little-endian machine",
                    String::from_utf8_lossy(other)
                ),
            }),
            Err(msg) => Err(Error::Pth {
                path: self.path.clone(),
                msg,
            }),
        }
    }
}

/// The legacy format is a bare pickle stream that opens with PROTO and torch's magic number
/// (0x1950a86a20f9469cfc6c as a LONG1, little-endian), after a FRAME at protocol 4 and above.
fn is_legacy(file: &[u8]) -> bool {
    const MAGIC: &[u8] = b"\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19";
    let head = &file[..file.len().min(32)];
    head.first() == Some(&0x80) && head.windows(MAGIC.len()).any(|w| w == MAGIC)
}

fn index(map: &[u8]) -> zip::result::ZipResult<HashMap<String, Record>> {
    let mut zip = ZipArchive::new(Cursor::new(map))?;
    let mut records = HashMap::with_capacity(zip.len());
    for i in 0..zip.len() {
        let file = zip.by_index_raw(i)?;
        if file.is_dir() {
            continue;
        }
        let start = file.data_start().and_then(|s| usize::try_from(s).ok());
        let len = usize::try_from(file.compressed_size()).ok();
        let range = start
            .zip(len)
            .and_then(|(start, len)| Some(start..start.checked_add(len)?))
            .filter(|r| r.end <= map.len())
            .ok_or(zip::result::ZipError::InvalidArchive(
                "a record lies past the end of the file".into(),
            ))?;
        let record = Record {
            range,
            crc32: file.crc32(),
            stored: file.compression() == CompressionMethod::Stored,
        };
        records.insert(file.name()?.into_owned(), record);
    }
    Ok(records)
}
