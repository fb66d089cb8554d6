//! The CloudEvents 1.0 envelope wxshop publishes, in structured JSON (the outbox `payload`, the in-process bus) and
//! in Kafka binary mode (`ce_*` headers, key = aggregate id, value = `data`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The reverse-DNS prefix of every event type.
pub const TYPE_PREFIX: &str = "cn.wxshop.";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CloudEvent {
    pub specversion: String,
    pub id: String,
    /// `/wxshop/<aggregate>`.
    pub source: String,
    /// `cn.wxshop.<aggregate>.<what>.v1`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// `<aggregate>:<id>`.
    pub subject: String,
    /// RFC 3339 UTC with milliseconds: when the transaction recorded it.
    pub time: String,
    pub datacontenttype: String,
    /// The aggregate id: the Kafka key, so one aggregate's events stay in one partition, in order.
    pub partitionkey: String,
    pub data: Value,
}

impl CloudEvent {
    /// A new event with a fresh id; `kind` is the short type (`order.paid`).
    pub fn new(aggregate: &str, aggregate_id: &str, kind: &str, data: Value, at_ms: i64) -> CloudEvent {
        CloudEvent {
            specversion: "1.0".into(),
            id: uuid::Uuid::new_v4().to_string(),
            source: format!("/wxshop/{aggregate}"),
            event_type: format!("{TYPE_PREFIX}{kind}.v1"),
            subject: format!("{aggregate}:{aggregate_id}"),
            time: crate::db::rfc3339(at_ms),
            datacontenttype: "application/json".into(),
            partitionkey: aggregate_id.to_owned(),
            data,
        }
    }

    /// The short type: `cn.wxshop.order.paid.v1` → `order.paid`.
    pub fn kind(&self) -> &str {
        let short = self.event_type.strip_prefix(TYPE_PREFIX).unwrap_or(&self.event_type);
        short.strip_suffix(".v1").unwrap_or(short)
    }

    /// Milliseconds since the epoch of `time`.
    pub fn time_ms(&self) -> i64 {
        time::OffsetDateTime::parse(&self.time, &time::format_description::well_known::Rfc3339)
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
            .unwrap_or(0)
    }

    /// The Kafka binary-mode headers: `ce_<attribute>` for every attribute but `data`, and `content-type`.
    pub fn kafka_headers(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ce_specversion", self.specversion.clone()),
            ("ce_id", self.id.clone()),
            ("ce_source", self.source.clone()),
            ("ce_type", self.event_type.clone()),
            ("ce_subject", self.subject.clone()),
            ("ce_time", self.time.clone()),
            ("ce_partitionkey", self.partitionkey.clone()),
            ("content-type", self.datacontenttype.clone()),
        ]
    }

    /// Rebuilds an event from Kafka binary mode (headers and the value as `data`).
    pub fn from_kafka(headers: &[(String, String)], value: &[u8]) -> Option<CloudEvent> {
        let get = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        Some(CloudEvent {
            specversion: get("ce_specversion")?,
            id: get("ce_id")?,
            source: get("ce_source")?,
            event_type: get("ce_type")?,
            subject: get("ce_subject").unwrap_or_default(),
            time: get("ce_time")?,
            datacontenttype: get("content-type").unwrap_or_else(|| "application/json".into()),
            partitionkey: get("ce_partitionkey").unwrap_or_default(),
            data: serde_json::from_slice(value).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_round_trips_through_kafka_binary_mode() {
        let event =
            CloudEvent::new("order", "42", "order.paid", serde_json::json!({"order_id": 42}), 1_700_000_000_123);
        assert_eq!(event.event_type, "cn.wxshop.order.paid.v1");
        assert_eq!(event.kind(), "order.paid");
        assert_eq!((event.subject.as_str(), event.partitionkey.as_str()), ("order:42", "42"));
        assert_eq!(event.time_ms(), 1_700_000_000_123);
        let headers: Vec<(String, String)> =
            event.kafka_headers().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let value = serde_json::to_vec(&event.data).unwrap();
        assert_eq!(CloudEvent::from_kafka(&headers, &value), Some(event));
    }
}
