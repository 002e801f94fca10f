//! The staging store and the layout of staged keys. Keys are deterministic from (run,
//! segment), so a redelivered task rewrites the same objects.
//!
//! ```text
//! runs/<run id>/segments/<segment:08>.arrows   Arrow IPC stream of received rows
//! runs/<run id>/blocks/<segment:08>.block      the segment, encoded
//! runs/<run id>/receipts/<file:08>.receipt     a delivered file (`DeliveryReceipt`)
//! ```

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};
use std::sync::Arc;

pub use object_store::Error as StagingError;

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

/// Key of the receipt of a run's delivered file.
pub fn receipt_key(run_id: &str, file_number: u64) -> String {
    format!("runs/{run_id}/receipts/{file_number:08}.receipt")
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
}
