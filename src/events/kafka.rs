//! The Kafka transport (cargo feature `kafka`): binary-mode CloudEvents, one topic per aggregate type
//! (`<events.topic_prefix><aggregate>`), keyed by aggregate id so one aggregate's events keep their order in one
//! partition. The producer waits for every delivery acknowledgement (`acks=all`, idempotent unless
//! `events.kafka_idempotence = false`) and is flushed on shutdown. Each consumer is a consumer group
//! (`<prefix><consumer>`) on every instance; its offset is stored only after the event's transaction committed,
//! and an event it fails `events.max_attempts` times goes to `<topic>.dlq`.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::config::EventsConfig;
use crate::error::AppError;
use crate::events::bus::{self, Published};
use crate::events::consumers::Consumer;
use crate::events::envelope::CloudEvent;
use crate::events::outbox::Pending;
use crate::state::AppState;

pub struct KafkaBus {
    producer: FutureProducer,
    brokers: String,
    prefix: String,
}

/// Whether a delivery error belongs to the message itself (retrying the same bytes cannot help).
fn message_refused(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessage | RDKafkaErrorCode::InvalidRecord
        )
    )
}

fn headers(event: &CloudEvent) -> OwnedHeaders {
    event
        .kafka_headers()
        .iter()
        .fold(OwnedHeaders::new(), |h, (key, value)| h.insert(Header { key, value: Some(value.as_bytes()) }))
}

impl KafkaBus {
    pub fn new(brokers: &str, config: &EventsConfig) -> anyhow::Result<KafkaBus> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("client.id", format!("wxshop-{}", std::process::id()))
            .set("enable.idempotence", config.kafka_idempotence.to_string())
            .set("acks", "all")
            .set("message.timeout.ms", "30000")
            .set("linger.ms", "5")
            .set("partitioner", "murmur2_random")
            .create()
            .map_err(|e| anyhow::anyhow!("invalid config key `events.kafka_brokers`: {e}"))?;
        Ok(KafkaBus { producer, brokers: brokers.to_owned(), prefix: config.topic_prefix.clone() })
    }

    pub fn topic(&self, aggregate: &str) -> String {
        format!("{}{aggregate}", self.prefix)
    }

    /// Sends `batch` in order and waits for every acknowledgement. A transport failure (broker unreachable,
    /// timeout) is `Err`: nothing is marked, the relay backs off and sends them again (consumers dedupe).
    pub async fn publish(&self, batch: &[Pending]) -> Result<Vec<Published>, AppError> {
        let mut deliveries = Vec::with_capacity(batch.len());
        for row in batch {
            let topic = self.topic(&row.aggregate);
            let value = serde_json::to_vec(&row.event.data).map_err(anyhow::Error::from)?;
            let record = FutureRecord::to(&topic).key(&row.aggregate_id).payload(&value).headers(headers(&row.event));
            match self.producer.send_result(record) {
                Ok(delivery) => deliveries.push(Ok(delivery)),
                Err((error, _)) if message_refused(&error) => deliveries.push(Err(error.to_string())),
                Err((error, _)) => return Err(transport(error)),
            }
        }
        let mut outcomes = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            outcomes.push(match delivery {
                Err(refused) => Published::Refused(refused),
                Ok(future) => match future.await {
                    Ok(Ok(_)) => Published::Acknowledged,
                    Ok(Err((error, _))) if message_refused(&error) => Published::Refused(error.to_string()),
                    Ok(Err((error, _))) => return Err(transport(error)),
                    Err(_) => return Err(AppError::Internal(anyhow::anyhow!("the Kafka producer went away"))),
                },
            });
        }
        Ok(outcomes)
    }

    /// Waits (up to 30 s) for what the producer still holds (SIGTERM).
    pub async fn flush(&self) {
        let producer = self.producer.clone();
        let flushed = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(30))).await;
        if !matches!(flushed, Ok(Ok(()))) {
            tracing::warn!("the Kafka producer did not flush in time; the outbox still has those events");
        }
    }

    /// A consumer in consumer group `<prefix><consumer>` over the topics it needs.
    fn consumer(&self, consumer: Consumer) -> anyhow::Result<StreamConsumer> {
        let group = format!("{}{}", self.prefix, consumer.name());
        let stream: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // A member that stops heartbeating (its instance died) hands its partitions over within 10 s.
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "2000")
            .set("topic.metadata.refresh.interval.ms", "5000")
            .create()?;
        let topics: Vec<String> = consumer.aggregates().iter().map(|a| self.topic(a)).collect();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        stream.subscribe(&topics)?;
        Ok(stream)
    }

    /// Sends an event a consumer gave up on to `<topic>.dlq`.
    async fn dead_letter(&self, topic: &str, key: &[u8], event: &CloudEvent, error: &str) -> Result<(), AppError> {
        let value = serde_json::to_vec(&event.data).map_err(anyhow::Error::from)?;
        let dlq = format!("{topic}.dlq");
        let headers = headers(event).insert(Header { key: "wxshop_error", value: Some(error.as_bytes()) });
        let record = FutureRecord::to(&dlq).key(key).payload(&value).headers(headers);
        match self.producer.send(record, Duration::from_secs(30)).await {
            Ok(_) => Ok(()),
            Err((error, _)) => Err(transport(error)),
        }
    }
}

fn transport(error: KafkaError) -> AppError {
    metrics::counter!("events_transport_errors_total").increment(1);
    AppError::Unavailable { code: "kafka_unavailable", message: format!("Kafka: {error}") }
}

/// Messages this member has not consumed yet on its assigned partitions (high watermark − position). Blocking.
fn lag(stream: &StreamConsumer) -> rdkafka::error::KafkaResult<i64> {
    let position = stream.position()?;
    let mut total = 0;
    for element in position.elements() {
        if let rdkafka::Offset::Offset(at) = element.offset() {
            let (_, high) = stream.fetch_watermarks(element.topic(), element.partition(), Duration::from_secs(2))?;
            total += (high - at).max(0);
        }
    }
    Ok(total)
}

/// Runs one consumer group member until `shutdown`.
pub async fn run_consumer(state: AppState, consumer: Consumer, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let bus::Transport::Kafka(kafka) = &state.events.transport else { return };
    let stream = match kafka.consumer(consumer) {
        Ok(stream) => std::sync::Arc::new(stream),
        Err(error) => {
            tracing::error!(%error, consumer = consumer.name(), "cannot start the Kafka consumer");
            return;
        }
    };
    let mut lag_measured = std::time::Instant::now();
    loop {
        if lag_measured.elapsed() > Duration::from_secs(5) {
            lag_measured = std::time::Instant::now();
            let measured = stream.clone();
            if let Ok(Ok(lag)) = tokio::task::spawn_blocking(move || lag(&measured)).await {
                metrics::gauge!("events_consumer_lag", "consumer" => consumer.name(), "transport" => "kafka")
                    .set(lag as f64);
            }
        }
        let message = tokio::select! {
            message = stream.recv() => message,
            // Measure the lag even while nothing arrives.
            _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
            _ = shutdown.changed() => return,
        };
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, consumer = consumer.name(), "Kafka consumer error; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let headers: Vec<(String, String)> = message
            .headers()
            .map(|h| {
                h.iter().filter_map(|h| Some((h.key.to_owned(), String::from_utf8(h.value?.to_vec()).ok()?))).collect()
            })
            .unwrap_or_default();
        let event = CloudEvent::from_kafka(&headers, message.payload().unwrap_or_default());
        if let Some(event) = event.filter(|e| consumer.wants(e.kind())) {
            let mut attempt = 0;
            loop {
                match bus::deliver(&state, consumer, &event, None).await {
                    Ok(_) => break,
                    Err(error) if bus::failed(&state, consumer, &event, &error) => {
                        let key = message.key().unwrap_or_default();
                        // The offset moves on only once the event is safe in the dead-letter topic.
                        while let Err(dlq) = kafka.dead_letter(message.topic(), key, &event, &error.to_string()).await {
                            tracing::warn!(%dlq, "cannot reach the dead-letter topic; retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        metrics::counter!("events_dead_letters_total", "consumer" => consumer.name()).increment(1);
                        break;
                    }
                    Err(_) => {
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(500u64 << attempt.min(6))).await;
                    }
                }
            }
        }
        if let Err(error) = stream.store_offset_from_message(&message) {
            tracing::warn!(%error, consumer = consumer.name(), "could not store the Kafka offset");
        }
    }
}
