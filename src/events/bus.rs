//! The transports, chosen at start-up:
//!
//! - **Log** (embedded, and scale-out without a broker): publishing appends the events to the database's own log
//!   (`outbox.log_offset`, written only by the lease holder, so offsets follow publication order without gaps); the
//!   in-process consumers read it from their stored offsets. Durable: an acknowledged publication is a committed row.
//! - **Kafka** (`events.kafka_brokers`, cargo feature `kafka`): binary-mode CloudEvents to `<topic_prefix><aggregate>`,
//!   keyed by aggregate id, every delivery acknowledged before the rows are marked; consumers in consumer groups.
//!
//! Consumers apply each event in their own transaction with an inbox row `(consumer, event_id)`, so a redelivery
//! is a no-op; the position (log offset, or the Kafka offset) is stored only after that commit. A failing event is
//! retried with backoff, then dead-lettered (`dead_letter` table, or the `.dlq` topic) so the rest goes on.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::db::{now_ms, Bounded};
use crate::error::AppError;
use crate::events::consumers::Consumer;
use crate::events::envelope::CloudEvent;
use crate::events::outbox::{self, Pending};
use crate::state::{App, AppState};

/// What became of one message.
#[derive(Debug, Clone)]
pub enum Published {
    Acknowledged,
    /// The transport refused this message for itself (not a transport failure).
    Refused(String),
}

pub enum Transport {
    Log,
    #[cfg(feature = "kafka")]
    Kafka(crate::events::kafka::KafkaBus),
}

/// (consumer, event id) → (failed attempts, retry not before), for backoff and dead-lettering.
type Failing = HashMap<(&'static str, String), (u32, i64)>;

/// The bus: its transport and the consumers' retry state.
pub struct Bus {
    pub transport: Transport,
    failing: Mutex<Failing>,
}

impl Bus {
    pub fn new(transport: Transport) -> Bus {
        Bus { transport, failing: Mutex::new(HashMap::new()) }
    }

    /// The transport's name, for logs and `/debug/tasks`.
    pub fn name(&self) -> &'static str {
        match self.transport {
            Transport::Log => "log",
            #[cfg(feature = "kafka")]
            Transport::Kafka(_) => "kafka",
        }
    }
}

/// Why a binary built without the `kafka` feature refuses `events.kafka_brokers` (at configuration time).
pub const WITHOUT_KAFKA: &str = "invalid config key `events.kafka_brokers`: this wxshop binary was built without \
     Kafka support; build it with `cargo build --release --features kafka`, or unset events.kafka_brokers";

/// Builds the transport the configuration asks for. A Kafka configuration on a binary built without the `kafka`
/// feature is refused with a clear message (already by `Config::validate`).
pub fn from_config(config: &crate::config::Config) -> anyhow::Result<Bus> {
    match &config.events.kafka_brokers {
        None => Ok(Bus::new(Transport::Log)),
        #[cfg(feature = "kafka")]
        Some(brokers) => Ok(Bus::new(Transport::Kafka(crate::events::kafka::KafkaBus::new(brokers, &config.events)?))),
        #[cfg(not(feature = "kafka"))]
        Some(_) => anyhow::bail!(WITHOUT_KAFKA),
    }
}

pub fn uses_log(app: &App) -> bool {
    matches!(app.events.transport, Transport::Log)
}

/// Publishes `batch` in order and waits for every acknowledgement. `Err` is a transport failure: nothing counts as
/// published.
pub async fn publish(app: &App, batch: &[Pending]) -> Result<Vec<Published>, AppError> {
    match &app.events.transport {
        Transport::Log => Ok(vec![Published::Acknowledged; batch.len()]),
        #[cfg(feature = "kafka")]
        Transport::Kafka(kafka) => kafka.publish(batch).await,
    }
}

/// Flushes what the transport holds (SIGTERM).
pub async fn shutdown(app: &App) {
    #[cfg(feature = "kafka")]
    if let Transport::Kafka(kafka) = &app.events.transport {
        kafka.flush().await;
    }
    let _ = app;
}

/// Applies `event` for `consumer` once: the inbox row, the consumer's change and (log transport) its new offset in
/// one transaction. Returns whether it was the first delivery.
pub async fn deliver(
    app: &App,
    consumer: Consumer,
    event: &CloudEvent,
    log_offset: Option<i64>,
) -> Result<bool, AppError> {
    let mut tx = app.db.begin_write().await?;
    let first = outbox::first_delivery(&mut tx, app.db.dialect, consumer.name(), &event.id, now_ms()).await?;
    if first {
        consumer.apply(app, &mut tx, event).await?;
    }
    if let Some(offset) = log_offset {
        outbox::set_consumer_offset(&mut tx, app.db.dialect, consumer.name(), offset).await?;
    }
    tx.commit().bounded().await?;
    let outcome = if first { "applied" } else { "duplicate" };
    metrics::counter!("events_consumed_total", "consumer" => consumer.name(), "outcome" => outcome).increment(1);
    Ok(first)
}

/// What to do with an event a consumer failed: `true` = give up and dead-letter it (after `max_attempts`).
pub fn failed(app: &App, consumer: Consumer, event: &CloudEvent, error: &AppError) -> bool {
    let mut failing = app.events.failing.lock().unwrap_or_else(|e| e.into_inner());
    let entry = failing.entry((consumer.name(), event.id.clone())).or_insert((0, 0));
    entry.0 += 1;
    entry.1 = now_ms() + (500i64 << entry.0.min(7));
    metrics::counter!("events_consumer_failures_total", "consumer" => consumer.name()).increment(1);
    tracing::warn!(%error, consumer = consumer.name(), event_id = event.id, attempts = entry.0, "a consumer failed an event");
    let give_up = entry.0 >= app.config.events.max_attempts as u32;
    if give_up {
        failing.remove(&(consumer.name(), event.id.clone()));
    }
    give_up
}

fn backing_off(app: &App, consumer: Consumer, event: &CloudEvent) -> bool {
    let failing = app.events.failing.lock().unwrap_or_else(|e| e.into_inner());
    failing.get(&(consumer.name(), event.id.clone())).is_some_and(|(_, retry_at)| *retry_at > now_ms())
}

fn succeeded(app: &App, consumer: Consumer, event: &CloudEvent) {
    app.events.failing.lock().unwrap_or_else(|e| e.into_inner()).remove(&(consumer.name(), event.id.clone()));
}

/// The in-process consumers over the log (leader only): each reads on from its stored offset, in order.
pub async fn run_consumers(state: &AppState) -> Result<(), AppError> {
    if !uses_log(state) {
        return Ok(());
    }
    let end = outbox::log_end(&state.db.pool).await?;
    for consumer in Consumer::ALL {
        let stored = outbox::consumer_offset(&state.db.pool, consumer.name()).await?;
        let mut position = stored;
        'log: for logged in outbox::log_after(&state.db.pool, stored, 500).await? {
            let event = &logged.event;
            if consumer.wants(event.kind()) {
                if backing_off(state, consumer, event) {
                    break 'log;
                }
                match deliver(state, consumer, event, Some(logged.log_offset)).await {
                    Ok(_) => succeeded(state, consumer, event),
                    Err(error) => {
                        if !failed(state, consumer, event, &error) {
                            break 'log;
                        }
                        outbox::dead_letter(&state.db.pool, consumer.name(), event, &error.to_string(), now_ms())
                            .await?;
                        metrics::counter!("events_dead_letters_total", "consumer" => consumer.name()).increment(1);
                    }
                }
            }
            position = logged.log_offset;
        }
        if position > stored {
            let mut conn = state.db.pool.acquire().await?;
            outbox::set_consumer_offset(&mut conn, state.db.dialect, consumer.name(), position).await?;
        }
        let lag = end - position.max(stored);
        metrics::gauge!("events_consumer_lag", "consumer" => consumer.name(), "transport" => "log")
            .set(lag.max(0) as f64);
    }
    Ok(())
}

/// Waits (at most `within`) until every in-process consumer has read the whole log; for tests and the tour.
pub async fn settled(state: &AppState, within: Duration) -> bool {
    let deadline = std::time::Instant::now() + within;
    loop {
        let pending = outbox::backlog(&state.db.pool, now_ms()).await.map(|(n, _)| n).unwrap_or(1);
        let end = outbox::log_end(&state.db.pool).await.unwrap_or(0);
        let mut behind = false;
        for consumer in Consumer::ALL {
            behind |= outbox::consumer_offset(&state.db.pool, consumer.name()).await.unwrap_or(0) < end;
        }
        if pending == 0 && !behind {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        state.events_wake.notify_one();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
