//! A panic in a call's handler is an answer too: `INTERNAL`, naming the call and the place of
//! the panic, instead of a reset stream. [`CatchPanicLayer`] wraps the whole gRPC server; the
//! export ingest has a boundary of its own as well, which fails the run it was receiving.

use filedrop_runtime::faults::{Faults, Place};
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::Status;
use tonic::codegen::{BoxFuture, Service, http};

/// Catches a panic in any call's handler (see the module's documentation).
#[derive(Debug, Clone, Default)]
pub struct CatchPanicLayer {
    /// Faults injected for tests (at `api`, matched against the call's path); none in
    /// production.
    faults: Arc<Faults>,
}

impl CatchPanicLayer {
    /// The layer, injecting `faults` (tests only).
    pub fn new(faults: Arc<Faults>) -> Self {
        Self { faults }
    }
}

impl<S> tower_layer::Layer<S> for CatchPanicLayer {
    type Service = CatchPanic<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CatchPanic {
            inner,
            faults: self.faults.clone(),
        }
    }
}

/// The service [`CatchPanicLayer`] makes.
#[derive(Debug, Clone)]
pub struct CatchPanic<S> {
    inner: S,
    faults: Arc<Faults>,
}

impl<S, B> Service<http::Request<B>> for CatchPanic<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let call = request.uri().path().to_owned();
        let handled = self.inner.call(request);
        let faults = self.faults.clone();
        Box::pin(async move {
            let answered = filedrop_runtime::panic::catch(async {
                faults.inject(Place::Api, call.as_bytes());
                handled.await
            })
            .await;
            answered.unwrap_or_else(|panic| {
                Ok(Status::internal(format!(
                    "{call} failed unexpectedly (filedrop {panic}); this is a fault in filedrop: \
                     tell the operators"
                ))
                .into_http())
            })
        })
    }
}
