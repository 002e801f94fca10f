//! Flight SQL transactions over bulk ingest: several ingests delivered together at a commit,
//! or none of them.
//!
//! `BeginTransaction` opens one. An ingest in it is received as any other (its rows staged,
//! encoded and uploaded as pending parts while it streams), but its run is *held* in
//! `receiving` at the clean end of its stream instead of being committed. `EndTransaction`
//! COMMIT commits every held run, as the end of its stream would have; ROLLBACK cancels them,
//! which aborts what they uploaded: nothing of the transaction is delivered.
//!
//! An ingest joins a transaction by its `CommandStatementIngest.transaction_id`. ADBC's Flight
//! SQL driver does not send that id, so, unless `ingest.transactions_follow_connection` is off,
//! an ingest without one joins the transaction last begun on its own connection, as in a
//! database session. Flight's `CloseSession` on that connection rolls its transactions back
//! (closing a DB-API connection without a commit rolls back).
//!
//! A failed ingest dooms its transaction: no later ingest may join, and its commit rolls back
//! (as PostgreSQL does with a failed statement). Transactions live in the memory of the replica
//! that began them, like a database session: if that replica stops, the held runs fail by its
//! lease (`leases`); a transaction nobody ends is rolled back after
//! `ingest.transaction_timeout_secs` without a call.
//!
//! [`Transactions`] is the bookkeeping, pure and unit-tested; [`settle`] does what an ended
//! transaction asks of the run store and the planner.

use crate::error::OrInternal;
use crate::planner::Planner;
use crate::store::RunStore;
use filedrop_core::failure::RunFailure;
use filedrop_proto::v1::{ErrorCode, RunState};
use filedrop_runtime::shutdown::Shutdown;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use tonic::Status;
use tracing::{info, warn};

/// Most transactions one tenant may have open on a replica.
pub const MAX_OPEN_PER_TENANT: usize = 1_000;

/// The open transactions of this replica.
#[derive(Debug)]
pub struct Transactions {
    registry: Mutex<Registry>,
    /// A transaction without a call for this long is rolled back.
    pub timeout: Duration,
    follow_connection: bool,
}

#[derive(Debug, Default)]
struct Registry {
    open: HashMap<String, Transaction>,
    /// How many were begun: orders the transactions of a connection.
    begun: u64,
}

#[derive(Debug)]
struct Transaction {
    tenant: String,
    /// The peer address of the connection that began it.
    connection: Option<String>,
    order: u64,
    held: Vec<HeldRun>,
    /// Ingests joined and not yet ended.
    receiving: usize,
    /// Why its commit rolls back: an ingest in it failed.
    doomed: Option<String>,
    last_call: Instant,
}

/// A run whose whole stream was received in a transaction, waiting for its commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldRun {
    /// The run.
    pub run_id: String,
    /// Rows received.
    pub rows: u64,
    /// Segments staged.
    pub segment_count: u64,
}

/// An ingest's place in a transaction, from [`Transactions::join`] until it is held or failed.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "an ingest that joined must be held or failed"]
pub struct Joined {
    /// The transaction.
    pub transaction_id: String,
}

/// What an ended transaction asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Settlement {
    /// Commit every held run.
    Commit(Vec<HeldRun>),
    /// Take back every held run: nothing of the transaction is delivered.
    RollBack {
        /// The held runs.
        runs: Vec<HeldRun>,
        /// Why.
        why: RollBack,
    },
}

/// Why a transaction is rolled back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollBack {
    /// `EndTransaction` ROLLBACK.
    Requested,
    /// `CloseSession` on the connection that began it.
    SessionClosed,
    /// A commit of a transaction one of whose ingests failed (the failure).
    Doomed(String),
    /// No call for the timeout.
    Abandoned(Duration),
}

/// Why a call on a transaction is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No open transaction has this id (for this tenant, on this replica).
    Unknown(String),
    /// The tenant has [`MAX_OPEN_PER_TENANT`] open.
    TooMany,
    /// An ingest joining a transaction in which an earlier one failed.
    Doomed(String),
    /// Ending a transaction while ingests in it are still being received.
    StillReceiving(usize),
    /// A held run whose transaction ended while it was received.
    Ended(String),
}

impl Refusal {
    /// The status a client gets.
    pub fn status(&self) -> Status {
        match self {
            Self::Unknown(id) => Status::not_found(format!(
                "transaction_id: there is no open transaction {id:?}: it was committed or rolled \
                 back (as one is after ingest.transaction_timeout_secs without a call), or it \
                 was begun on another control-plane replica; begin one with BeginTransaction"
            )),
            Self::TooMany => Status::resource_exhausted(format!(
                "BeginTransaction: {MAX_OPEN_PER_TENANT} transactions are open already; end \
                 some (EndTransaction) before beginning more"
            )),
            Self::Doomed(why) => Status::failed_precondition(format!(
                "the transaction is rolled back at its end, because an ingest in it failed \
                 ({why}); roll it back and begin another"
            )),
            Self::StillReceiving(count) => Status::failed_precondition(format!(
                "EndTransaction: {count} ingest(s) of the transaction are still being received; \
                 end it after they return"
            )),
            Self::Ended(id) => Status::aborted(format!(
                "transaction {id:?} ended while this ingest was being received; the ingest was \
                 taken back and nothing of it is delivered"
            )),
        }
    }
}

impl Transactions {
    /// No transactions open; `timeout` without a call rolls one back; `follow_connection`: see
    /// `ingest.transactions_follow_connection`.
    pub fn new(timeout: Duration, follow_connection: bool) -> Self {
        Self {
            registry: Mutex::new(Registry::default()),
            timeout,
            follow_connection,
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Begins a transaction of `tenant` on `connection` (its peer address); answers its id.
    pub fn begin(
        &self,
        tenant: &str,
        connection: Option<String>,
        now: Instant,
    ) -> Result<String, Refusal> {
        let mut registry = self.registry();
        let open = registry
            .open
            .values()
            .filter(|transaction| transaction.tenant == tenant)
            .count();
        if open >= MAX_OPEN_PER_TENANT {
            return Err(Refusal::TooMany);
        }
        registry.begun += 1;
        let id = uuid::Uuid::now_v7().to_string();
        let transaction = Transaction {
            tenant: tenant.to_owned(),
            connection,
            order: registry.begun,
            held: Vec::new(),
            receiving: 0,
            doomed: None,
            last_call: now,
        };
        registry.open.insert(id.clone(), transaction);
        Ok(id)
    }

    /// The transaction an ingest of `tenant` joins: the one its `transaction_id` names, or,
    /// when it names none, the one last begun on its `connection` (if transactions follow
    /// connections). `None`: it commits at the end of its own stream.
    pub fn join(
        &self,
        tenant: &str,
        transaction_id: Option<&[u8]>,
        connection: Option<&str>,
        now: Instant,
    ) -> Result<Option<Joined>, Refusal> {
        let mut registry = self.registry();
        let id = match transaction_id {
            Some(id) => {
                let id = String::from_utf8_lossy(id).into_owned();
                match registry.open.get(&id) {
                    Some(transaction) if transaction.tenant == tenant => id,
                    _ => return Err(Refusal::Unknown(id)),
                }
            }
            None => {
                let Some(connection) = connection.filter(|_| self.follow_connection) else {
                    return Ok(None);
                };
                let latest = registry
                    .open
                    .iter()
                    .filter(|(_, transaction)| {
                        transaction.tenant == tenant
                            && transaction.connection.as_deref() == Some(connection)
                    })
                    .max_by_key(|(_, transaction)| transaction.order);
                match latest {
                    Some((id, _)) => id.clone(),
                    None => return Ok(None),
                }
            }
        };
        let transaction = registry.open.get_mut(&id).expect("found above");
        if let Some(why) = &transaction.doomed {
            return Err(Refusal::Doomed(why.clone()));
        }
        transaction.receiving += 1;
        transaction.last_call = now;
        Ok(Some(Joined { transaction_id: id }))
    }

    /// Holds the run of an ingest whose whole stream was received until its transaction ends.
    /// Refused when the transaction ended meanwhile: the caller takes the run back.
    pub fn hold(&self, joined: Joined, run: Option<HeldRun>, now: Instant) -> Result<(), Refusal> {
        let mut registry = self.registry();
        let Some(transaction) = registry.open.get_mut(&joined.transaction_id) else {
            return Err(Refusal::Ended(joined.transaction_id));
        };
        transaction.receiving -= 1;
        transaction.last_call = now;
        transaction.held.extend(run);
        Ok(())
    }

    /// Records that an ingest in the transaction failed (`why`): its commit will roll back.
    pub fn failed(&self, joined: Joined, why: &str, now: Instant) {
        let mut registry = self.registry();
        if let Some(transaction) = registry.open.get_mut(&joined.transaction_id) {
            transaction.receiving -= 1;
            transaction.last_call = now;
            transaction.doomed.get_or_insert_with(|| why.to_owned());
        }
    }

    /// Ends the transaction `transaction_id` of `tenant`: a commit, or a rollback.
    pub fn end(
        &self,
        tenant: &str,
        transaction_id: &[u8],
        commit: bool,
    ) -> Result<Settlement, Refusal> {
        let mut registry = self.registry();
        let id = String::from_utf8_lossy(transaction_id).into_owned();
        match registry.open.get(&id) {
            Some(transaction) if transaction.tenant == tenant => {
                if transaction.receiving > 0 {
                    return Err(Refusal::StillReceiving(transaction.receiving));
                }
            }
            _ => return Err(Refusal::Unknown(id)),
        }
        let transaction = registry.open.remove(&id).expect("found above");
        Ok(match (commit, transaction.doomed) {
            (true, None) => Settlement::Commit(transaction.held),
            (true, Some(why)) => Settlement::RollBack {
                runs: transaction.held,
                why: RollBack::Doomed(why),
            },
            (false, _) => Settlement::RollBack {
                runs: transaction.held,
                why: RollBack::Requested,
            },
        })
    }

    /// Rolls back every transaction of `tenant` begun on `connection`, whose session closed.
    pub fn close_session(&self, tenant: &str, connection: &str) -> Vec<Settlement> {
        self.remove_where(|transaction| {
            (transaction.tenant == tenant && transaction.connection.as_deref() == Some(connection))
                .then_some(RollBack::SessionClosed)
        })
    }

    /// Rolls back the transactions without a call for the timeout (and no ingest under way).
    pub fn expire(&self, now: Instant) -> Vec<Settlement> {
        let timeout = self.timeout;
        self.remove_where(|transaction| {
            (transaction.receiving == 0
                && now.saturating_duration_since(transaction.last_call) >= timeout)
                .then_some(RollBack::Abandoned(timeout))
        })
    }

    fn remove_where(
        &self,
        mut ends: impl FnMut(&Transaction) -> Option<RollBack>,
    ) -> Vec<Settlement> {
        let mut registry = self.registry();
        let ending: Vec<(String, RollBack)> = registry
            .open
            .iter()
            .filter_map(|(id, transaction)| ends(transaction).map(|why| (id.clone(), why)))
            .collect();
        ending
            .into_iter()
            .filter_map(|(id, why)| registry.open.remove(&id).map(|t| (t, why)))
            .map(|(transaction, why)| Settlement::RollBack {
                runs: transaction.held,
                why,
            })
            .collect()
    }
}

/// Does what an ended transaction asks: commits its held runs (each is planned as the end of
/// its stream would have), or takes them back. A commit finds every held run still receiving
/// first; one that was cancelled or failed meanwhile rolls the whole transaction back.
pub async fn settle(
    settlement: Settlement,
    store: &RunStore,
    planner: &Planner,
) -> Result<(), Status> {
    let (runs, why) = match settlement {
        Settlement::Commit(runs) => {
            let mut stopped = None;
            for held in &runs {
                let run = store
                    .get_run(&held.run_id)
                    .await
                    .or_internal("reading a run of the transaction")?;
                match run {
                    Some(run) if run.state == RunState::Receiving => {}
                    other => {
                        let state = other.map_or(RunState::Unspecified, |run| run.state);
                        stopped = Some((held.run_id.clone(), state));
                        break;
                    }
                }
            }
            let Some((run_id, state)) = stopped else {
                for held in &runs {
                    store
                        .end_stream(&held.run_id, held.rows, held.segment_count)
                        .await
                        .or_internal("committing a run of the transaction")?;
                    planner
                        .plan(&held.run_id)
                        .await
                        .or_internal("planning a run of the transaction")?;
                    info!(run_id = %held.run_id, "run committed by its transaction");
                }
                return Ok(());
            };
            let why = RollBack::Doomed(format!(
                "run {run_id} was {} before the commit",
                state
                    .as_str_name()
                    .trim_start_matches("RUN_STATE_")
                    .to_lowercase()
            ));
            (runs, why)
        }
        Settlement::RollBack { runs, why } => (runs, why),
    };
    for held in &runs {
        if let Err(error) = take_back(store, planner, &held.run_id, &why).await {
            warn!(run_id = %held.run_id, %error, "could not take back a run of a rolled-back transaction");
        }
    }
    match why {
        RollBack::Doomed(reason) => Err(Status::aborted(format!(
            "the transaction was rolled back, and nothing of it was delivered: {reason}"
        ))),
        _ => Ok(()),
    }
}

/// Takes back a run of a rolled-back transaction: cancelled when the client asked for the
/// rollback, failed (`STREAM_INCOMPLETE`, saying what to do) otherwise.
async fn take_back(
    store: &RunStore,
    planner: &Planner,
    run_id: &str,
    why: &RollBack,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let failure = match why {
        RollBack::Requested => {
            if let Some(run) = store.get_run(run_id).await? {
                planner.cancel(&run).await?;
                info!(run_id, "run rolled back with its transaction");
            }
            return Ok(());
        }
        // The usual slip with DB-API clients, whose autocommit is off by default.
        RollBack::SessionClosed => "the export was not committed, and nothing was delivered: \
            its connection closed while its Flight SQL transaction was open; commit the \
            transaction before closing (with ADBC: connection.commit(), or connect with \
            autocommit=True)"
            .to_owned(),
        RollBack::Doomed(reason) => format!(
            "the export was not committed, and nothing was delivered: its Flight SQL \
             transaction was rolled back ({reason})"
        ),
        RollBack::Abandoned(timeout) => format!(
            "the export was not committed, and nothing was delivered: its Flight SQL \
             transaction was neither committed nor rolled back for {} s",
            timeout.as_secs()
        ),
    };
    planner
        .fail_run(
            run_id,
            &RunFailure::new(ErrorCode::StreamIncomplete, failure),
        )
        .await?;
    Ok(())
}

/// Rolls back abandoned transactions until shutdown.
pub async fn expire_abandoned(
    transactions: std::sync::Arc<Transactions>,
    store: RunStore,
    planner: std::sync::Arc<Planner>,
    shutdown: Shutdown,
) {
    let every =
        (transactions.timeout / 4).clamp(Duration::from_millis(200), Duration::from_secs(30));
    loop {
        for settlement in transactions.expire(Instant::now()) {
            info!("a Flight SQL transaction without a call for the timeout is rolled back");
            if let Err(status) = settle(settlement, &store, &planner).await {
                warn!(error = %status.message(), "could not roll back an abandoned transaction");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.wait() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT: &str = "tenant-a";

    fn held(run_id: &str) -> HeldRun {
        HeldRun {
            run_id: run_id.to_owned(),
            rows: 10,
            segment_count: 1,
        }
    }

    fn transactions() -> Transactions {
        Transactions::new(Duration::from_secs(60), true)
    }

    #[test]
    fn a_commit_gives_back_every_held_run_and_ends_the_transaction() {
        let transactions = transactions();
        let now = Instant::now();
        let id = transactions.begin(TENANT, None, now).unwrap();
        for run in ["a", "b"] {
            let joined = transactions
                .join(TENANT, Some(id.as_bytes()), None, now)
                .unwrap()
                .expect("joins the named transaction");
            transactions.hold(joined, Some(held(run)), now).unwrap();
        }
        assert_eq!(
            transactions.end(TENANT, id.as_bytes(), true),
            Ok(Settlement::Commit(vec![held("a"), held("b")]))
        );
        assert_eq!(
            transactions.end(TENANT, id.as_bytes(), true),
            Err(Refusal::Unknown(id))
        );
    }

    #[test]
    fn a_rollback_takes_back_every_held_run() {
        let transactions = transactions();
        let now = Instant::now();
        let id = transactions.begin(TENANT, None, now).unwrap();
        let joined = transactions
            .join(TENANT, Some(id.as_bytes()), None, now)
            .unwrap()
            .unwrap();
        transactions.hold(joined, Some(held("a")), now).unwrap();
        assert_eq!(
            transactions.end(TENANT, id.as_bytes(), false),
            Ok(Settlement::RollBack {
                runs: vec![held("a")],
                why: RollBack::Requested
            })
        );
    }

    #[test]
    fn another_tenant_cannot_join_or_end_a_transaction() {
        let transactions = transactions();
        let now = Instant::now();
        let id = transactions
            .begin(TENANT, Some("peer".into()), now)
            .unwrap();
        assert_eq!(
            transactions.join("tenant-b", Some(id.as_bytes()), None, now),
            Err(Refusal::Unknown(id.clone()))
        );
        assert_eq!(
            transactions.join("tenant-b", None, Some("peer"), now),
            Ok(None)
        );
        assert_eq!(
            transactions.end("tenant-b", id.as_bytes(), true),
            Err(Refusal::Unknown(id.clone()))
        );
        assert!(transactions.end(TENANT, id.as_bytes(), true).is_ok());
    }

    #[test]
    fn an_ingest_without_an_id_joins_the_latest_transaction_of_its_connection() {
        let transactions = transactions();
        let now = Instant::now();
        let _earlier = transactions
            .begin(TENANT, Some("peer-1".into()), now)
            .unwrap();
        let latest = transactions
            .begin(TENANT, Some("peer-1".into()), now)
            .unwrap();
        let _elsewhere = transactions
            .begin(TENANT, Some("peer-2".into()), now)
            .unwrap();
        let joined = transactions
            .join(TENANT, None, Some("peer-1"), now)
            .unwrap();
        assert_eq!(
            joined,
            Some(Joined {
                transaction_id: latest.clone()
            })
        );
        transactions
            .hold(joined.unwrap(), Some(held("a")), now)
            .unwrap();
        // Another connection with no transaction commits on its own.
        assert_eq!(
            transactions.join(TENANT, None, Some("peer-3"), now),
            Ok(None)
        );
        assert_eq!(transactions.join(TENANT, None, None, now), Ok(None));

        let strict = Transactions::new(Duration::from_secs(60), false);
        let _ = strict.begin(TENANT, Some("peer-1".into()), now).unwrap();
        assert_eq!(strict.join(TENANT, None, Some("peer-1"), now), Ok(None));
    }

    #[test]
    fn a_failed_ingest_dooms_its_transaction() {
        let transactions = transactions();
        let now = Instant::now();
        let id = transactions.begin(TENANT, None, now).unwrap();
        let first = transactions
            .join(TENANT, Some(id.as_bytes()), None, now)
            .unwrap()
            .unwrap();
        transactions.hold(first, Some(held("a")), now).unwrap();
        let second = transactions
            .join(TENANT, Some(id.as_bytes()), None, now)
            .unwrap()
            .unwrap();
        transactions.failed(second, "bad value", now);
        assert_eq!(
            transactions.join(TENANT, Some(id.as_bytes()), None, now),
            Err(Refusal::Doomed("bad value".into()))
        );
        assert_eq!(
            transactions.end(TENANT, id.as_bytes(), true),
            Ok(Settlement::RollBack {
                runs: vec![held("a")],
                why: RollBack::Doomed("bad value".into())
            })
        );
    }

    #[test]
    fn a_transaction_does_not_end_while_an_ingest_in_it_is_received() {
        let transactions = transactions();
        let now = Instant::now();
        let id = transactions.begin(TENANT, None, now).unwrap();
        let joined = transactions
            .join(TENANT, Some(id.as_bytes()), None, now)
            .unwrap()
            .unwrap();
        assert_eq!(
            transactions.end(TENANT, id.as_bytes(), true),
            Err(Refusal::StillReceiving(1))
        );
        let later = now + Duration::from_secs(3_600);
        assert_eq!(transactions.expire(later), vec![], "not while receiving");
        transactions.hold(joined, Some(held("a")), now).unwrap();
        assert!(transactions.end(TENANT, id.as_bytes(), true).is_ok());
    }

    #[test]
    fn an_ingest_whose_transaction_ended_meanwhile_is_not_held() {
        let transactions = transactions();
        let now = Instant::now();
        let id = transactions
            .begin(TENANT, Some("peer".into()), now)
            .unwrap();
        let joined = transactions
            .join(TENANT, None, Some("peer"), now)
            .unwrap()
            .unwrap();
        assert_eq!(
            transactions.close_session(TENANT, "peer"),
            vec![Settlement::RollBack {
                runs: vec![],
                why: RollBack::SessionClosed
            }]
        );
        assert_eq!(
            transactions.hold(joined, Some(held("a")), now),
            Err(Refusal::Ended(id))
        );
    }

    #[test]
    fn a_transaction_without_a_call_for_the_timeout_is_rolled_back() {
        let transactions = transactions();
        let start = Instant::now();
        let id = transactions.begin(TENANT, None, start).unwrap();
        let joined = transactions
            .join(TENANT, Some(id.as_bytes()), None, start)
            .unwrap()
            .unwrap();
        let used = start + Duration::from_secs(30);
        transactions.hold(joined, Some(held("a")), used).unwrap();
        assert_eq!(transactions.expire(start + Duration::from_secs(89)), vec![]);
        assert_eq!(
            transactions.expire(used + Duration::from_secs(60)),
            vec![Settlement::RollBack {
                runs: vec![held("a")],
                why: RollBack::Abandoned(Duration::from_secs(60))
            }]
        );
        assert_eq!(
            transactions.end(TENANT, id.as_bytes(), true),
            Err(Refusal::Unknown(id))
        );
    }

    #[test]
    fn a_tenant_has_a_bounded_number_of_open_transactions() {
        let transactions = transactions();
        let now = Instant::now();
        for _ in 0..MAX_OPEN_PER_TENANT {
            transactions.begin(TENANT, None, now).unwrap();
        }
        assert_eq!(transactions.begin(TENANT, None, now), Err(Refusal::TooMany));
        assert!(transactions.begin("tenant-b", None, now).is_ok());
    }
}
