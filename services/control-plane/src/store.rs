//! The run store: runs, their partitions, segments and files, stored credentials and API tokens,
//! in SQLite (the embedded default) or PostgreSQL (for several control planes sharing one
//! store), chosen by the URL's scheme, with the same migrations embedded in the binary.
//!
//! Both go through sqlx's `Any` driver with one SQL text: placeholders are numbered (`$1`,
//! which SQLite reads too, see [`query`]), inserts that may repeat say `ON CONFLICT DO
//! NOTHING`, and the migrations' `INTEGER` and `BLOB` columns become `BIGINT` and `BYTEA` on
//! PostgreSQL (see [`migrator`]).
//!
//! Runs and credentials belong to a tenant. The API reads them through the `…_of` functions,
//! which take the caller's tenant and find nothing of another's; the planner reads runs
//! whoever they belong to.
//!
//! State changes are conditional updates (`… WHERE state IN (…)`), so a redelivered event or
//! a second planner can never move a run backwards or twice.

use filedrop_core::failure::RunFailure;
use filedrop_proto::v1::{ErrorCode, Resolution, RunState};
use sqlx::any::{AnyArguments, AnyPoolOptions, AnyQueryResult, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Any, AnyPool, Executor, Row, SqlSafeStr};
use std::collections::BTreeMap;

/// Errors of the run store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("run store: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("run store migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database directory could not be created.
    #[error("run store directory: {0}")]
    Io(#[from] std::io::Error),
}

/// A run as stored.
#[derive(Debug, Clone)]
pub struct RunRecord {
    /// The run id.
    pub run_id: String,
    /// The tenant it belongs to.
    pub tenant_id: String,
    /// Where it is.
    pub state: RunState,
    /// The sealed `ExportRequest`.
    pub sealed_request: Vec<u8>,
    /// Creation time, Unix ms; also the `now` of filename templates.
    pub created_at: i64,
    /// Last change, Unix ms.
    pub updated_at: i64,
    /// Rows received.
    pub rows: u64,
    /// Segments staged, once the stream has ended.
    pub segment_count: Option<u64>,
    /// The Arrow schema (IPC).
    pub arrow_schema: Vec<u8>,
    /// Files planned.
    pub files: u64,
    /// Files uploaded.
    pub files_uploaded: u64,
    /// Bytes uploaded.
    pub bytes_uploaded: u64,
    /// Why it failed.
    pub failure: Option<RunFailure>,
}

/// A staged segment.
#[derive(Debug, Clone)]
pub struct SegmentRecord {
    /// Its position in the stream.
    pub segment_index: u64,
    /// The partition its rows belong to (0 when the export is not partitioned).
    pub partition_index: u64,
    /// Its first row in its partition (in the run, when the export is not partitioned).
    pub row_offset: u64,
    /// Its rows.
    pub row_count: u64,
    /// Whether its block is encoded.
    pub encoded: bool,
    /// The sizes of its blocks, in order, once encoded: one block, or several in a split by
    /// size.
    pub block_sizes: Vec<u64>,
    /// The rows of its blocks, in order, once encoded.
    pub block_rows: Vec<u64>,
}

/// A planned file.
#[derive(Debug, Clone)]
pub struct FileRecord {
    /// Its number in the run, from 1.
    pub file_number: u64,
    /// The partition it belongs to.
    pub partition_index: u64,
    /// Its number in its partition, from 1.
    pub number_in_partition: u64,
    /// Its key at the destination.
    pub object_key: String,
    /// Its rows.
    pub rows: u64,
    /// Its size once uploaded.
    pub uploaded_size: Option<u64>,
    /// The SHA-256 of its bytes once uploaded, lowercase hexadecimal.
    pub sha256: Option<String>,
}

/// A stored credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRecord {
    /// Its id (a UUIDv7: ids sort by creation).
    pub credential_id: String,
    /// What it is.
    pub kind: StoredCredential,
    /// Creation time, Unix ms.
    pub created_at: i64,
}

/// The kinds of stored credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredCredential {
    /// iam-role-to-role: filedrop's own identity assumes `role_arn` with `external_id`.
    RoleToRole {
        /// The bucket owner's role.
        role_arn: String,
        /// The External ID filedrop generated for it.
        external_id: String,
    },
    /// iam-credential: an access key.
    AccessKey {
        /// The key id, shown.
        access_key_id: String,
        /// The whole `AccessKeyCredential`, sealed (see `filedrop_runtime::secrets`).
        sealed_key: Vec<u8>,
    },
}

/// A stored destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationRecord {
    /// Its id.
    pub destination_id: String,
    /// Its name, unique in its tenant.
    pub name: String,
    /// Its `ExportRequest`, encoded.
    pub settings: Vec<u8>,
    /// Creation time, Unix ms.
    pub created_at: i64,
    /// Last change, Unix ms.
    pub updated_at: i64,
}

/// A run to record.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    /// The tenant it belongs to.
    pub tenant_id: &'a str,
    /// Its id (a UUIDv7: ids sort by creation).
    pub run_id: &'a str,
    /// The destination's name, for listing.
    pub destination_name: &'a str,
    /// The export's idempotency key, if it has one.
    pub idempotency_key: Option<&'a str>,
    /// The sealed `ExportRequest`.
    pub sealed_request: &'a [u8],
    /// The Arrow schema (IPC).
    pub arrow_schema: &'a [u8],
    /// The control-plane replica reading its stream (see [`RunStore::heartbeat`]).
    pub receiver: &'a str,
}

/// Which runs a listing wants.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Any of these states; empty: any state.
    pub states: Vec<RunState>,
    /// Created at or after this time, Unix ms.
    pub created_after: Option<i64>,
    /// Created before this time, Unix ms.
    pub created_before: Option<i64>,
    /// To the destination of this name.
    pub destination_name: Option<String>,
}

/// A segment to record.
#[derive(Debug, Clone)]
pub struct NewSegment {
    /// Its position in the stream.
    pub segment_index: u64,
    /// The partition its rows belong to.
    pub partition_index: u64,
    /// Its first row in its partition.
    pub row_offset: u64,
    /// Its rows.
    pub row_count: u64,
}

/// The state's stored name.
pub fn state_name(state: RunState) -> &'static str {
    match state {
        RunState::Unspecified => "unspecified",
        RunState::Receiving => "receiving",
        RunState::Encoding => "encoding",
        RunState::Uploading => "uploading",
        RunState::Committing => "committing",
        RunState::Succeeded => "succeeded",
        RunState::Failed => "failed",
        RunState::Cancelled => "cancelled",
    }
}

fn state_from_name(name: &str) -> RunState {
    [
        RunState::Receiving,
        RunState::Encoding,
        RunState::Uploading,
        RunState::Committing,
        RunState::Succeeded,
        RunState::Failed,
        RunState::Cancelled,
    ]
    .into_iter()
    .find(|state| state_name(*state) == name)
    .unwrap_or(RunState::Unspecified)
}

/// Whether a run in `state` is over.
pub fn is_final(state: RunState) -> bool {
    matches!(
        state,
        RunState::Succeeded | RunState::Failed | RunState::Cancelled
    )
}

/// The migrations, in the dialect of the store: the SQLite text as written, or with its
/// `INTEGER` and `BLOB` columns as PostgreSQL's `BIGINT` and `BYTEA` (SQLite's integers are
/// 64-bit; PostgreSQL's `INTEGER` is not).
fn migrator(postgres: bool) -> Migrator {
    let migration = |version, name: &'static str, sql: &'static str| {
        let sql = if postgres {
            sql.replace("INTEGER", "BIGINT").replace("BLOB", "BYTEA")
        } else {
            sql.to_owned()
        };
        Migration::new(
            version,
            name.into(),
            MigrationType::Simple,
            sqlx::AssertSqlSafe(sql).into_sql_str(),
            false,
        )
    };
    Migrator::with_migrations(vec![
        migration(1, "runs", include_str!("../migrations/0001_runs.sql")),
        migration(
            2,
            "block sizes",
            include_str!("../migrations/0002_block_sizes.sql"),
        ),
        migration(
            3,
            "partitions",
            include_str!("../migrations/0003_partitions.sql"),
        ),
        migration(
            4,
            "credentials",
            include_str!("../migrations/0004_credentials.sql"),
        ),
        migration(
            5,
            "manifest",
            include_str!("../migrations/0005_manifest.sql"),
        ),
        migration(6, "tenants", include_str!("../migrations/0006_tenants.sql")),
        migration(
            7,
            "access key credentials",
            include_str!("../migrations/0007_access_key_credentials.sql"),
        ),
        migration(
            8,
            "run listing",
            include_str!("../migrations/0008_run_listing.sql"),
        ),
        migration(
            9,
            "destinations",
            include_str!("../migrations/0009_destinations.sql"),
        ),
        migration(
            10,
            "receivers",
            include_str!("../migrations/0010_receivers.sql"),
        ),
        migration(
            11,
            "delivered objects",
            include_str!("../migrations/0011_delivered_objects.sql"),
        ),
    ])
}

/// A run with its file counts; `WHERE` clauses follow.
const RUN_SELECT: &str = "SELECT r.*, \
       (SELECT COUNT(*) FROM files f WHERE f.run_id = r.run_id) AS files, \
       (SELECT COUNT(*) FROM files f WHERE f.run_id = r.run_id AND f.uploaded = 1) \
         AS files_uploaded, \
       (SELECT CAST(COALESCE(SUM(f.size), 0) AS BIGINT) FROM files f \
         WHERE f.run_id = r.run_id AND f.uploaded = 1) AS bytes_uploaded \
     FROM runs r";

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `sql` with its `?` placeholders numbered `$1`, `$2`, … in order: PostgreSQL reads only
/// those, and SQLite reads them too. (No SQL text here holds a `?` inside a literal.)
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut number = 0;
    for character in sql.chars() {
        if character == '?' {
            number += 1;
            out.push_str(&format!("${number}"));
        } else {
            out.push(character);
        }
    }
    out
}

/// A query of `sql` (with `?` placeholders, see [`numbered`]).
fn query(sql: &str) -> sqlx::query::Query<'static, Any, AnyArguments> {
    sqlx::query(sqlx::AssertSqlSafe(numbered(sql)))
}

/// The run store.
#[derive(Debug, Clone)]
pub struct RunStore {
    pool: AnyPool,
}

impl RunStore {
    /// Opens the store at `url` and applies migrations: `sqlite://<path>` (the file and its
    /// directory are created if missing) or `postgres://<user>@<host>/<database>` (the
    /// database must exist).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
        let url = if postgres {
            url.to_owned()
        } else {
            let path = url
                .strip_prefix("sqlite://")
                .ok_or_else(|| {
                    StoreError::Database(sqlx::Error::Configuration(
                        format!(
                            "run_store.url {url:?}: give sqlite://<path> or \
                             postgres://<user>@<host>/<database>"
                        )
                        .into(),
                    ))
                })?
                .split('?')
                .next()
                .unwrap_or_default();
            if let Some(parent) = std::path::Path::new(path).parent() {
                std::fs::create_dir_all(parent)?;
            }
            // Created if missing; a second writer waits its turn rather than failing.
            format!("sqlite://{path}?mode=rwc")
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if postgres { 8 } else { 4 })
            .after_connect(move |connection, _| {
                Box::pin(async move {
                    if !postgres {
                        connection
                            .execute(
                                "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; \
                                 PRAGMA foreign_keys = ON;",
                            )
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        migrator(postgres).run(&pool).await?;
        Ok(Self { pool })
    }

    /// Records an API token of `tenant_id` by its SHA-256 (see `crate::auth`).
    pub async fn add_token(
        &self,
        token_hash: &str,
        tenant_id: &str,
        name: &str,
    ) -> Result<(), StoreError> {
        query(
            "INSERT INTO api_tokens (token_hash, tenant_id, name, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(token_hash)
        .bind(tenant_id)
        .bind(name)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The tenant of the API token whose SHA-256 is `token_hash`, if there is one.
    pub async fn tenant_of_token(&self, token_hash: &str) -> Result<Option<String>, StoreError> {
        let row = query("SELECT tenant_id FROM api_tokens WHERE token_hash = ?")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| row.get("tenant_id")))
    }

    /// Records a credential of `tenant_id`.
    pub async fn add_credential(
        &self,
        tenant_id: &str,
        credential: &CredentialRecord,
    ) -> Result<(), StoreError> {
        let (kind, role_arn, external_id, access_key_id, sealed_key) = match &credential.kind {
            StoredCredential::RoleToRole {
                role_arn,
                external_id,
            } => (
                "iam-role-to-role",
                role_arn.as_str(),
                external_id.as_str(),
                "",
                None,
            ),
            StoredCredential::AccessKey {
                access_key_id,
                sealed_key,
            } => (
                "iam-credential",
                "",
                "",
                access_key_id.as_str(),
                Some(sealed_key.as_slice()),
            ),
        };
        query(
            "INSERT INTO credentials (credential_id, tenant_id, kind, role_arn, external_id, \
             access_key_id, sealed_key, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&credential.credential_id)
        .bind(tenant_id)
        .bind(kind)
        .bind(role_arn)
        .bind(external_id)
        .bind(access_key_id)
        .bind(sealed_key)
        .bind(credential.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The credential `credential_id` of `tenant_id`, if there is one.
    pub async fn credential_of(
        &self,
        tenant_id: &str,
        credential_id: &str,
    ) -> Result<Option<CredentialRecord>, StoreError> {
        let row = query("SELECT * FROM credentials WHERE credential_id = ? AND tenant_id = ?")
            .bind(credential_id)
            .bind(tenant_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| credential_from_row(&row)))
    }

    /// Records a destination of `tenant_id`; `false`, recording nothing, when the tenant has
    /// one of that name already.
    pub async fn add_destination(
        &self,
        tenant_id: &str,
        destination: &DestinationRecord,
    ) -> Result<bool, StoreError> {
        let inserted = query(
            "INSERT INTO destinations (destination_id, tenant_id, name, settings, created_at, \
             updated_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&destination.destination_id)
        .bind(tenant_id)
        .bind(&destination.name)
        .bind(&destination.settings)
        .bind(destination.created_at)
        .bind(destination.updated_at)
        .execute(&self.pool)
        .await;
        unique(inserted)
    }

    /// The destination of `tenant_id` whose name or id is `name_or_id`, if there is one.
    pub async fn destination_of(
        &self,
        tenant_id: &str,
        name_or_id: &str,
    ) -> Result<Option<DestinationRecord>, StoreError> {
        let row = query(
            "SELECT * FROM destinations WHERE tenant_id = ? AND (name = ? OR destination_id = ?) \
             ORDER BY name = ? DESC LIMIT 1",
        )
        .bind(tenant_id)
        .bind(name_or_id)
        .bind(name_or_id)
        .bind(name_or_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| destination_from_row(&row)))
    }

    /// Up to `limit` destinations of `tenant_id` by name, after the name `after` when given.
    pub async fn destinations_of(
        &self,
        tenant_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DestinationRecord>, StoreError> {
        let rows = query(
            "SELECT * FROM destinations WHERE tenant_id = ? AND (? IS NULL OR name > ?) \
             ORDER BY name LIMIT ?",
        )
        .bind(tenant_id)
        .bind(after)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(destination_from_row).collect())
    }

    /// Replaces the name and settings of the destination `destination_id` of `tenant_id`;
    /// `Ok(false)` when another of its destinations has that name.
    pub async fn update_destination(
        &self,
        tenant_id: &str,
        destination: &DestinationRecord,
    ) -> Result<bool, StoreError> {
        let updated = query(
            "UPDATE destinations SET name = ?, settings = ?, updated_at = ? \
             WHERE destination_id = ? AND tenant_id = ?",
        )
        .bind(&destination.name)
        .bind(&destination.settings)
        .bind(destination.updated_at)
        .bind(&destination.destination_id)
        .bind(tenant_id)
        .execute(&self.pool)
        .await;
        unique(updated)
    }

    /// Deletes the destination `destination_id` of `tenant_id`; whether there was one.
    pub async fn delete_destination(
        &self,
        tenant_id: &str,
        destination_id: &str,
    ) -> Result<bool, StoreError> {
        let done = query("DELETE FROM destinations WHERE destination_id = ? AND tenant_id = ?")
            .bind(destination_id)
            .bind(tenant_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Up to `limit` credentials of `tenant_id`, newest first, created before the credential
    /// `before` (ids sort by creation) when given.
    pub async fn credentials_of(
        &self,
        tenant_id: &str,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<CredentialRecord>, StoreError> {
        let rows = query(
            "SELECT * FROM credentials WHERE tenant_id = ? AND (? IS NULL OR credential_id < ?) \
             ORDER BY credential_id DESC LIMIT ?",
        )
        .bind(tenant_id)
        .bind(before)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(credential_from_row).collect())
    }

    /// Deletes the credential `credential_id` of `tenant_id`; whether there was one.
    pub async fn delete_credential_of(
        &self,
        tenant_id: &str,
        credential_id: &str,
    ) -> Result<bool, StoreError> {
        let done = query("DELETE FROM credentials WHERE credential_id = ? AND tenant_id = ?")
            .bind(credential_id)
            .bind(tenant_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records a new run, receiving. Returns `false`, recording nothing, when the run's
    /// idempotency key already names one of its tenant's runs.
    pub async fn create_run(&self, run: &NewRun<'_>) -> Result<bool, StoreError> {
        let now = now_ms();
        let inserted = query(
            "INSERT INTO runs (run_id, tenant_id, destination_name, idempotency_key, state, \
             sealed_request, arrow_schema, receiver, created_at, updated_at) \
             VALUES (?, ?, ?, ?, 'receiving', ?, ?, ?, ?, ?)",
        )
        .bind(run.run_id)
        .bind(run.tenant_id)
        .bind(run.destination_name)
        .bind(run.idempotency_key)
        .bind(run.sealed_request)
        .bind(run.arrow_schema)
        .bind(run.receiver)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(error))
                if error.is_unique_violation() && run.idempotency_key.is_some() =>
            {
                Ok(false)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The run of `tenant_id` that the idempotency key `key` names, if there is one.
    pub async fn run_by_idempotency_key(
        &self,
        tenant_id: &str,
        key: &str,
    ) -> Result<Option<RunRecord>, StoreError> {
        let row = query("SELECT run_id FROM runs WHERE tenant_id = ? AND idempotency_key = ?")
            .bind(tenant_id)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => self.get_run(row.get("run_id")).await,
            None => Ok(None),
        }
    }

    /// Records the objects (key, entity tag) the succeeded run `run_id` made visible at
    /// `location` (see `planner::location_of`).
    pub async fn record_delivered(
        &self,
        run_id: &str,
        location: &str,
        objects: &[(String, String)],
    ) -> Result<(), StoreError> {
        let mut transaction = self.pool.begin().await?;
        for (object_key, e_tag) in objects {
            query(
                "INSERT INTO delivered_objects (run_id, location, object_key, e_tag) \
                 VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(run_id)
            .bind(location)
            .bind(object_key)
            .bind(e_tag)
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// The runs of `tenant_id` other than `run_id`, not replaced yet, that delivered one of
    /// `keys` at `location`, each with every object it delivered (key, entity tag).
    pub async fn earlier_deliveries(
        &self,
        tenant_id: &str,
        run_id: &str,
        location: &str,
        keys: &[String],
    ) -> Result<BTreeMap<String, Vec<(String, String)>>, StoreError> {
        let mut runs = BTreeMap::new();
        for key in keys {
            let rows = query(
                "SELECT DISTINCT d.run_id FROM delivered_objects d \
                 JOIN runs r ON r.run_id = d.run_id \
                 WHERE d.location = ? AND d.object_key = ? AND r.tenant_id = ? \
                 AND d.run_id <> ? AND r.superseded_by IS NULL",
            )
            .bind(location)
            .bind(key)
            .bind(tenant_id)
            .bind(run_id)
            .fetch_all(&self.pool)
            .await?;
            for row in rows {
                runs.entry(row.get::<String, _>("run_id"))
                    .or_insert_with(Vec::new);
            }
        }
        for (earlier, objects) in &mut runs {
            let rows = query(
                "SELECT object_key, e_tag FROM delivered_objects WHERE run_id = ? \
                 ORDER BY object_key",
            )
            .bind(earlier.as_str())
            .fetch_all(&self.pool)
            .await?;
            objects.extend(
                rows.iter()
                    .map(|row| (row.get("object_key"), row.get("e_tag"))),
            );
        }
        Ok(runs)
    }

    /// Marks `runs` replaced by `by`: later runs do not look at them again.
    pub async fn supersede(&self, runs: &[String], by: &str) -> Result<(), StoreError> {
        for run_id in runs {
            query("UPDATE runs SET superseded_by = ? WHERE run_id = ? AND superseded_by IS NULL")
                .bind(by)
                .bind(run_id)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Records that the replica `replica_id` is alive now (its lease on the runs it receives).
    pub async fn heartbeat(&self, replica_id: &str) -> Result<(), StoreError> {
        query(
            "INSERT INTO replicas (replica_id, heartbeat_at) VALUES (?, ?) \
             ON CONFLICT (replica_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        )
        .bind(replica_id)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Runs still receiving whose replica has not beaten since `alive_since` (Unix ms), or
    /// that no replica holds: nobody reads their streams any more.
    pub async fn orphaned_receiving_runs(
        &self,
        alive_since: i64,
    ) -> Result<Vec<String>, StoreError> {
        let rows = query(
            "SELECT r.run_id FROM runs r WHERE r.state = 'receiving' AND NOT EXISTS \
             (SELECT 1 FROM replicas p WHERE p.replica_id = r.receiver \
              AND p.heartbeat_at >= ?)",
        )
        .bind(alive_since)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|row| row.get("run_id")).collect())
    }

    /// Forgets replicas silent since `silent_since` (Unix ms): their rows serve no lease.
    pub async fn forget_replicas(&self, silent_since: i64) -> Result<(), StoreError> {
        query("DELETE FROM replicas WHERE heartbeat_at < ?")
            .bind(silent_since)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Takes the idempotency key from `run_id`, a run that ended before it was committed, so
    /// that a new attempt can hold it; the run stays, without a key.
    pub async fn release_idempotency_key(&self, run_id: &str) -> Result<(), StoreError> {
        query(
            "UPDATE runs SET idempotency_key = NULL WHERE run_id = ? \
             AND state IN ('failed', 'cancelled') AND segment_count IS NULL",
        )
        .bind(run_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Up to `limit` runs of `tenant_id` that `filter` wants, newest first, created before the
    /// run `before` (ids sort by creation) when given.
    pub async fn runs_of(
        &self,
        tenant_id: &str,
        filter: &RunFilter,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let mut sql = format!("{RUN_SELECT} WHERE r.tenant_id = ?");
        if before.is_some() {
            sql.push_str(" AND r.run_id < ?");
        }
        if !filter.states.is_empty() {
            let marks = vec!["?"; filter.states.len()].join(", ");
            sql.push_str(&format!(" AND r.state IN ({marks})"));
        }
        if filter.created_after.is_some() {
            sql.push_str(" AND r.created_at >= ?");
        }
        if filter.created_before.is_some() {
            sql.push_str(" AND r.created_at < ?");
        }
        if filter.destination_name.is_some() {
            sql.push_str(" AND r.destination_name = ?");
        }
        sql.push_str(" ORDER BY r.run_id DESC LIMIT ?");
        let mut query = query(&sql).bind(tenant_id);
        if let Some(before) = before {
            query = query.bind(before);
        }
        for state in &filter.states {
            query = query.bind(state_name(*state));
        }
        if let Some(after) = filter.created_after {
            query = query.bind(after);
        }
        if let Some(before) = filter.created_before {
            query = query.bind(before);
        }
        if let Some(name) = &filter.destination_name {
            query = query.bind(name);
        }
        let rows = query.bind(i64::from(limit)).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(run_from_row).collect())
    }

    /// The run `run_id` of `tenant_id`, if there is one.
    pub async fn get_run_of(
        &self,
        tenant_id: &str,
        run_id: &str,
    ) -> Result<Option<RunRecord>, StoreError> {
        Ok(self
            .get_run(run_id)
            .await?
            .filter(|run| run.tenant_id == tenant_id))
    }

    /// The run, whichever tenant it belongs to (for the planner).
    pub async fn get_run(&self, run_id: &str) -> Result<Option<RunRecord>, StoreError> {
        let row = query(&format!("{RUN_SELECT} WHERE r.run_id = ?"))
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| run_from_row(&row)))
    }

    /// Records a partition of a partitioned run: its key text, one per partition column.
    pub async fn add_partition(
        &self,
        run_id: &str,
        partition_index: u64,
        key_values: &[String],
    ) -> Result<(), StoreError> {
        let key_values = serde_json::to_string(key_values).unwrap_or_default();
        query(
            "INSERT INTO partitions (run_id, partition_index, key_values) \
             VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(run_id)
        .bind(partition_index as i64)
        .bind(key_values)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The partitions of a partitioned run: each one's key text by index.
    pub async fn partitions(&self, run_id: &str) -> Result<BTreeMap<u64, Vec<String>>, StoreError> {
        let rows = query(
            "SELECT partition_index, key_values FROM partitions WHERE run_id = ? \
             ORDER BY partition_index",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| {
                let values: String = row.get("key_values");
                (
                    row.get::<i64, _>("partition_index") as u64,
                    serde_json::from_str(&values).unwrap_or_default(),
                )
            })
            .collect())
    }

    /// Records a staged segment, and that the run has received `rows_received` rows; says
    /// whether the run is still receiving (not cancelled or failed meanwhile).
    pub async fn add_segment(
        &self,
        run_id: &str,
        segment: &NewSegment,
        rows_received: u64,
    ) -> Result<bool, StoreError> {
        query(
            "INSERT INTO segments (run_id, segment_index, partition_index, row_offset, \
             row_count) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(run_id)
        .bind(segment.segment_index as i64)
        .bind(segment.partition_index as i64)
        .bind(segment.row_offset as i64)
        .bind(segment.row_count as i64)
        .execute(&self.pool)
        .await?;
        let receiving = query(
            "UPDATE runs SET rows = ?, updated_at = ? WHERE run_id = ? AND state = 'receiving'",
        )
        .bind(rows_received as i64)
        .bind(now_ms())
        .bind(run_id)
        .execute(&self.pool)
        .await?;
        Ok(receiving.rows_affected() == 1)
    }

    /// Records the end of the stream: receiving → encoding.
    pub async fn end_stream(
        &self,
        run_id: &str,
        rows: u64,
        segment_count: u64,
    ) -> Result<bool, StoreError> {
        let done = query(
            "UPDATE runs SET state = 'encoding', rows = ?, segment_count = ?, updated_at = ? \
             WHERE run_id = ? AND state = 'receiving'",
        )
        .bind(rows as i64)
        .bind(segment_count as i64)
        .bind(now_ms())
        .bind(run_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records an encoded segment: the total size of its blocks and, when it is several
    /// blocks, each one's size and rows.
    pub async fn segment_encoded(
        &self,
        run_id: &str,
        segment_index: u64,
        block_size: u64,
        block_sizes: &[u64],
        block_rows: &[u64],
    ) -> Result<(), StoreError> {
        let joined = |numbers: &[u64]| {
            (!numbers.is_empty()).then(|| {
                numbers
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            })
        };
        query(
            "UPDATE segments SET encoded = 1, block_size = ?, block_sizes = ?, block_rows = ? \
             WHERE run_id = ? AND segment_index = ?",
        )
        .bind(block_size as i64)
        .bind(joined(block_sizes))
        .bind(joined(block_rows))
        .bind(run_id)
        .bind(segment_index as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The run's segments, in stream order.
    pub async fn segments(&self, run_id: &str) -> Result<Vec<SegmentRecord>, StoreError> {
        let rows = query(
            "SELECT segment_index, partition_index, row_offset, row_count, encoded, block_size, \
             block_sizes, block_rows FROM segments WHERE run_id = ? ORDER BY segment_index",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        let numbers = |text: String| -> Vec<u64> {
            text.split(',')
                .filter_map(|number| number.parse().ok())
                .collect()
        };
        Ok(rows
            .iter()
            .map(|row| SegmentRecord {
                block_rows: match row.get::<Option<String>, _>("block_rows") {
                    Some(rows) => numbers(rows),
                    None => vec![row.get::<i64, _>("row_count") as u64],
                },
                segment_index: row.get::<i64, _>("segment_index") as u64,
                partition_index: row.get::<i64, _>("partition_index") as u64,
                row_offset: row.get::<i64, _>("row_offset") as u64,
                row_count: row.get::<i64, _>("row_count") as u64,
                encoded: row.get::<i64, _>("encoded") == 1,
                block_sizes: match row.get::<Option<String>, _>("block_sizes") {
                    Some(sizes) => numbers(sizes),
                    None => row
                        .get::<Option<i64>, _>("block_size")
                        .map(|size| vec![size as u64])
                        .unwrap_or_default(),
                },
            })
            .collect())
    }

    /// The run's planned files, by number.
    pub async fn files(&self, run_id: &str) -> Result<Vec<FileRecord>, StoreError> {
        let rows = query(
            "SELECT file_number, partition_index, number_in_partition, object_key, uploaded, \
             size, rows, sha256 FROM files WHERE run_id = ? ORDER BY file_number",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| FileRecord {
                file_number: row.get::<i64, _>("file_number") as u64,
                partition_index: row.get::<i64, _>("partition_index") as u64,
                number_in_partition: row
                    .get::<Option<i64>, _>("number_in_partition")
                    .unwrap_or_else(|| row.get::<i64, _>("file_number"))
                    as u64,
                object_key: row.get("object_key"),
                rows: row.get::<i64, _>("rows") as u64,
                uploaded_size: (row.get::<i64, _>("uploaded") == 1)
                    .then(|| row.get::<Option<i64>, _>("size").unwrap_or(0) as u64),
                sha256: row.get("sha256"),
            })
            .collect())
    }

    /// Records a planned file (its upload task is published).
    pub async fn add_file(&self, run_id: &str, file: &FileRecord) -> Result<(), StoreError> {
        query(
            "INSERT INTO files (run_id, file_number, partition_index, \
             number_in_partition, object_key, rows) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT DO NOTHING",
        )
        .bind(run_id)
        .bind(file.file_number as i64)
        .bind(file.partition_index as i64)
        .bind(file.number_in_partition as i64)
        .bind(&file.object_key)
        .bind(file.rows as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records an uploaded file: its size and SHA-256. Says whether the file was known (its
    /// planning step had recorded it).
    pub async fn file_uploaded(
        &self,
        run_id: &str,
        file_number: u64,
        size: u64,
        sha256: &str,
    ) -> Result<bool, StoreError> {
        let known = query(
            "UPDATE files SET uploaded = 1, size = ?, sha256 = ? WHERE run_id = ? AND file_number = ?",
        )
        .bind(size as i64)
        .bind((!sha256.is_empty()).then_some(sha256))
            .bind(run_id)
            .bind(file_number as i64)
            .execute(&self.pool)
            .await?;
        self.touch(run_id).await?;
        Ok(known.rows_affected() == 1)
    }

    async fn touch(&self, run_id: &str) -> Result<(), StoreError> {
        query("UPDATE runs SET updated_at = ? WHERE run_id = ?")
            .bind(now_ms())
            .bind(run_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Moves the run to `to` if it is in `from`; says whether it moved.
    pub async fn advance(
        &self,
        run_id: &str,
        from: RunState,
        to: RunState,
    ) -> Result<bool, StoreError> {
        let done =
            query("UPDATE runs SET state = ?, updated_at = ? WHERE run_id = ? AND state = ?")
                .bind(state_name(to))
                .bind(now_ms())
                .bind(run_id)
                .bind(state_name(from))
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Cancels the run unless it has succeeded or is cancelled already; says whether it was
    /// cancelled now. A failed run's error is cleared: cancelling it gives it up.
    pub async fn cancel(&self, run_id: &str) -> Result<bool, StoreError> {
        let done = query(
            "UPDATE runs SET state = 'cancelled', error_code = NULL, error_message = NULL, \
             error_resolutions = NULL, updated_at = ? \
             WHERE run_id = ? AND state NOT IN ('succeeded', 'cancelled')",
        )
        .bind(now_ms())
        .bind(run_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Resumes a failed run whose stream was received: failed → encoding, its error cleared,
    /// and its files forgotten so that planning publishes them again (the failure took back
    /// what they uploaded). Says whether it was resumed.
    pub async fn retry(&self, run_id: &str) -> Result<bool, StoreError> {
        let mut transaction = self.pool.begin().await?;
        let done = query(
            "UPDATE runs SET state = 'encoding', error_code = NULL, error_message = NULL, \
             error_resolutions = NULL, updated_at = ? \
             WHERE run_id = ? AND state = 'failed' AND segment_count IS NOT NULL",
        )
        .bind(now_ms())
        .bind(run_id)
        .execute(&mut *transaction)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        // The failure took back every upload: each file goes up again.
        query("DELETE FROM files WHERE run_id = ?")
            .bind(run_id)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(true)
    }

    /// Fails the run unless it is already over; says whether it failed now.
    pub async fn fail(&self, run_id: &str, failure: &RunFailure) -> Result<bool, StoreError> {
        let resolutions = failure
            .resolutions
            .iter()
            .map(|r| (*r as i32).to_string())
            .collect::<Vec<_>>()
            .join(",");
        let done = query(
            "UPDATE runs SET state = 'failed', error_code = ?, error_message = ?, \
             error_resolutions = ?, updated_at = ? \
             WHERE run_id = ? AND state NOT IN ('succeeded', 'failed', 'cancelled')",
        )
        .bind(failure.code as i32)
        .bind(&failure.message)
        .bind(resolutions)
        .bind(now_ms())
        .bind(run_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

/// A write's outcome: `false` when it broke a unique constraint (a name taken).
fn unique(written: Result<AnyQueryResult, sqlx::Error>) -> Result<bool, StoreError> {
    match written {
        Ok(_) => Ok(true),
        Err(sqlx::Error::Database(error)) if error.is_unique_violation() => Ok(false),
        Err(error) => Err(error.into()),
    }
}

fn destination_from_row(row: &AnyRow) -> DestinationRecord {
    DestinationRecord {
        destination_id: row.get("destination_id"),
        name: row.get("name"),
        settings: row.get("settings"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    }
}

fn credential_from_row(row: &AnyRow) -> CredentialRecord {
    let kind = if row.get::<&str, _>("kind") == "iam-credential" {
        StoredCredential::AccessKey {
            access_key_id: row.get("access_key_id"),
            sealed_key: row
                .get::<Option<Vec<u8>>, _>("sealed_key")
                .unwrap_or_default(),
        }
    } else {
        StoredCredential::RoleToRole {
            role_arn: row.get("role_arn"),
            external_id: row.get("external_id"),
        }
    };
    CredentialRecord {
        credential_id: row.get("credential_id"),
        kind,
        created_at: row.get("created_at"),
    }
}

fn run_from_row(row: &AnyRow) -> RunRecord {
    let failure = row
        .get::<Option<i64>, _>("error_code")
        .map(|code| RunFailure {
            code: ErrorCode::try_from(code as i32).unwrap_or(ErrorCode::Internal),
            message: row
                .get::<Option<String>, _>("error_message")
                .unwrap_or_default(),
            resolutions: row
                .get::<Option<String>, _>("error_resolutions")
                .unwrap_or_default()
                .split(',')
                .filter_map(|r| r.parse::<i32>().ok())
                .filter_map(|r| Resolution::try_from(r).ok())
                .collect(),
        });
    RunRecord {
        run_id: row.get("run_id"),
        tenant_id: row.get("tenant_id"),
        state: state_from_name(row.get::<&str, _>("state")),
        sealed_request: row.get("sealed_request"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
        rows: row.get::<i64, _>("rows") as u64,
        segment_count: row.get::<Option<i64>, _>("segment_count").map(|n| n as u64),
        arrow_schema: row.get("arrow_schema"),
        files: row.get::<i64, _>("files") as u64,
        files_uploaded: row.get::<i64, _>("files_uploaded") as u64,
        bytes_uploaded: row.get::<i64, _>("bytes_uploaded") as u64,
        failure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_run<'a>(tenant_id: &'a str, run_id: &'a str) -> NewRun<'a> {
        NewRun {
            tenant_id,
            run_id,
            destination_name: "",
            idempotency_key: None,
            sealed_request: b"sealed",
            arrow_schema: b"schema",
            receiver: "replica-a",
        }
    }

    #[tokio::test]
    async fn a_receiving_run_whose_replica_stopped_beating_is_orphaned() {
        let dir = std::env::temp_dir().join(format!("filedrop-leases-{}", std::process::id()));
        let store = RunStore::open(&format!("sqlite://{}/runs.db", dir.display()))
            .await
            .unwrap();
        let before_a = now_ms() - 1;
        store.heartbeat("replica-a").await.unwrap();
        store.create_run(&new_run("t1", "held")).await.unwrap();
        let orphan = NewRun {
            receiver: "replica-b",
            ..new_run("t1", "orphan")
        };
        store.create_run(&orphan).await.unwrap();
        let received = NewRun {
            receiver: "replica-b",
            ..new_run("t1", "received")
        };
        store.create_run(&received).await.unwrap();
        assert!(store.end_stream("received", 0, 0).await.unwrap());
        // Only replica-a beats: replica-b never did. A received run is not orphaned.
        assert_eq!(
            store.orphaned_receiving_runs(before_a).await.unwrap(),
            ["orphan"]
        );
        // Once replica-a is silent too, its run is orphaned as well.
        let later = now_ms() + 1;
        let mut orphaned = store.orphaned_receiving_runs(later).await.unwrap();
        orphaned.sort();
        assert_eq!(orphaned, ["held", "orphan"]);
        store.forget_replicas(later).await.unwrap();
        store.heartbeat("replica-a").await.unwrap();
        assert_eq!(
            store.orphaned_receiving_runs(before_a).await.unwrap(),
            ["orphan"]
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn runs_move_forward_only_and_fail_once() {
        let dir = std::env::temp_dir().join(format!("filedrop-store-{}", std::process::id()));
        let store = RunStore::open(&format!("sqlite://{}/runs.db", dir.display()))
            .await
            .unwrap();
        store.create_run(&new_run("t1", "r1")).await.unwrap();
        let segment = |segment_index, partition_index, row_offset, row_count| NewSegment {
            segment_index,
            partition_index,
            row_offset,
            row_count,
        };
        store
            .add_segment("r1", &segment(0, 0, 0, 10), 10)
            .await
            .unwrap();
        assert!(store.end_stream("r1", 10, 1).await.unwrap());
        assert!(!store.end_stream("r1", 10, 1).await.unwrap());
        store
            .add_segment("r1", &segment(1, 0, 10, 0), 10)
            .await
            .unwrap();
        store.segment_encoded("r1", 0, 99, &[], &[]).await.unwrap();
        store
            .segment_encoded("r1", 1, 30, &[10, 20], &[4, 6])
            .await
            .unwrap();
        let segments = store.segments("r1").await.unwrap();
        assert!(segments[0].encoded && segments[1].encoded);
        assert_eq!(segments[0].block_sizes, [99]);
        assert_eq!(segments[0].block_rows, [10], "one block holds every row");
        assert_eq!(
            (
                segments[1].block_sizes.as_slice(),
                segments[1].block_rows.as_slice()
            ),
            ([10, 20].as_slice(), [4, 6].as_slice()),
            "several blocks keep their sizes and rows"
        );
        let file = FileRecord {
            file_number: 1,
            partition_index: 0,
            number_in_partition: 1,
            object_key: "k".into(),
            rows: 10,
            uploaded_size: None,
            sha256: None,
        };
        store.add_file("r1", &file).await.unwrap();
        store.add_file("r1", &file).await.unwrap();
        store.file_uploaded("r1", 1, 42, "ab12").await.unwrap();
        let stored = &store.files("r1").await.unwrap()[0];
        assert_eq!(
            (stored.rows, stored.uploaded_size, stored.sha256.as_deref()),
            (10, Some(42), Some("ab12"))
        );
        let run = store.get_run("r1").await.unwrap().unwrap();
        assert_eq!(
            (
                run.state,
                run.rows,
                run.files,
                run.files_uploaded,
                run.bytes_uploaded
            ),
            (RunState::Encoding, 10, 1, 1, 42)
        );
        let failure = RunFailure::new(ErrorCode::InvalidCredentials, "fix it");
        assert!(store.fail("r1", &failure).await.unwrap());
        assert!(!store.fail("r1", &failure).await.unwrap());
        assert!(
            !store
                .advance("r1", RunState::Encoding, RunState::Uploading)
                .await
                .unwrap()
        );
        let run = store.get_run("r1").await.unwrap().unwrap();
        assert_eq!(run.state, RunState::Failed);
        assert_eq!(run.failure, Some(failure));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn partitions_segments_and_files_keep_their_partition() {
        let dir = std::env::temp_dir().join(format!("filedrop-parts-{}", std::process::id()));
        let store = RunStore::open(&format!("sqlite://{}/runs.db", dir.display()))
            .await
            .unwrap();
        store.create_run(&new_run("t1", "r1")).await.unwrap();
        let values = vec!["DE".to_owned(), "a%2Fb".to_owned()];
        store.add_partition("r1", 1, &values).await.unwrap();
        store.add_partition("r1", 1, &values).await.unwrap();
        assert_eq!(
            store.partitions("r1").await.unwrap(),
            BTreeMap::from([(1, values)])
        );
        let segment = NewSegment {
            segment_index: 3,
            partition_index: 1,
            row_offset: 500,
            row_count: 20,
        };
        store.add_segment("r1", &segment, 900).await.unwrap();
        let stored = &store.segments("r1").await.unwrap()[0];
        assert_eq!((stored.partition_index, stored.row_offset), (1, 500));
        assert_eq!(store.get_run("r1").await.unwrap().unwrap().rows, 900);
        let file = FileRecord {
            file_number: (1 << 32) + 2,
            partition_index: 1,
            number_in_partition: 2,
            object_key: "DE/2.csv".into(),
            rows: 0,
            uploaded_size: None,
            sha256: None,
        };
        store.add_file("r1", &file).await.unwrap();
        let stored = &store.files("r1").await.unwrap()[0];
        assert_eq!(
            (
                stored.file_number,
                stored.partition_index,
                stored.number_in_partition
            ),
            (file.file_number, 1, 2)
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn runs_are_listed_newest_first_by_filter_and_keyed_once() {
        let dir = std::env::temp_dir().join(format!("filedrop-listing-{}", std::process::id()));
        let store = RunStore::open(&format!("sqlite://{}/runs.db", dir.display()))
            .await
            .unwrap();
        for (run_id, destination_name) in [("r1", "crm"), ("r2", "ads"), ("r3", "crm")] {
            let run = NewRun {
                destination_name,
                ..new_run("t1", run_id)
            };
            assert!(store.create_run(&run).await.unwrap());
        }
        store.create_run(&new_run("t2", "r4")).await.unwrap();
        store
            .advance("r2", RunState::Receiving, RunState::Encoding)
            .await
            .unwrap();
        let ids = |runs: Vec<RunRecord>| runs.into_iter().map(|r| r.run_id).collect::<Vec<_>>();
        let all = RunFilter::default();
        assert_eq!(
            ids(store.runs_of("t1", &all, None, 10).await.unwrap()),
            ["r3", "r2", "r1"]
        );
        assert_eq!(
            ids(store.runs_of("t1", &all, Some("r3"), 1).await.unwrap()),
            ["r2"]
        );
        let encoding = RunFilter {
            states: vec![RunState::Encoding],
            ..RunFilter::default()
        };
        assert_eq!(
            ids(store.runs_of("t1", &encoding, None, 10).await.unwrap()),
            ["r2"]
        );
        let crm = RunFilter {
            destination_name: Some("crm".into()),
            ..RunFilter::default()
        };
        assert_eq!(
            ids(store.runs_of("t1", &crm, None, 10).await.unwrap()),
            ["r3", "r1"]
        );
        let future = RunFilter {
            created_after: Some(now_ms() + 60_000),
            ..RunFilter::default()
        };
        assert!(
            store
                .runs_of("t1", &future, None, 10)
                .await
                .unwrap()
                .is_empty()
        );

        let keyed = |run_id| NewRun {
            idempotency_key: Some("k"),
            ..new_run("t1", run_id)
        };
        assert!(store.create_run(&keyed("r5")).await.unwrap());
        assert!(
            !store.create_run(&keyed("r6")).await.unwrap(),
            "the key is taken"
        );
        assert!(store.get_run("r6").await.unwrap().is_none());
        let found = store.run_by_idempotency_key("t1", "k").await.unwrap();
        assert_eq!(found.map(|r| r.run_id).as_deref(), Some("r5"));
        assert!(
            store
                .run_by_idempotency_key("t2", "k")
                .await
                .unwrap()
                .is_none()
        );
        let other_tenant = NewRun {
            idempotency_key: Some("k"),
            ..new_run("t2", "r7")
        };
        assert!(
            store.create_run(&other_tenant).await.unwrap(),
            "keys are per tenant"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn credentials_runs_and_tokens_are_found_only_by_their_tenant() {
        let dir = std::env::temp_dir().join(format!("filedrop-credentials-{}", std::process::id()));
        let store = RunStore::open(&format!("sqlite://{}/runs.db", dir.display()))
            .await
            .unwrap();
        let credential = CredentialRecord {
            credential_id: "c1".into(),
            kind: StoredCredential::RoleToRole {
                role_arn: "arn:aws:iam::123456789012:role/exports".into(),
                external_id: "filedrop-0123".into(),
            },
            created_at: 1_700_000_000_000,
        };
        store.add_credential("t1", &credential).await.unwrap();
        let key = CredentialRecord {
            credential_id: "c2".into(),
            kind: StoredCredential::AccessKey {
                access_key_id: "AKID".into(),
                sealed_key: vec![1, 2, 3],
            },
            created_at: 1_700_000_000_001,
        };
        store.add_credential("t1", &key).await.unwrap();
        assert_eq!(
            store.credential_of("t1", "c1").await.unwrap(),
            Some(credential.clone())
        );
        assert_eq!(
            store.credential_of("t1", "c2").await.unwrap(),
            Some(key.clone())
        );
        assert_eq!(store.credential_of("t1", "c3").await.unwrap(), None);
        assert_eq!(store.credential_of("t2", "c1").await.unwrap(), None);
        assert_eq!(
            store.credentials_of("t1", None, 10).await.unwrap(),
            vec![key.clone(), credential.clone()]
        );
        assert_eq!(
            store.credentials_of("t1", Some("c2"), 10).await.unwrap(),
            vec![credential.clone()]
        );
        assert!(
            store
                .credentials_of("t2", None, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(!store.delete_credential_of("t2", "c2").await.unwrap());
        assert!(store.delete_credential_of("t1", "c2").await.unwrap());
        assert_eq!(store.credential_of("t1", "c2").await.unwrap(), None);

        store.create_run(&new_run("t1", "r1")).await.unwrap();
        assert!(store.get_run_of("t1", "r1").await.unwrap().is_some());
        assert!(store.get_run_of("t2", "r1").await.unwrap().is_none());
        assert_eq!(store.get_run("r1").await.unwrap().unwrap().tenant_id, "t1");

        store.add_token("hash-a", "t1", "ci").await.unwrap();
        assert_eq!(
            store.tenant_of_token("hash-a").await.unwrap().as_deref(),
            Some("t1")
        );
        assert_eq!(store.tenant_of_token("hash-b").await.unwrap(), None);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
