//! The Arrow Flight service: `DoPut` starts an export, from an `ExportRequest` command or from
//! a Flight SQL bulk ingest (`CommandStatementIngest`, as ADBC's `adbc_ingest` sends it: the
//! table names a stored destination, the options are template variables). Every other call
//! says it is not supported.

use crate::error::invalid_argument;
use crate::ingest::Ingest;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::{Any, Command, CommandStatementIngest, DoPutUpdateResult};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use filedrop_proto::v1::{ErrorCode, ExportRequest};
use futures::stream::BoxStream;
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

/// The Flight service of the control plane.
#[derive(Debug, Clone)]
pub struct FlightEndpoint {
    ingest: Ingest,
}

impl FlightEndpoint {
    /// A Flight endpoint over `ingest`.
    pub fn new(ingest: Ingest) -> Self {
        Self { ingest }
    }
}

/// The response header naming the run a `DoPut` started (or found, for an idempotency key):
/// Flight SQL clients see only the row count in the body.
pub const RUN_ID_HEADER: &str = "x-filedrop-run-id";

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
/// with its options as template variables. What a database would make of the rest (catalogs,
/// temporary tables, transactions) has no meaning here and is refused.
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
    if command.transaction_id.is_some() {
        return refuse(
            "transaction_id",
            "filedrop has no transactions: each ingest is one delivery, all or nothing",
        );
    }
    Ok(ExportRequest {
        stored_destination: command.table,
        variables: command.options.into_iter().collect(),
        // An ingest outside a transaction commits at the clean end of its stream, as Flight
        // SQL defines autocommit.
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
        let mut stream = request.into_inner();
        let first = stream.message().await?.ok_or_else(|| {
            invalid_argument(
                ErrorCode::Unspecified,
                "the stream is empty: its first message must carry a FlightDescriptor whose \
                 command is an ExportRequest",
            )
        })?;
        let (export, sql_ingest) = match sql_ingest(&first)? {
            Some(command) => (export_of_ingest(command)?, true),
            None => (decode_request(&first)?, false),
        };
        // A task of its own: a client that resets the stream (Ctrl-C, a lost connection) drops
        // this call, but the ingest goes on to read the broken stream and fail its run. A
        // panic in validation or ingest is an answer too, not a reset stream (a run that
        // exists by then is failed inside `export`).
        let ingest = self.ingest.clone();
        let accepted = tokio::spawn(async move {
            filedrop_runtime::panic::catch(ingest.export(&tenant, export, first, stream)).await
        })
        .await
        .map_err(|error| Status::internal(format!("the export was interrupted: {error}")))?
        .unwrap_or_else(|panic| {
            Err(Status::internal(format!(
                "the export could not be accepted (filedrop {panic}); this is a fault in \
                 filedrop: tell the operators"
            )))
        })?;
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
        let mut response: Response<Self::DoPutStream> =
            Response::new(Box::pin(futures::stream::iter([Ok(result)])));
        if let Ok(run_id) = MetadataValue::try_from(accepted.run_id.as_str()) {
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
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(not_supported("GetFlightInfo"))
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
        _request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        Err(not_supported("DoGet"))
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(not_supported("DoExchange"))
    }

    async fn do_action(
        &self,
        _request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        Err(not_supported("DoAction"))
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        Err(not_supported("ListActions"))
    }
}
