//! The connection to the control plane: its address, the tenant's token on every call, and
//! TLS trusting the CA the operators name.

use anyhow::Context;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// A channel whose calls carry the token.
pub type Authorized = InterceptedService<Channel, Bearer>;

/// The control plane could not be reached.
#[derive(Debug)]
pub struct Unreachable(pub String);

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot reach the control plane at {}", self.0)
    }
}

impl std::error::Error for Unreachable {}

/// Connects to `server` (`http://…`, or `https://…` with the CA that signed its certificate,
/// `ca_pem`); calls carry `token`.
pub async fn connect(
    server: &str,
    token: &str,
    ca_pem: Option<Vec<u8>>,
) -> anyhow::Result<Authorized> {
    let bearer = format!("Bearer {token}")
        .parse()
        .context("the token holds characters a header cannot carry")?;
    let mut endpoint = Endpoint::from_shared(server.to_owned()).with_context(|| {
        format!("--server {server:?} is not a URL such as http://127.0.0.1:50051")
    })?;
    if server.starts_with("https://") {
        let ca = ca_pem.context(
            "an https:// server needs --ca-file (FILEDROP_CA_FILE): the PEM of the CA that \
             signed its certificate",
        )?;
        endpoint = endpoint
            .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)))?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|error| anyhow::Error::new(Unreachable(format!("{server} ({error})"))))?;
    Ok(InterceptedService::new(channel, Bearer(bearer)))
}
