//! The staging store and the layout of staged keys. Keys are deterministic from (run,
//! segment), so a redelivered task rewrites the same objects.
//!
//! ```text
//! runs/<run id>/segments/<segment:08>.arrows   Arrow IPC stream of received rows
//! runs/<run id>/blocks/<segment:08>.block      the segment, encoded
//! ```

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};
use std::sync::Arc;

pub use object_store::Error as StagingError;

/// The staging store.
#[derive(Debug, Clone)]
pub struct Staging {
    store: Arc<dyn ObjectStore>,
}

/// Key of a run's segment.
pub fn segment_key(run_id: &str, segment_index: u64) -> String {
    format!("runs/{run_id}/segments/{segment_index:08}.arrows")
}

/// Key of the block encoded from a run's segment.
pub fn block_key(run_id: &str, segment_index: u64) -> String {
    format!("runs/{run_id}/blocks/{segment_index:08}.block")
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
    pub async fn delete_run(&self, run_id: &str) -> Result<(), StagingError> {
        let prefix = Path::from(format!("runs/{run_id}"));
        let keys: Vec<Path> = self
            .store
            .list(Some(&prefix))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await?;
        for key in keys {
            match self.store.delete(&key).await {
                Ok(()) | Err(StagingError::NotFound { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}
