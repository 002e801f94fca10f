//! API tokens and tenants.
//!
//! Every request but health checks and reflection (which describe the API and hold no data)
//! carries `authorization: Bearer <token>`. [`AuthLayer`] looks the token up by its SHA-256 in
//! the run store (tokens are random, so a fast hash is enough; the clear token is shown once,
//! when created) and puts the token's [`Tenant`] in the request's extensions, or answers
//! `UNAUTHENTICATED`. It wraps the whole server, so Flight and gRPC follow the same rule.
//! Handlers read the tenant with [`tenant_of`] and reach only that tenant's runs and
//! credentials; another tenant's object is "not found", so its existence does not leak.

use crate::store::RunStore;
use std::task::{Context, Poll};
use tonic::Status;
use tonic::codegen::{BoxFuture, Service, http};
use tracing::warn;

/// The tenant a request acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant(pub String);

/// Paths served without a token.
const OPEN_PATHS: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// A new API token: `fdt_` and 64 hexadecimal digits (256 random bits).
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("fdt_{}", hex(&bytes))
}

/// Creates an API token for `tenant` in the run store at `store_url`; returns it (the store
/// keeps only its SHA-256).
pub async fn create_token(store_url: &str, tenant: &str, name: &str) -> anyhow::Result<String> {
    if tenant.trim().is_empty() {
        anyhow::bail!("--tenant is empty: name the tenant the token acts for");
    }
    let store = RunStore::open(store_url).await?;
    let token = new_token();
    store.add_token(&token_hash(&token), tenant, name).await?;
    Ok(token)
}

/// The SHA-256 of a token, hexadecimal: what the run store keeps.
pub fn token_hash(token: &str) -> String {
    hex(&sha2::Digest::finalize(sha2::Digest::chain_update(
        sha2::Sha256::default(),
        token.as_bytes(),
    )))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The tenant of an authenticated request.
pub fn tenant_of<T>(request: &tonic::Request<T>) -> Result<String, Status> {
    request
        .extensions()
        .get::<Tenant>()
        .map(|tenant| tenant.0.clone())
        .ok_or_else(|| Status::unauthenticated("the request carries no API token"))
}

/// Authenticates every request of the server it wraps.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    store: RunStore,
}

impl AuthLayer {
    /// Tokens are looked up in `store`.
    pub fn new(store: RunStore) -> Self {
        Self { store }
    }
}

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticate {
            inner,
            store: self.store.clone(),
        }
    }
}

/// A service that lets only authenticated requests through (see the module's doc).
#[derive(Debug, Clone)]
pub struct Authenticate<S> {
    inner: S,
    store: RunStore,
}

impl<S, B> Service<http::Request<B>> for Authenticate<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The service made ready is the one that serves; a fresh clone waits for the next call.
        let fresh = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, fresh);
        let store = self.store.clone();
        Box::pin(async move {
            let path = request.uri().path();
            if OPEN_PATHS.iter().any(|open| path.starts_with(open)) {
                return ready.call(request).await;
            }
            match authenticate(&store, request.headers()).await {
                Ok(tenant) => {
                    request.extensions_mut().insert(tenant);
                    ready.call(request).await
                }
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

async fn authenticate(store: &RunStore, headers: &http::HeaderMap) -> Result<Tenant, Status> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Err(Status::unauthenticated(
            "no API token: send the header `authorization: Bearer <token>`",
        ));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            Status::unauthenticated("the authorization header must be `Bearer <token>`")
        })?;
    match store.tenant_of_token(&token_hash(token)).await {
        Ok(Some(tenant)) => Ok(Tenant(tenant)),
        Ok(None) => Err(Status::unauthenticated(
            "the API token is not valid: ask the operators for one \
             (`filedrop-control-plane token create --tenant <tenant>`)",
        )),
        Err(error) => {
            warn!(%error, "API token lookup failed");
            Err(Status::unavailable(
                "the run store cannot be read; try again",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_stored_as_their_sha256() {
        let token = new_token();
        assert!(token.starts_with("fdt_") && token.len() == 68, "{token}");
        assert_ne!(token, new_token());
        let hash = token_hash(&token);
        assert_eq!(hash.len(), 64);
        assert!(!hash.contains(&token[4..]));
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
