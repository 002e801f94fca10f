//! Runs: created by an export, found by tenant or idempotency key, moved through their states.

use super::states::{ENDED_UNCOMMITTED, Transition, ended_uncommitted};
use super::{RunStore, StoreError, now_ms, query, state_from_name, state_name};
use filedrop_core::failure::RunFailure;
use filedrop_proto::v1::{ErrorCode, Resolution, RunState};
use sqlx::Row;
use sqlx::any::AnyRow;

/// A run with its file counts; `WHERE` clauses follow.
const RUN_SELECT: &str = "SELECT r.*, \
       (SELECT COUNT(*) FROM files f WHERE f.run_id = r.run_id) AS files, \
       (SELECT COUNT(*) FROM files f WHERE f.run_id = r.run_id AND f.uploaded = 1) \
         AS files_uploaded, \
       (SELECT CAST(COALESCE(SUM(f.size), 0) AS BIGINT) FROM files f \
         WHERE f.run_id = r.run_id AND f.uploaded = 1) AS bytes_uploaded \
     FROM runs r";

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
    /// The sealed export as accepted (`acceptance::AcceptedExport`); `None` for a run accepted
    /// before it was kept.
    pub sealed_spec: Option<Vec<u8>>,
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

impl RunRecord {
    /// Whether the run ended without being committed: nothing of it was delivered, and an
    /// export sent again with its idempotency key is a new attempt.
    pub fn ended_uncommitted(&self) -> bool {
        ENDED_UNCOMMITTED.contains(&self.state) && self.segment_count.is_none()
    }
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
    /// The sealed export as accepted.
    pub sealed_spec: &'a [u8],
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

impl RunStore {
    /// Records a new run, receiving. Returns `false`, recording nothing, when the run's
    /// idempotency key already names one of its tenant's runs.
    pub async fn create_run(&self, run: &NewRun<'_>) -> Result<bool, StoreError> {
        let now = now_ms();
        let inserted = query(
            "INSERT INTO runs (run_id, tenant_id, destination_name, idempotency_key, state, \
             sealed_request, sealed_spec, arrow_schema, receiver, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(run.run_id)
        .bind(run.tenant_id)
        .bind(run.destination_name)
        .bind(run.idempotency_key)
        .bind(state_name(RunState::Receiving))
        .bind(run.sealed_request)
        .bind(run.sealed_spec)
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

    /// Takes the idempotency key from `run_id`, a run that ended before it was committed, so
    /// that a new attempt can hold it; the run stays, without a key.
    pub async fn release_idempotency_key(&self, run_id: &str) -> Result<(), StoreError> {
        query(&format!(
            "UPDATE runs SET idempotency_key = NULL WHERE run_id = ? AND {}",
            ended_uncommitted()
        ))
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

    /// Records the end of the stream: receiving → encoding.
    pub async fn end_stream(
        &self,
        run_id: &str,
        rows: u64,
        segment_count: u64,
    ) -> Result<bool, StoreError> {
        let done = query(&format!(
            "UPDATE runs SET state = '{}', rows = ?, segment_count = ?, updated_at = ? \
                 WHERE run_id = ? AND {}",
            state_name(Transition::EndStream.to()),
            Transition::EndStream.condition()
        ))
        .bind(rows as i64)
        .bind(segment_count as i64)
        .bind(now_ms())
        .bind(run_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn touch(&self, run_id: &str) -> Result<(), StoreError> {
        query("UPDATE runs SET updated_at = ? WHERE run_id = ?")
            .bind(now_ms())
            .bind(run_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Moves the run along its way (`Encoded`, `Uploaded`, `Committed`) if it is where that
    /// transition starts; says whether it moved.
    pub async fn advance(&self, run_id: &str, transition: Transition) -> Result<bool, StoreError> {
        let done = query(&format!(
            "UPDATE runs SET state = ?, updated_at = ? WHERE run_id = ? AND {}",
            transition.condition()
        ))
        .bind(state_name(transition.to()))
        .bind(now_ms())
        .bind(run_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Cancels the run unless it has succeeded or is cancelled already; says whether it was
    /// cancelled now. A failed run's error is cleared: cancelling it gives it up.
    pub async fn cancel(&self, run_id: &str) -> Result<bool, StoreError> {
        let done = query(&format!(
            "UPDATE runs SET state = '{}', error_code = NULL, error_message = NULL, \
             error_resolutions = NULL, updated_at = ? WHERE run_id = ? AND {}",
            state_name(Transition::Cancel.to()),
            Transition::Cancel.condition()
        ))
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
        let done = query(&format!(
            "UPDATE runs SET state = '{}', error_code = NULL, error_message = NULL, \
             error_resolutions = NULL, updated_at = ? \
             WHERE run_id = ? AND {} AND segment_count IS NOT NULL",
            state_name(Transition::Retry.to()),
            Transition::Retry.condition()
        ))
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
        let done = query(&format!(
            "UPDATE runs SET state = '{}', error_code = ?, error_message = ?, \
             error_resolutions = ?, updated_at = ? WHERE run_id = ? AND {}",
            state_name(Transition::Fail.to()),
            Transition::Fail.condition()
        ))
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
        sealed_spec: row.get("sealed_spec"),
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
