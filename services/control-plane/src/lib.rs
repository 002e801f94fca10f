//! The filedrop control plane: it accepts exports over Arrow Flight, stages their rows,
//! plans the work that workers do through RabbitMQ, and reports runs over gRPC.
//!
//! # Layout
//! - [`config`]: the control plane's configuration.
//! - [`auth`]: API tokens, tenants, and the layer that authenticates every request.
//! - [`acceptance`]: the checks an export's settings pass before data moves, shared by exports,
//!   stored destinations and connection tests.
//! - [`ingest`]: a Flight `DoPut` stream into staged segments and encode tasks.
//! - [`flight`]: the Arrow Flight service (`DoPut`, and what Flight SQL bulk ingest asks).
//! - [`transactions`]: Flight SQL transactions: ingests held until their commit.
//! - [`run_service`]: `RunService` (`GetRun`, `WatchRun`, `ListRuns`, `CancelRun`, `RetryRun`).
//! - [`destination_service`]: `DestinationService` (`TestConnection`).
//! - [`credential_service`]: `CredentialService` (iam-role-to-role credentials and their trust policy,
//!   iam-credential access keys sealed at rest).
//! - [`manifest`]: the manifest written before the success marker.
//! - [`leases`]: each replica's heartbeat, and runs whose receiving replica stopped failed.
//! - [`planner`]: worker events into upload and finalize tasks (a pure decision of what a run
//!   is ready for, and the code that carries it out), run outcomes, cancelling and retrying
//!   runs, and the staging sweep.
//! - [`messages`]: the task messages published to the workers (encode, upload, finalize).
//! - [`store`]: the run store (SQLite or PostgreSQL, embedded migrations), a module per
//!   concept.
//! - [`panics`]: a panic in any call's handler answered as `INTERNAL`.
//! - [`error`]: the mapping of errors to gRPC statuses.
//! - [`wire`]: timestamps and pages, shared by the API services.

pub mod acceptance;
pub mod auth;
pub mod config;
pub mod credential_service;
pub mod destination_service;
pub mod error;
#[cfg(test)]
mod fixtures;
pub mod flight;
pub mod ingest;
pub mod leases;
pub mod manifest;
pub mod messages;
pub mod panics;
pub mod planner;
pub mod run_service;
pub mod store;
pub mod transactions;
pub mod wire;

use arrow_flight::flight_service_server::FlightServiceServer;
use config::ControlPlaneConfig;
use filedrop_proto::v1::credential_service_server::CredentialServiceServer;
use filedrop_proto::v1::destination_service_server::DestinationServiceServer;
use filedrop_proto::v1::run_service_server::RunServiceServer;
use filedrop_runtime::broker::Broker;
use filedrop_runtime::faults::Faults;
use filedrop_runtime::secrets::SecretBox;
use filedrop_runtime::shutdown::Shutdown;
use filedrop_runtime::staging::Staging;
use filedrop_s3::credentials::ServiceIdentity;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tracing::info;

/// Serves on `listener` until `shutdown` is raised: stops accepting, lets calls in flight end,
/// stops consuming events, closes the broker connection.
///
/// `faults` are injected for tests (see `filedrop_runtime::faults`); pass none in production.
pub async fn serve(
    config: ControlPlaneConfig,
    listener: TcpListener,
    faults: Faults,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    config
        .aws_identity
        .validate()
        .and_then(|()| config.leases.validate())
        .map_err(|problem| anyhow::anyhow!("invalid configuration: {problem}"))?;
    let tls_identity = config
        .tls
        .identity()
        .map_err(|problem| anyhow::anyhow!("invalid configuration: {problem}"))?;
    let store = store::RunStore::open(&config.run_store.url).await?;
    let identity = Arc::new(ServiceIdentity::load(&config.aws_identity).await);
    let staging = Staging::local(&config.staging.dir)?;
    let secrets = SecretBox::load_or_create(&config.secrets.key_file)?;
    let broker = Broker::connect(config.broker.clone(), shutdown.clone()).await?;
    let faults = Arc::new(faults);
    let planner = Arc::new(planner::Planner::new(
        store.clone(),
        broker.clone(),
        staging.clone(),
        secrets.clone(),
        Duration::from_secs(config.staging.keep_failed_hours.saturating_mul(3600)),
        faults.clone(),
    ));
    let events = tokio::spawn(planner.clone().consume_events());
    let dead_letters = tokio::spawn(planner.clone().consume_dead_letters());
    let sweep = tokio::spawn(planner.clone().sweep_staging(
        Duration::from_secs(config.staging.sweep_interval_secs.max(1)),
        shutdown.clone(),
    ));
    // This replica's name in the run store: the runs it receives are leased to it.
    let replica_id = uuid::Uuid::now_v7().to_string();
    store.heartbeat(&replica_id).await?;
    let leases = tokio::spawn(leases::keep(
        store.clone(),
        planner.clone(),
        replica_id.clone(),
        config.leases.clone(),
        shutdown.clone(),
    ));
    let transactions = Arc::new(transactions::Transactions::new(
        Duration::from_secs(config.ingest.transaction_timeout_secs.max(1)),
        config.ingest.transactions_follow_connection,
    ));
    let abandoned = tokio::spawn(transactions::expire_abandoned(
        transactions.clone(),
        store.clone(),
        planner.clone(),
        shutdown.clone(),
    ));
    let ingest = ingest::Ingest {
        replica_id,
        store: store.clone(),
        broker: broker.clone(),
        staging,
        secrets: secrets.clone(),
        planner: planner.clone(),
        config: config.ingest.clone(),
        faults: faults.clone(),
        identity: identity.clone(),
    };

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<FlightServiceServer<flight::FlightEndpoint>>()
        .await;
    health
        .set_serving::<RunServiceServer<run_service::RunEndpoint>>()
        .await;
    health
        .set_serving::<CredentialServiceServer<credential_service::CredentialEndpoint>>()
        .await;
    health
        .set_serving::<DestinationServiceServer<destination_service::DestinationEndpoint>>()
        .await;
    // Larger messages are refused with RESOURCE_EXHAUSTED; clients split large tables
    // (pyarrow's `write_table(max_chunksize=…)`).
    let max_message_bytes = config.ingest.max_message_bytes;
    let flight = FlightServiceServer::new(flight::FlightEndpoint::new(ingest, transactions))
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes);
    let destinations =
        DestinationServiceServer::new(destination_service::DestinationEndpoint::new(
            store.clone(),
            secrets.clone(),
            identity.clone(),
        ));
    let credentials = CredentialServiceServer::new(credential_service::CredentialEndpoint::new(
        store.clone(),
        secrets.clone(),
        identity,
    ));
    let token_store = store.clone();
    let runs = RunServiceServer::new(run_service::RunEndpoint::new(
        store,
        planner,
        shutdown.clone(),
    ));
    // Reflection, in both versions (grpcurl and older clients still ask v1alpha), so that
    // tools list and call the services with no proto files.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(filedrop_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    info!(address = %listener.local_addr()?, "control plane listening");
    let wait = shutdown.clone();
    let mut server = tonic::transport::Server::builder();
    if let Some(identity) = tls_identity {
        server = server.tls_config(tonic::transport::ServerTlsConfig::new().identity(
            tonic::transport::Identity::from_pem(identity.certificate, identity.key),
        ))?;
        info!("the listener serves TLS");
    }
    server
        .layer(panics::CatchPanicLayer::new(faults))
        .layer(auth::AuthLayer::new(token_store))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(flight)
        .add_service(runs)
        .add_service(credentials)
        .add_service(destinations)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
            wait.wait().await
        })
        .await?;
    events.await??;
    dead_letters.await??;
    sweep.await?;
    leases.await?;
    abandoned.await?;
    broker.close().await;
    info!("control plane stopped");
    Ok(())
}
