//! RabbitMQ through `lapin`.
//!
//! Topology, declared on boot by every process (declarations are idempotent), with every name
//! prefixed by the configured namespace `<ns>`:
//!
//! ```text
//! exchange <ns>.tasks  (direct) ─encode──▶ queue <ns>.encode    (quorum)
//!                               ─upload──▶ queue <ns>.upload    (quorum)
//!                               ─finalize▶ queue <ns>.finalize  (quorum)
//! exchange <ns>.events (direct) ─events──▶ queue <ns>.events    (quorum)
//! exchange <ns>.dead-letter (fanout) ────▶ queue <ns>.dead-letter (quorum)
//!                                    └───▶ queue <ns>.dead-letter.runs (quorum)
//! ```
//!
//! Work queues dead-letter a message that is rejected, or redelivered more than
//! [`DELIVERY_LIMIT`] times (a poison message). `<ns>.dead-letter` keeps it for the operators
//! to inspect; the control plane consumes the copy in `<ns>.dead-letter.runs`
//! ([`Broker::consume_dead_letters`]) to fail the runs of poison messages.
//!
//! Publishing waits for the broker's confirm. Consuming uses manual acks and a bounded
//! prefetch; a handler says what to do with the message through [`Outcome`]. When the
//! connection drops, publishers and consumers reconnect with exponential backoff and
//! redeclare the topology.

use crate::settings::BrokerConfig;
use crate::shutdown::Shutdown;
use futures::StreamExt;
use lapin::Confirmation;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tracing::{info, warn};

/// Deliveries of one message after which a quorum queue dead-letters it.
pub const DELIVERY_LIMIT: i64 = 10;
/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Pause before a message a handler could not process yet goes back to its queue: without it
/// a failing message would be redelivered at once, in a tight loop, until its delivery limit.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// The queues of the topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    /// Encode tasks, for encoder workers.
    Encode,
    /// Upload tasks, for uploader workers.
    Upload,
    /// Finalize tasks, for uploader workers.
    Finalize,
    /// Worker events, for the control plane.
    Events,
}

impl Queue {
    fn suffix(self) -> &'static str {
        match self {
            Self::Encode => "encode",
            Self::Upload => "upload",
            Self::Finalize => "finalize",
            Self::Events => "events",
        }
    }

    fn exchange_suffix(self) -> &'static str {
        match self {
            Self::Events => "events",
            _ => "tasks",
        }
    }
}

/// Errors of the broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The broker could not be reached in time.
    #[error(
        "cannot reach RabbitMQ at {address}: {source}; start it (deploy/local/services.sh start) \
         or set broker.url"
    )]
    Unreachable {
        /// The broker address, without credentials.
        address: String,
        /// The last error.
        #[source]
        source: lapin::Error,
    },
    /// A call to the broker failed.
    #[error("rabbitmq: {0}")]
    Amqp(#[from] lapin::Error),
    /// The broker refused a published message.
    #[error("rabbitmq did not accept a message for {0}")]
    NotConfirmed(String),
    /// The process is shutting down.
    #[error("shutting down")]
    ShuttingDown,
}

/// What to do with a consumed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done: acknowledge it.
    Ack,
    /// Failed for now: put it back to be tried again (after a pause).
    Retry,
    /// Can never succeed: dead-letter it.
    Reject,
}

/// Why a message was dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeathReason {
    /// A handler rejected it ([`Outcome::Reject`]): it reported what went wrong itself.
    Rejected,
    /// It was delivered more than [`DELIVERY_LIMIT`] times without being settled: each
    /// process that took it stopped (crashed, or was killed) before finishing it.
    DeliveryLimit,
    /// Another reason RabbitMQ gives (`expired`, `maxlen`), or none.
    Other(String),
}

/// A message of the dead-letter queue.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The message as it was published.
    pub payload: Vec<u8>,
    /// The work queue it died in, if it is one of the topology's.
    pub queue: Option<Queue>,
    /// Why it died.
    pub reason: DeathReason,
}

impl DeadLetter {
    /// Reads RabbitMQ's `x-first-death-queue` and `x-first-death-reason` headers.
    fn from_delivery(namespace: &str, payload: Vec<u8>, properties: &BasicProperties) -> Self {
        let header = |name: &str| -> Option<String> {
            let headers = properties.headers().as_ref()?;
            match headers.inner().get(name)? {
                AMQPValue::LongString(text) => {
                    Some(String::from_utf8_lossy(text.as_bytes()).into_owned())
                }
                AMQPValue::ShortString(text) => Some(text.as_str().to_owned()),
                _ => None,
            }
        };
        let queue = header("x-first-death-queue").and_then(|name| {
            [Queue::Encode, Queue::Upload, Queue::Finalize, Queue::Events]
                .into_iter()
                .find(|queue| name == format!("{namespace}.{}", queue.suffix()))
        });
        let reason = match header("x-first-death-reason").as_deref() {
            Some("rejected") => DeathReason::Rejected,
            Some("delivery_limit") => DeathReason::DeliveryLimit,
            other => DeathReason::Other(other.unwrap_or_default().to_owned()),
        };
        Self {
            payload,
            queue,
            reason,
        }
    }
}

struct Link {
    connection: Connection,
    publisher: Channel,
    generation: u64,
}

/// A connection to RabbitMQ that comes back after the broker goes away.
pub struct Broker {
    config: BrokerConfig,
    link: Mutex<Option<Arc<Link>>>,
    generation: std::sync::atomic::AtomicU64,
    shutdown: Shutdown,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("address", &redact(&self.config.url))
            .field("namespace", &self.config.namespace)
            .finish()
    }
}

/// The URL without user and password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

impl Broker {
    /// Connects and declares the topology, trying for `connect_timeout_secs` before failing.
    pub async fn connect(
        config: BrokerConfig,
        shutdown: Shutdown,
    ) -> Result<Arc<Self>, BrokerError> {
        let broker = Arc::new(Self {
            config,
            link: Mutex::new(None),
            generation: std::sync::atomic::AtomicU64::new(0),
            shutdown,
        });
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(broker.config.connect_timeout_secs);
        let mut backoff = Duration::from_millis(200);
        loop {
            match broker.open_link().await {
                Ok(link) => {
                    *broker.link.lock().await = Some(link);
                    info!(address = %redact(&broker.config.url), namespace = %broker.config.namespace, "connected to rabbitmq");
                    return Ok(broker);
                }
                Err(source) if tokio::time::Instant::now() >= deadline => {
                    return Err(BrokerError::Unreachable {
                        address: redact(&broker.config.url),
                        source,
                    });
                }
                Err(error) => {
                    warn!(%error, "rabbitmq not reachable yet, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// The full name of a queue.
    pub fn queue_name(&self, queue: Queue) -> String {
        format!("{}.{}", self.config.namespace, queue.suffix())
    }

    /// The copy of the dead letters that [`Broker::consume_dead_letters`] reads.
    fn dead_letters_for_runs(&self) -> String {
        format!("{}.dead-letter.runs", self.config.namespace)
    }

    async fn open_link(&self) -> Result<Arc<Link>, lapin::Error> {
        let connection = Connection::connect(
            &self.config.url,
            ConnectionProperties::default()
                .with_connection_name(LongString::from(format!("filedrop-{}", std::process::id()))),
        )
        .await?;
        let publisher = connection.create_channel().await?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        self.declare_topology(&publisher).await?;
        let generation = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        Ok(Arc::new(Link {
            connection,
            publisher,
            generation,
        }))
    }

    async fn declare_topology(&self, channel: &Channel) -> Result<(), lapin::Error> {
        let ns = &self.config.namespace;
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let dead_letter = format!("{ns}.dead-letter");
        channel
            .exchange_declare(
                dead_letter.as_str().into(),
                ExchangeKind::Fanout,
                durable,
                FieldTable::default(),
            )
            .await?;
        // Each dead letter goes to both: one queue kept for the operators, one the control
        // plane reads to fail the runs of poison messages.
        for queue in [dead_letter.clone(), self.dead_letters_for_runs()] {
            declare_quorum_queue(channel, &queue, None).await?;
            channel
                .queue_bind(
                    queue.as_str().into(),
                    dead_letter.as_str().into(),
                    "".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        for exchange in ["tasks", "events"] {
            channel
                .exchange_declare(
                    format!("{ns}.{exchange}").as_str().into(),
                    ExchangeKind::Direct,
                    durable,
                    FieldTable::default(),
                )
                .await?;
        }
        for queue in [Queue::Encode, Queue::Upload, Queue::Finalize, Queue::Events] {
            let name = self.queue_name(queue);
            declare_quorum_queue(channel, &name, Some(&dead_letter)).await?;
            channel
                .queue_bind(
                    name.as_str().into(),
                    format!("{ns}.{}", queue.exchange_suffix()).as_str().into(),
                    queue.suffix().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }

    /// The current link, or a new one if the connection is gone. Reconnects with backoff until
    /// it succeeds or the process shuts down.
    async fn current_link(&self, broken: Option<u64>) -> Result<Arc<Link>, BrokerError> {
        let mut guard = self.link.lock().await;
        if let Some(link) = guard.as_ref() {
            let is_broken =
                broken == Some(link.generation) || !link.connection.status().connected();
            if !is_broken {
                return Ok(link.clone());
            }
            warn!(address = %redact(&self.config.url), "rabbitmq connection lost, reconnecting");
        }
        *guard = None;
        let mut backoff = Duration::from_millis(200);
        loop {
            if self.shutdown.is_raised() {
                return Err(BrokerError::ShuttingDown);
            }
            match self.open_link().await {
                Ok(link) => {
                    info!(generation = link.generation, "reconnected to rabbitmq");
                    *guard = Some(link.clone());
                    return Ok(link);
                }
                Err(error) => {
                    warn!(%error, retry_in_ms = backoff.as_millis() as u64, "rabbitmq reconnection failed");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.shutdown.wait() => return Err(BrokerError::ShuttingDown),
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Publishes `message` to `queue` and waits for the broker to confirm it. Reconnects and
    /// tries again when the connection is lost.
    pub async fn publish<M: prost::Message>(
        &self,
        queue: Queue,
        message: &M,
    ) -> Result<(), BrokerError> {
        let payload = message.encode_to_vec();
        let exchange = format!("{}.{}", self.config.namespace, queue.exchange_suffix());
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type(ShortString::from("application/x-protobuf"))
            .with_type(ShortString::from(std::any::type_name::<M>()));
        let mut broken = None;
        for attempt in 1.. {
            let link = self.current_link(broken).await?;
            let published = async {
                link.publisher
                    .basic_publish(
                        exchange.as_str().into(),
                        queue.suffix().into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..Default::default()
                        },
                        &payload,
                        properties.clone(),
                    )
                    .await?
                    .await
            }
            .await;
            match published {
                Ok(Confirmation::Ack(None)) => return Ok(()),
                Ok(_) => return Err(BrokerError::NotConfirmed(self.queue_name(queue))),
                Err(error) if attempt < 20 => {
                    warn!(%error, attempt, queue = %self.queue_name(queue), "publish failed, retrying after reconnecting");
                    broken = Some(link.generation);
                }
                Err(error) => return Err(error.into()),
            }
        }
        unreachable!("the loop returns")
    }

    /// Consumes `queue` until shutdown: at most `prefetch` messages are handled at once, each
    /// decoded as a `T` and acked, retried or rejected as `handle` says; one that does not
    /// decode is rejected (dead-lettered) without reaching it. `handle` gets the message's
    /// bytes too, to name the task if it panics. Survives broker restarts. On shutdown, stops
    /// taking messages and lets the ones in hand finish.
    pub async fn consume<T, F, Fut>(
        self: &Arc<Self>,
        queue: Queue,
        prefetch: u16,
        handle: F,
    ) -> Result<(), BrokerError>
    where
        T: prost::Message + Default,
        F: Fn(T, Vec<u8>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Outcome> + Send,
    {
        let name = self.queue_name(queue);
        self.consume_queue(name, prefetch, move |payload, _| {
            let decoded = T::decode(payload.as_slice());
            let handled = decoded.map(|message| handle(message, payload));
            async move {
                match handled {
                    Ok(handled) => handled.await,
                    Err(error) => {
                        warn!(?queue, %error, "undecodable message, dead-lettering it");
                        Outcome::Reject
                    }
                }
            }
        })
        .await
    }

    /// Consumes the control plane's copy of the dead letters (`<ns>.dead-letter.runs`) until
    /// shutdown, as [`Broker::consume`] does, telling `handle` where and why each message died.
    /// `<ns>.dead-letter` keeps them for the operators.
    pub async fn consume_dead_letters<F, Fut>(
        self: &Arc<Self>,
        prefetch: u16,
        handle: F,
    ) -> Result<(), BrokerError>
    where
        F: Fn(DeadLetter) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Outcome> + Send,
    {
        let name = self.dead_letters_for_runs();
        let namespace = self.config.namespace.clone();
        self.consume_queue(name, prefetch, move |payload, properties| {
            handle(DeadLetter::from_delivery(&namespace, payload, &properties))
        })
        .await
    }

    async fn consume_queue<F, Fut>(
        self: &Arc<Self>,
        name: String,
        prefetch: u16,
        handle: F,
    ) -> Result<(), BrokerError>
    where
        F: Fn(Vec<u8>, BasicProperties) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Outcome> + Send,
    {
        let mut broken = None;
        while !self.shutdown.is_raised() {
            let link = match self.current_link(broken).await {
                Ok(link) => link,
                Err(BrokerError::ShuttingDown) => break,
                Err(error) => return Err(error),
            };
            let consumed = self
                .consume_on(&link, &name, prefetch, handle.clone())
                .await;
            if self.shutdown.is_raised() {
                break;
            }
            match consumed {
                Ok(()) => warn!(queue = %name, "consumer stream ended, reconnecting"),
                Err(error) => warn!(queue = %name, %error, "consumer failed, reconnecting"),
            }
            broken = Some(link.generation);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        info!(queue = %name, "consumer stopped");
        Ok(())
    }

    async fn consume_on<F, Fut>(
        &self,
        link: &Link,
        name: &str,
        prefetch: u16,
        handle: F,
    ) -> Result<(), lapin::Error>
    where
        F: Fn(Vec<u8>, BasicProperties) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Outcome> + Send,
    {
        let channel = link.connection.create_channel().await?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        let consumer = channel
            .basic_consume(
                name.into(),
                format!("filedrop-{}-{name}", std::process::id())
                    .as_str()
                    .into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let failed: Arc<std::sync::Mutex<Option<lapin::Error>>> = Arc::default();
        let shutdown = self.shutdown.clone();
        consumer
            .take_until(Box::pin(async move { shutdown.wait().await }))
            .for_each_concurrent(prefetch as usize, |delivery| {
                let handle = handle.clone();
                let failed = failed.clone();
                async move {
                    let delivery = match delivery {
                        Ok(delivery) => delivery,
                        Err(error) => {
                            failed.lock().expect("not poisoned").get_or_insert(error);
                            return;
                        }
                    };
                    let outcome = handle(delivery.data.clone(), delivery.properties.clone()).await;
                    let settled = match outcome {
                        Outcome::Ack => delivery.acker.ack(BasicAckOptions::default()).await,
                        Outcome::Retry => {
                            tokio::time::sleep(RETRY_PAUSE).await;
                            delivery
                                .acker
                                .nack(BasicNackOptions {
                                    requeue: true,
                                    ..Default::default()
                                })
                                .await
                        }
                        Outcome::Reject => {
                            delivery
                                .acker
                                .nack(BasicNackOptions {
                                    requeue: false,
                                    ..Default::default()
                                })
                                .await
                        }
                    };
                    if let Err(error) = settled {
                        // The channel is gone; the broker redelivers the message.
                        failed.lock().expect("not poisoned").get_or_insert(error);
                    }
                }
            })
            .await;
        let _ = channel.close(200, "consumer stopped".into()).await;
        match failed.lock().expect("not poisoned").take() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Closes the connection.
    pub async fn close(&self) {
        if let Some(link) = self.link.lock().await.take() {
            let _ = link.connection.close(200, "shutting down".into()).await;
        }
    }
}

async fn declare_quorum_queue(
    channel: &Channel,
    name: &str,
    dead_letter_exchange: Option<&str>,
) -> Result<(), lapin::Error> {
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    if let Some(exchange) = dead_letter_exchange {
        arguments.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(exchange.into()),
        );
        arguments.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(DELIVERY_LIMIT),
        );
    }
    channel
        .queue_declare(
            name.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            arguments,
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{AMQPValue, BasicProperties, DeadLetter, DeathReason, FieldTable, Queue, redact};

    #[test]
    fn dead_letters_say_where_and_why_they_died() {
        let died = |queue: &str, reason: &str| {
            let mut headers = FieldTable::default();
            headers.insert(
                "x-first-death-queue".into(),
                AMQPValue::LongString(queue.into()),
            );
            headers.insert(
                "x-first-death-reason".into(),
                AMQPValue::LongString(reason.into()),
            );
            let properties = BasicProperties::default().with_headers(headers);
            DeadLetter::from_delivery("ns", vec![1], &properties)
        };
        let letter = died("ns.encode", "delivery_limit");
        assert_eq!(letter.queue, Some(Queue::Encode));
        assert_eq!(letter.reason, DeathReason::DeliveryLimit);
        let letter = died("ns.upload", "rejected");
        assert_eq!(letter.queue, Some(Queue::Upload));
        assert_eq!(letter.reason, DeathReason::Rejected);
        let letter = died("other.upload", "expired");
        assert_eq!(letter.queue, None, "another namespace's queue");
        assert_eq!(letter.reason, DeathReason::Other("expired".into()));
        let bare = DeadLetter::from_delivery("ns", vec![], &BasicProperties::default());
        assert_eq!(
            (bare.queue, bare.reason),
            (None, DeathReason::Other(String::new()))
        );
    }

    #[test]
    fn redacts_credentials_from_urls() {
        assert_eq!(
            redact("amqp://guest:pa@ss@127.0.0.1:5672/%2f"),
            "amqp://127.0.0.1:5672/%2f"
        );
        assert_eq!(redact("amqp://127.0.0.1"), "amqp://127.0.0.1");
    }
}
