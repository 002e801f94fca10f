//! The staging store and the layout of staged keys. Keys are deterministic from (run,
//! segment), so a redelivered task rewrites the same objects.
//!
//! ```text
//! runs/<run id>/segments/<segment:08>.arrows   Arrow IPC stream of received rows
//! runs/<run id>/blocks/<segment:08>.block      the segment, encoded
//! runs/<run id>/uploads/<file:08>/<tag>        a file's pending upload (`PendingUpload`)
//! runs/<run id>/files/<file:08>                a file smaller than one part, put at the commit
//! stopped/<run id>                             the run failed or was cancelled (`Stopped`)
//! ```
//!
//! The stop mark lives outside the run's directory: it outlasts the run's staging, so that a
//! task still in a queue when the run stopped finds it, however late.

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};
use std::sync::Arc;

pub use object_store::Error as StagingError;

/// Why a run stopped before its end, as its stop mark says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It failed: its staging may be kept for a retry; what it delivered stays.
    Failed,
    /// It was cancelled: nothing it wrote may stay at the destination.
    Cancelled,
}

impl Stopped {
    fn as_bytes(self) -> &'static [u8] {
        match self {
            Self::Failed => b"failed",
            Self::Cancelled => b"cancelled",
        }
    }
}

/// Key of a run's stop mark.
fn stop_mark_key(run_id: &str) -> String {
    format!("stopped/{run_id}")
}

/// The staging store.
#[derive(Debug, Clone)]
pub struct Staging {
    store: Arc<dyn ObjectStore>,
    /// The directory of the local store.
    root: std::path::PathBuf,
}

/// Key of a run's segment.
pub fn segment_key(run_id: &str, segment_index: u64) -> String {
    format!("runs/{run_id}/segments/{segment_index:08}.arrows")
}

/// Key of the block encoded from a run's segment.
pub fn block_key(run_id: &str, segment_index: u64) -> String {
    format!("runs/{run_id}/blocks/{segment_index:08}.block")
}

/// Where the pending uploads of a run's file are recorded (one key per upload under it).
pub fn uploads_of_file(run_id: &str, file_number: u64) -> String {
    format!("runs/{run_id}/uploads/{file_number:08}/")
}

/// Where the pending uploads of all a run's files are recorded.
pub fn uploads_of_run(run_id: &str) -> String {
    format!("runs/{run_id}/uploads/")
}

/// Key of the record of one pending upload of a run's file: `tag` names the upload (see
/// [`upload_tag`]).
pub fn upload_key(run_id: &str, file_number: u64, tag: &str) -> String {
    format!("{}{tag}", uploads_of_file(run_id, file_number))
}

/// The tag of a multipart upload in staging keys: the first 16 hex digits of its id's SHA-256
/// (ids may hold characters a key should not). A file staged whole is tagged `staged`.
pub fn upload_tag(upload_id: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(upload_id.as_bytes())
        .iter()
        .take(8)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The tag of a file small enough to be staged whole and put at the commit.
pub const STAGED_FILE_TAG: &str = "staged";

/// Key of a run's file staged whole, to be put at the commit.
pub fn staged_file_key(run_id: &str, file_number: u64) -> String {
    format!("runs/{run_id}/files/{file_number:08}")
}

/// The staging key of block `part` of a segment encoded as several blocks (a split by size):
/// the first is the segment's block key itself, the others `<block key>.<part>`.
pub fn block_part_key(block_key: &str, part: usize) -> String {
    if part == 0 {
        block_key.to_owned()
    } else {
        format!("{block_key}.{part}")
    }
}

impl Staging {
    /// A store in a local directory, created if missing.
    pub fn local(dir: &std::path::Path) -> Result<Self, StagingError> {
        std::fs::create_dir_all(dir).map_err(|source| StagingError::Generic {
            store: "LocalFileSystem",
            source: Box::new(source),
        })?;
        Ok(Self {
            store: Arc::new(LocalFileSystem::new_with_prefix(dir)?),
            root: dir.to_path_buf(),
        })
    }

    /// Stores `bytes` at `key`, replacing what was there.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StagingError> {
        self.store
            .put(&Path::from(key), PutPayload::from_bytes(bytes))
            .await?;
        Ok(())
    }

    /// Reads the object at `key`.
    pub async fn get(&self, key: &str) -> Result<Bytes, StagingError> {
        self.store.get(&Path::from(key)).await?.bytes().await
    }

    /// The size of the object at `key`.
    pub async fn size(&self, key: &str) -> Result<u64, StagingError> {
        Ok(self.store.head(&Path::from(key)).await?.size)
    }

    /// Marks the run stopped: workers holding its tasks drop them (see `Stopped`).
    pub async fn mark_stopped(&self, run_id: &str, why: Stopped) -> Result<(), StagingError> {
        self.put(&stop_mark_key(run_id), Bytes::from_static(why.as_bytes()))
            .await
    }

    /// Whether, and why, the run is marked stopped. An unreadable mark counts as cancelled:
    /// when in doubt, a worker writes nothing more.
    pub async fn stopped(&self, run_id: &str) -> Result<Option<Stopped>, StagingError> {
        match self.get(&stop_mark_key(run_id)).await {
            Ok(bytes) if bytes.as_ref() == Stopped::Failed.as_bytes() => Ok(Some(Stopped::Failed)),
            Ok(_) => Ok(Some(Stopped::Cancelled)),
            Err(StagingError::NotFound { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Removes the run's stop mark (a failed run is retried, or the mark has served its time).
    pub async fn clear_stopped(&self, run_id: &str) -> Result<(), StagingError> {
        match self.store.delete(&Path::from(stop_mark_key(run_id))).await {
            Ok(()) | Err(StagingError::NotFound { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// The keys under `prefix` (see [`uploads_of_run`]), sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StagingError> {
        use futures::TryStreamExt;
        let prefix = Path::from(prefix.trim_end_matches('/'));
        let mut keys: Vec<String> = self
            .store
            .list(Some(&prefix))
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await?;
        keys.sort();
        Ok(keys)
    }

    /// Deletes one key; a key already gone is fine.
    pub async fn delete(&self, key: &str) -> Result<(), StagingError> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(StagingError::NotFound { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Whether anything is staged for the run.
    pub async fn has_run(&self, run_id: &str) -> bool {
        tokio::fs::try_exists(self.root.join("runs").join(run_id))
            .await
            .unwrap_or(false)
    }

    /// The runs with a staging directory, and the runs with a stop mark with the mark's age.
    pub async fn staged_runs(&self) -> Result<StagedRuns, StagingError> {
        let names = |dir: std::path::PathBuf| async move {
            let mut found = Vec::new();
            let mut entries = match tokio::fs::read_dir(&dir).await {
                Ok(entries) => entries,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(found),
                Err(error) => return Err(error),
            };
            while let Some(entry) = entries.next_entry().await? {
                let age = entry
                    .metadata()
                    .await?
                    .modified()?
                    .elapsed()
                    .unwrap_or_default();
                if let Some(name) = entry.file_name().to_str() {
                    found.push((name.to_owned(), age));
                }
            }
            Ok(found)
        };
        let local = |source: std::io::Error| StagingError::Generic {
            store: "LocalFileSystem",
            source: Box::new(source),
        };
        Ok(StagedRuns {
            runs: names(self.root.join("runs"))
                .await
                .map_err(local)?
                .into_iter()
                .map(|(name, _)| name)
                .collect(),
            stop_marks: names(self.root.join("stopped")).await.map_err(local)?,
        })
    }

    /// Deletes everything staged for a run.
    ///
    /// The run's whole directory goes: a writer killed mid-write leaves object_store's temporary
    /// `<key>#<n>` file, which its listing hides. (A staging bucket will need a listing delete
    /// and a lifecycle rule for abandoned uploads instead.)
    pub async fn delete_run(&self, run_id: &str) -> Result<(), StagingError> {
        match tokio::fs::remove_dir_all(self.root.join("runs").join(run_id)).await {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StagingError::Generic {
                store: "LocalFileSystem",
                source: Box::new(source),
            }),
        }
    }
}

/// What staging holds, for the sweep.
#[derive(Debug, Default)]
pub struct StagedRuns {
    /// Runs with a staging directory.
    pub runs: Vec<String>,
    /// Runs with a stop mark, and how long ago it was written.
    pub stop_marks: Vec<(String, std::time::Duration)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn deleting_a_run_removes_interrupted_writes_too() {
        let dir = std::env::temp_dir().join(format!("filedrop-staging-{}", std::process::id()));
        let staging = Staging::local(&dir).unwrap();
        staging
            .put(&block_key("r1", 0), Bytes::from_static(b"block"))
            .await
            .unwrap();
        staging
            .put(&block_key("r2", 0), Bytes::from_static(b"other"))
            .await
            .unwrap();
        // What object_store leaves when its writer dies before the rename.
        std::fs::write(dir.join("runs/r1/blocks/00000001.block#1"), b"half").unwrap();
        staging.delete_run("r1").await.unwrap();
        assert!(!dir.join("runs/r1").exists());
        assert_eq!(
            staging.get(&block_key("r2", 0)).await.unwrap().as_ref(),
            b"other"
        );
        staging.delete_run("never-staged").await.unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_stop_mark_outlasts_the_runs_staging_until_cleared() {
        let dir = std::env::temp_dir().join(format!("filedrop-stopped-{}", std::process::id()));
        let staging = Staging::local(&dir).unwrap();
        staging
            .put(&block_key("r1", 0), Bytes::from_static(b"block"))
            .await
            .unwrap();
        assert_eq!(staging.stopped("r1").await.unwrap(), None);
        staging.mark_stopped("r1", Stopped::Failed).await.unwrap();
        staging
            .mark_stopped("r2", Stopped::Cancelled)
            .await
            .unwrap();
        assert_eq!(staging.stopped("r1").await.unwrap(), Some(Stopped::Failed));
        assert_eq!(
            staging.stopped("r2").await.unwrap(),
            Some(Stopped::Cancelled)
        );
        assert!(staging.has_run("r1").await);
        staging.delete_run("r1").await.unwrap();
        assert!(!staging.has_run("r1").await);
        assert_eq!(staging.stopped("r1").await.unwrap(), Some(Stopped::Failed));
        let mut staged = staging.staged_runs().await.unwrap();
        staged.stop_marks.sort();
        assert!(staged.runs.is_empty(), "{staged:?}");
        let marked: Vec<&str> = staged
            .stop_marks
            .iter()
            .map(|(run, _)| run.as_str())
            .collect();
        assert_eq!(marked, ["r1", "r2"]);
        staging.clear_stopped("r1").await.unwrap();
        staging.clear_stopped("never-marked").await.unwrap();
        assert_eq!(staging.stopped("r1").await.unwrap(), None);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
