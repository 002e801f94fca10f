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
//! State changes are conditional updates (`… WHERE state IN (…)`) built from one transition
//! table (`states`), so a redelivered event or a second planner can never move a run backwards
//! or twice.
//!
//! # Layout
//! One module per concept, each an `impl RunStore` block over its tables:
//! - `runs`: runs (create, find, list, state changes) and idempotency keys.
//! - `segments`: partitions, segments and their encoded blocks.
//! - `files`: planned files and their uploads.
//! - `deliveries`: what runs delivered, and the earlier runs a run replaced.
//! - `replicas`: control-plane heartbeats and orphaned receiving runs.
//! - `stored_credentials`, `stored_destinations`, `tokens`: what tenants store.
//! - `states`: the run state machine, one transition table for every state change.
//! - here: opening the store, the migrations, the SQL helpers and the run states' names.

use filedrop_proto::v1::RunState;
use sqlx::any::{AnyArguments, AnyPoolOptions, AnyQueryResult};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Any, AnyPool, Executor, SqlSafeStr};

mod deliveries;
mod files;
mod replicas;
mod runs;
mod segments;
pub mod states;
mod stored_credentials;
mod stored_destinations;
#[cfg(test)]
mod tests;
mod tokens;

pub use files::FileRecord;
pub use runs::{NewRun, RunFilter, RunRecord};
pub use segments::{Block, EncodedBlocks, NewSegment, SegmentRecord};
pub use stored_credentials::{CredentialRecord, StoredCredential};
pub use stored_destinations::DestinationRecord;

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
    states::STATES
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
        migration(1, "runs", include_str!("../../migrations/0001_runs.sql")),
        migration(
            2,
            "block sizes",
            include_str!("../../migrations/0002_block_sizes.sql"),
        ),
        migration(
            3,
            "partitions",
            include_str!("../../migrations/0003_partitions.sql"),
        ),
        migration(
            4,
            "credentials",
            include_str!("../../migrations/0004_credentials.sql"),
        ),
        migration(
            5,
            "manifest",
            include_str!("../../migrations/0005_manifest.sql"),
        ),
        migration(
            6,
            "tenants",
            include_str!("../../migrations/0006_tenants.sql"),
        ),
        migration(
            7,
            "access key credentials",
            include_str!("../../migrations/0007_access_key_credentials.sql"),
        ),
        migration(
            8,
            "run listing",
            include_str!("../../migrations/0008_run_listing.sql"),
        ),
        migration(
            9,
            "destinations",
            include_str!("../../migrations/0009_destinations.sql"),
        ),
        migration(
            10,
            "receivers",
            include_str!("../../migrations/0010_receivers.sql"),
        ),
        migration(
            11,
            "delivered objects",
            include_str!("../../migrations/0011_delivered_objects.sql"),
        ),
        migration(
            12,
            "accepted exports",
            include_str!("../../migrations/0012_accepted_exports.sql"),
        ),
    ])
}

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
}

/// A write's outcome: `false` when it broke a unique constraint (a name taken).
fn unique(written: Result<AnyQueryResult, sqlx::Error>) -> Result<bool, StoreError> {
    match written {
        Ok(_) => Ok(true),
        Err(sqlx::Error::Database(error)) if error.is_unique_violation() => Ok(false),
        Err(error) => Err(error.into()),
    }
}
