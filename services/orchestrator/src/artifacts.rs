//! Finished MP4s on local disk, `<dir>/<job id>.mp4`, under a total size cap: the oldest
//! artifacts are evicted when a new one would pass it.
//!
//! The store is owned by the queue actor (no locking); it decides what to evict and the actor
//! deletes the files off its loop.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

const EXTENSION: &str = "mp4";
/// A video being encoded; renamed to `.mp4` once complete, so a visible artifact is whole.
const PARTIAL_EXTENSION: &str = "mp4.part";

#[derive(Debug)]
pub struct ArtifactStore {
    dir: PathBuf,
    cap_bytes: u64,
    total_bytes: u64,
    /// Stored artifacts, oldest first: `(job id, bytes)`.
    stored: VecDeque<(String, u64)>,
}

impl ArtifactStore {
    /// Creates `dir` if needed and deletes artifacts an earlier run left: jobs live in memory,
    /// so nothing could serve them.
    pub fn open(dir: &Path, cap_bytes: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut removed = 0;
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let stem = name
                .strip_suffix(&format!(".{PARTIAL_EXTENSION}"))
                .or_else(|| name.strip_suffix(&format!(".{EXTENSION}")));
            if stem.is_some_and(is_job_id) {
                std::fs::remove_file(&path)?;
                removed += 1;
            }
        }
        if removed > 0 {
            info!(dir = %dir.display(), removed, "deleted artifacts of an earlier run");
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            cap_bytes,
            total_bytes: 0,
            stored: VecDeque::new(),
        })
    }

    pub fn cap_bytes(&self) -> u64 {
        self.cap_bytes
    }

    pub fn path(&self, job_id: &str) -> PathBuf {
        self.dir.join(format!("{job_id}.{EXTENSION}"))
    }

    pub fn partial_path(&self, job_id: &str) -> PathBuf {
        self.dir.join(format!("{job_id}.{PARTIAL_EXTENSION}"))
    }

    /// Records a new artifact; returns the jobs whose artifacts must go to stay under the cap,
    /// oldest first. The newest artifact always stays, even alone above the cap.
    pub fn add(&mut self, job_id: &str, bytes: u64) -> Vec<String> {
        self.stored.push_back((job_id.to_string(), bytes));
        self.total_bytes += bytes;
        let mut evicted = Vec::new();
        while self.total_bytes > self.cap_bytes && self.stored.len() > 1 {
            let Some((id, size)) = self.stored.pop_front() else {
                break;
            };
            self.total_bytes -= size;
            evicted.push(id);
        }
        evicted
    }

    /// Forgets an artifact whose job is forgotten; returns whether it was stored.
    pub fn remove(&mut self, job_id: &str) -> bool {
        let Some(i) = self.stored.iter().position(|(id, _)| id == job_id) else {
            return false;
        };
        if let Some((_, size)) = self.stored.remove(i) {
            self.total_bytes -= size;
        }
        true
    }
}

/// Deletes artifact files off the caller's task.
pub fn delete_files(paths: Vec<PathBuf>) {
    if paths.is_empty() {
        return;
    }
    tokio::spawn(async move {
        for path in paths {
            if let Err(e) = tokio::fs::remove_file(&path).await
                && e.kind() != std::io::ErrorKind::NotFound
            {
                warn!(path = %path.display(), error = %e, "cannot delete artifact");
            }
        }
    });
}

/// Job ids are 32 lowercase hex digits ([`crate::queue`]).
pub fn is_job_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0000000000000000000000000000000a";
    const B: &str = "0000000000000000000000000000000b";
    const C: &str = "0000000000000000000000000000000c";

    #[test]
    fn evicts_oldest_first_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = ArtifactStore::open(dir.path(), 100).unwrap();
        assert!(store.add(A, 40).is_empty());
        assert!(store.add(B, 40).is_empty());
        assert_eq!(store.add(C, 40), vec![A.to_string()]);
        assert!(store.remove(B));
        assert!(!store.remove(B));
        assert_eq!(
            store.add(A, 500),
            vec![C.to_string()],
            "alone above the cap"
        );
    }

    #[test]
    fn opening_deletes_leftover_artifacts_only() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            format!("{A}.mp4"),
            format!("{B}.mp4.part"),
            "notes.mp4".into(),
            "keep.txt".into(),
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        ArtifactStore::open(dir.path(), 1).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["keep.txt", "notes.mp4"]);
    }
}
