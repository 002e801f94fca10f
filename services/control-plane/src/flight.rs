//! The Arrow Flight service: `DoPut` starts an export, from an `ExportRequest` command or from
//! a Flight SQL bulk ingest (`CommandStatementIngest`, as ADBC's `adbc_ingest` sends it: the
//! table names a stored destination, the options are template variables).
//!
//! Of the rest of Flight SQL, what a bulk-ingest client asks: `GetSqlInfo` (through
//! `GetFlightInfo` and `DoGet`: the server's name, bulk ingest and transactions supported),
//! and the actions `BeginTransaction`, `EndTransaction` and `CloseSession` (see
//! `transactions`). Every other call says it is not supported.

use crate::error::invalid_argument;
use crate::ingest::{Accepted, Ingest, StreamEnd};
use crate::transactions::{Joined, RollBack, Settlement, Transactions, settle};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::{
    ActionBeginTransactionRequest, ActionBeginTransactionResult, ActionEndTransactionRequest, Any,
    Command, CommandStatementIngest, DoPutUpdateResult, EndTransaction, ProstMessageExt, SqlInfo,
    SqlSupportedTransaction,
};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use filedrop_proto::v1::{ErrorCode, ExportAccepted, ExportRequest};
use futures::TryStreamExt;
use futures::stream::BoxStream;
use prost::Message;
use std::sync::Arc;
use std::time::Instant;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};
use tracing::info;

/// The Flight service of the control plane.
#[derive(Clone)]
pub struct FlightEndpoint {
    ingest: Ingest,
    transactions: Arc<Transactions>,
    sql_info: Arc<SqlInfoData>,
}

impl std::fmt::Debug for FlightEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlightEndpoint")
            .field("ingest", &self.ingest)
            .field("transactions", &self.transactions)
            .finish_non_exhaustive()
    }
}

impl FlightEndpoint {
    /// A Flight endpoint over `ingest`, its Flight SQL transactions in `transactions`.
    pub fn new(ingest: Ingest, transactions: Arc<Transactions>) -> Self {
        let sql_info = Arc::new(sql_info(&transactions));
        Self {
            ingest,
            transactions,
            sql_info,
        }
    }
}

/// What `GetSqlInfo` answers: a server for bulk ingest with transactions, no SQL.
fn sql_info(transactions: &Transactions) -> SqlInfoData {
    let mut info = SqlInfoDataBuilder::new();
    info.append(SqlInfo::FlightSqlServerName, "filedrop");
    info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    info.append(SqlInfo::FlightSqlServerReadOnly, false);
    info.append(SqlInfo::FlightSqlServerSql, false);
    info.append(SqlInfo::FlightSqlServerSubstrait, false);
    info.append(SqlInfo::FlightSqlServerCancel, false);
    info.append(SqlInfo::FlightSqlServerBulkIngestion, true);
    info.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, true);
    info.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::Transaction as i32,
    );
    let timeout_ms = i32::try_from(transactions.timeout.as_millis()).unwrap_or(i32::MAX);
    info.append(SqlInfo::FlightSqlServerTransactionTimeout, timeout_ms);
    info.build()
        .expect("the SQL info values are of their kinds")
}

/// The connection a call came on (its peer address): the session of Flight SQL transactions
/// whose ingests do not name them.
fn connection_of<T>(request: &Request<T>) -> Option<String> {
    request.remote_addr().map(|address| address.to_string())
}

/// Flight's `CloseSession` action, and its answer (`CloseSessionResult`, status `CLOSED`).
const CLOSE_SESSION: &str = "CloseSession";

#[derive(Clone, PartialEq, Message)]
struct CloseSessionResult {
    #[prost(int32, tag = "1")]
    status: i32,
}

const CLOSED: i32 = 1;
const BEGIN_TRANSACTION: &str = "BeginTransaction";
const END_TRANSACTION: &str = "EndTransaction";

pub use filedrop_proto::RUN_ID_HEADER;

/// The Flight SQL bulk ingest command the first message carries, if it is one.
fn sql_ingest(first: &FlightData) -> Result<Option<CommandStatementIngest>, Status> {
    let Some(descriptor) = &first.flight_descriptor else {
        return Ok(None);
    };
    let Ok(any) = Any::decode(descriptor.cmd.as_ref()) else {
        return Ok(None);
    };
    if !any.type_url.starts_with(FLIGHT_SQL_TYPE_PREFIX) {
        return Ok(None);
    }
    match Command::try_from(any) {
        Ok(Command::CommandStatementIngest(command)) => Ok(Some(command)),
        Ok(other) => Err(Status::unimplemented(format!(
            "Flight SQL {} is not supported: filedrop takes bulk ingest \
             (CommandStatementIngest) through DoPut, the table naming a stored destination",
            other.type_url().trim_start_matches(FLIGHT_SQL_TYPE_PREFIX)
        ))),
        Err(error) => Err(invalid_argument(
            ErrorCode::Unspecified,
            format!("the Flight SQL command cannot be read: {error}"),
        )),
    }
}

const FLIGHT_SQL_TYPE_PREFIX: &str = "type.googleapis.com/arrow.flight.protocol.sql.";

/// The export a Flight SQL bulk ingest asks for: to the stored destination its table names,
/// with its options as template variables. What a database would make of catalogs and
/// temporary tables has no meaning here and is refused; its transaction is the caller's.
fn export_of_ingest(command: CommandStatementIngest) -> Result<ExportRequest, Status> {
    let refuse = |field: &str, why: &str| {
        Err(invalid_argument(
            ErrorCode::Unspecified,
            format!("CommandStatementIngest.{field}: {why}"),
        ))
    };
    if command.table.is_empty() {
        return refuse(
            "table",
            "name the stored destination to deliver to (DestinationService.CreateDestination)",
        );
    }
    if command.catalog.as_deref().is_some_and(|c| !c.is_empty())
        || command.schema.as_deref().is_some_and(|s| !s.is_empty())
    {
        return refuse(
            "catalog",
            "filedrop has no catalogs or schemas; the table alone names the stored destination",
        );
    }
    if command.temporary {
        return refuse(
            "temporary",
            "a delivery cannot be temporary; leave it unset",
        );
    }
    Ok(ExportRequest {
        stored_destination: command.table,
        variables: command.options.into_iter().collect(),
        // The clean end of an ingest's stream ends its statement: it commits the ingest, as
        // Flight SQL defines autocommit, or leaves it to its transaction's commit.
        commit_at_stream_end: true,
        ..ExportRequest::default()
    })
}

fn decode_request(first: &FlightData) -> Result<ExportRequest, Status> {
    let descriptor = first.flight_descriptor.as_ref().ok_or_else(|| {
        invalid_argument(
            ErrorCode::Unspecified,
            "the first message has no FlightDescriptor: open the DoPut with a descriptor whose \
             command is an ExportRequest",
        )
    })?;
    ExportRequest::decode(descriptor.cmd.as_ref()).map_err(|error| {
        invalid_argument(
            ErrorCode::Unspecified,
            format!("the FlightDescriptor command is not an ExportRequest: {error}"),
        )
    })
}

/// The Flight SQL command in `bytes` (a descriptor's command, a ticket), if it is one.
fn sql_command(bytes: &[u8]) -> Option<Command> {
    let any = Any::decode(bytes).ok()?;
    Command::try_from(any).ok()
}

/// The Flight SQL request an action's body packs.
fn unpack<M: ProstMessageExt>(body: &[u8], action: &str) -> Result<M, Status> {
    Any::decode(body)
        .ok()
        .and_then(|any| any.unpack::<M>().ok().flatten())
        .ok_or_else(|| {
            invalid_argument(
                ErrorCode::Unspecified,
                format!(
                    "the {action} action's body is not the Flight SQL request it takes \
                     (an Any packing {})",
                    M::type_url().trim_start_matches(FLIGHT_SQL_TYPE_PREFIX)
                ),
            )
        })
}

impl FlightEndpoint {
    /// Ends an ingest's part in its transaction: its run held for the commit, or, if it
    /// failed, the transaction doomed. A run whose transaction ended meanwhile (its session
    /// closed) is taken back.
    async fn in_transaction(
        &self,
        joined: Joined,
        accepted: Result<Accepted, Status>,
    ) -> Result<ExportAccepted, Status> {
        let accepted = match accepted {
            Ok(accepted) => accepted,
            Err(status) => {
                self.transactions
                    .failed(joined, status.message(), Instant::now());
                return Err(status);
            }
        };
        let held = accepted.held.clone();
        if let Err(refusal) = self.transactions.hold(joined, held.clone(), Instant::now()) {
            let runs = held.into_iter().collect();
            self.settle_apart(vec![Settlement::RollBack {
                runs,
                why: RollBack::SessionClosed,
            }])
            .await?;
            return Err(refusal.status());
        }
        Ok(accepted.answer)
    }

    /// Settles ended transactions in a task of their own: a client that goes away during a
    /// commit does not leave it half done.
    async fn settle_apart(&self, settlements: Vec<Settlement>) -> Result<(), Status> {
        let store = self.ingest.store.clone();
        let planner = self.ingest.planner.clone();
        tokio::spawn(async move {
            let mut first_error = None;
            for settlement in settlements {
                if let Err(status) = settle(settlement, &store, &planner).await {
                    first_error.get_or_insert(status);
                }
            }
            first_error.map_or(Ok(()), Err)
        })
        .await
        .map_err(|error| {
            Status::internal(format!("ending the transaction was interrupted: {error}"))
        })?
    }
}

fn not_supported(call: &str) -> Status {
    Status::unimplemented(format!(
        "Flight {call} is not supported yet; exports use DoPut with an ExportRequest command"
    ))
}

#[tonic::async_trait]
impl FlightService for FlightEndpoint {
    type HandshakeStream = BoxStream<'static, Result<HandshakeResponse, Status>>;
    type ListFlightsStream = BoxStream<'static, Result<FlightInfo, Status>>;
    type DoGetStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoPutStream = BoxStream<'static, Result<PutResult, Status>>;
    type DoExchangeStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoActionStream = BoxStream<'static, Result<arrow_flight::Result, Status>>;
    type ListActionsStream = BoxStream<'static, Result<ActionType, Status>>;

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        let tenant = crate::auth::tenant_of(&request)?;
        let connection = connection_of(&request);
        let mut stream = request.into_inner();
        let first = stream.message().await?.ok_or_else(|| {
            invalid_argument(
                ErrorCode::Unspecified,
                "the stream is empty: its first message must carry a FlightDescriptor whose \
                 command is an ExportRequest",
            )
        })?;
        let (export, sql_ingest, joined) = match sql_ingest(&first)? {
            Some(command) => {
                let transaction_id = command.transaction_id.clone();
                let export = export_of_ingest(command)?;
                let joined = self
                    .transactions
                    .join(
                        &tenant,
                        transaction_id.as_deref(),
                        connection.as_deref(),
                        Instant::now(),
                    )
                    .map_err(|refusal| refusal.status())?;
                (export, true, joined)
            }
            None => (decode_request(&first)?, false, None),
        };
        let end = if joined.is_some() {
            StreamEnd::Holds
        } else {
            StreamEnd::Commits
        };
        // A task of its own: a client that resets the stream (Ctrl-C, a lost connection) drops
        // this call, but the ingest goes on to read the broken stream and fail its run, and
        // its transaction learns how it ended. A panic in validation or ingest is an answer
        // too, not a reset stream (a run that exists by then is failed inside `export`).
        let endpoint = self.clone();
        let (started, run_started) = tokio::sync::oneshot::channel();
        let answer = tokio::spawn(async move {
            let exported = endpoint
                .ingest
                .export(&tenant, export, first, stream, end, started);
            let accepted = filedrop_runtime::panic::catch(exported)
                .await
                .unwrap_or_else(|panic| {
                    Err(Status::internal(format!(
                        "the export could not be accepted (filedrop {panic}); this is a fault \
                         in filedrop: tell the operators"
                    )))
                });
            let accepted = match joined {
                None => accepted?.answer,
                Some(joined) => endpoint.in_transaction(joined, accepted).await?,
            };
            let app_metadata = if sql_ingest {
                // What Flight SQL clients read: the rows ingested.
                DoPutUpdateResult {
                    record_count: i64::try_from(accepted.rows).unwrap_or(i64::MAX),
                }
                .encode_to_vec()
            } else {
                accepted.encode_to_vec()
            };
            let result = PutResult {
                app_metadata: app_metadata.into(),
            };
            Ok::<_, Status>((accepted.run_id, result))
        });
        let answer = async move {
            answer
                .await
                .map_err(|error| Status::internal(format!("the export was interrupted: {error}")))?
        };
        // The response's headers go out as soon as the run exists, naming it, so that a client
        // interrupted while it still sends knows which run it stopped; the answer follows at
        // the stream's end. A refusal before the run exists is the call's status.
        let (run_id, body): (String, Self::DoPutStream) = match run_started.await {
            Ok(run_id) => {
                let body =
                    futures::stream::once(async move { answer.await.map(|(_, result)| result) });
                (run_id, Box::pin(body))
            }
            Err(_) => {
                let (run_id, result) = answer.await?;
                (run_id, Box::pin(futures::stream::iter([Ok(result)])))
            }
        };
        let mut response = Response::new(body);
        if let Ok(run_id) = MetadataValue::try_from(run_id.as_str()) {
            response.metadata_mut().insert(RUN_ID_HEADER, run_id);
        }
        Ok(response)
    }

    async fn handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        Err(not_supported("Handshake"))
    }

    async fn list_flights(
        &self,
        _request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        Err(not_supported("ListFlights"))
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let descriptor = request.into_inner();
        let Some(Command::CommandGetSqlInfo(query)) = sql_command(&descriptor.cmd) else {
            return Err(not_supported(
                "GetFlightInfo (other than Flight SQL's GetSqlInfo)",
            ));
        };
        let ticket = Ticket::new(query.as_any().encode_to_vec());
        let info = FlightInfo::new()
            .try_with_schema(query.into_builder(&self.sql_info).schema().as_ref())
            .map_err(|error| Status::internal(format!("encoding the SQL info schema: {error}")))?
            .with_endpoint(arrow_flight::FlightEndpoint::new().with_ticket(ticket))
            .with_descriptor(descriptor);
        Ok(Response::new(info))
    }

    async fn poll_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        Err(not_supported("PollFlightInfo"))
    }

    async fn get_schema(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        Err(not_supported("GetSchema"))
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let Some(Command::CommandGetSqlInfo(query)) = sql_command(&request.get_ref().ticket) else {
            return Err(not_supported("DoGet (other than Flight SQL's GetSqlInfo)"));
        };
        let answer = query.into_builder(&self.sql_info);
        let schema = answer.schema();
        let batch = answer.build();
        let data = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(futures::stream::once(async move { batch }))
            .map_err(Status::from);
        Ok(Response::new(Box::pin(data)))
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(not_supported("DoExchange"))
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        let tenant = crate::auth::tenant_of(&request)?;
        let connection = connection_of(&request);
        let action = request.into_inner();
        let answer = match action.r#type.as_str() {
            BEGIN_TRANSACTION => {
                let _: ActionBeginTransactionRequest = unpack(&action.body, BEGIN_TRANSACTION)?;
                let id = self
                    .transactions
                    .begin(&tenant, connection, Instant::now())
                    .map_err(|refusal| refusal.status())?;
                info!(transaction_id = %id, "Flight SQL transaction begun");
                let begun = ActionBeginTransactionResult {
                    transaction_id: id.into_bytes().into(),
                };
                Some(begun.as_any().encode_to_vec())
            }
            END_TRANSACTION => {
                let end: ActionEndTransactionRequest = unpack(&action.body, END_TRANSACTION)?;
                let commit = match end.action() {
                    EndTransaction::Commit => true,
                    EndTransaction::Rollback => false,
                    EndTransaction::Unspecified => {
                        return Err(invalid_argument(
                            ErrorCode::Unspecified,
                            "ActionEndTransactionRequest.action: say END_TRANSACTION_COMMIT or \
                             END_TRANSACTION_ROLLBACK",
                        ));
                    }
                };
                let settlement = self
                    .transactions
                    .end(&tenant, &end.transaction_id, commit)
                    .map_err(|refusal| refusal.status())?;
                info!(commit, "Flight SQL transaction ended");
                self.settle_apart(vec![settlement]).await?;
                None
            }
            CLOSE_SESSION => {
                if let Some(connection) = connection {
                    let settlements = self.transactions.close_session(&tenant, &connection);
                    self.settle_apart(settlements).await?;
                }
                Some(CloseSessionResult { status: CLOSED }.encode_to_vec())
            }
            other => {
                return Err(Status::unimplemented(format!(
                    "Flight action {other:?} is not supported; the actions are \
                     {BEGIN_TRANSACTION}, {END_TRANSACTION} and {CLOSE_SESSION}"
                )));
            }
        };
        let results = answer.map(|body| Ok(arrow_flight::Result { body: body.into() }));
        Ok(Response::new(Box::pin(futures::stream::iter(results))))
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        let actions = [
            (
                BEGIN_TRANSACTION,
                "Begins a Flight SQL transaction of bulk ingests",
            ),
            (
                END_TRANSACTION,
                "Commits or rolls back a Flight SQL transaction",
            ),
            (
                CLOSE_SESSION,
                "Rolls back the transactions begun on this connection",
            ),
        ]
        .map(|(name, description)| {
            Ok(ActionType {
                r#type: name.to_owned(),
                description: description.to_owned(),
            })
        });
        Ok(Response::new(Box::pin(futures::stream::iter(actions))))
    }
}
