//! The reporting request, its limits, and the checks each event passes.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Larger bodies are refused with 413.
pub const MAX_BODY_BYTES: usize = 512 * 1024;
/// More events in one batch are refused with 400.
pub const MAX_EVENTS: usize = 200;
/// One event larger than this (as JSON) is rejected alone.
pub const MAX_EVENT_BYTES: usize = 32 * 1024;
/// The SDK keeps events offline for up to 7 days; an event's corrected time is never earlier than this before now.
pub const MAX_AGE_MS: i64 = 7 * 86_400_000;

/// What kind of thing happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TrackType {
    PageView,
    Click,
    Error,
    /// A timing: `props.value_ms` (e.g. first paint, an API call).
    Perf,
    Custom,
}

impl TrackType {
    pub fn as_str(self) -> &'static str {
        match self {
            TrackType::PageView => "page_view",
            TrackType::Click => "click",
            TrackType::Error => "error",
            TrackType::Perf => "perf",
            TrackType::Custom => "custom",
        }
    }
}

/// One event as the SDK sends it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct TrackEvent {
    /// Unique per event on the device (a UUID): the deduplication key, with the sender.
    pub event_id: String,
    #[serde(rename = "type")]
    pub kind: TrackType,
    /// When it happened, by the device's clock (RFC 3339).
    pub occurred_at: String,
    /// The mini-program page (`pages/index/index`), at most 256 characters.
    #[serde(default)]
    pub page: String,
    /// Anything else, a JSON object.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub props: Option<Value>,
}

/// `POST /api/v1/track/batch`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct TrackBatch {
    /// When this attempt was sent, by the device's clock (RFC 3339): corrects the events' times for its skew.
    pub sent_at: Option<String>,
    /// Who sends without a token: a stable id the SDK keeps (8 to 64 of `A-Za-z0-9_-`).
    pub anon_id: Option<String>,
    /// The device and app (system, version, network…), kept with each event.
    #[schema(value_type = Object)]
    pub context: Option<Value>,
    /// 1 to 200 events.
    #[schema(value_type = Vec<Object>)]
    pub batch: Vec<Value>,
}

/// A rejected event: its position in the batch and why.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Rejected {
    pub index: usize,
    pub event_id: Option<String>,
    /// `invalid_event`, `invalid_event_id`, `invalid_time`, `page_too_long`, `props_not_object`, `too_large`.
    pub reason: String,
}

/// The answer, given only once the batch is committed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TrackResult {
    /// New events stored.
    pub accepted: usize,
    /// Events already stored (a retry).
    pub duplicates: usize,
    pub rejected: Vec<Rejected>,
}

/// A checked event, ready to store.
#[derive(Debug, Clone)]
pub struct Row {
    pub event_id: String,
    pub kind: TrackType,
    pub page: String,
    pub props: String,
    pub occurred_at: i64,
    pub client_time: i64,
}

/// A rejected event, stored with its reason.
#[derive(Debug, Clone)]
pub struct BadRow {
    pub event_id: String,
    pub reason: &'static str,
    pub raw: String,
}

fn time_ms(text: &str) -> Option<i64> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

pub fn valid_id(id: &str, min: usize) -> bool {
    (min..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks one event. The time is corrected for the device's skew (`received − (sent_at − occurred_at)`, as
/// Segment, Snowplow and PostHog do), never in the future and never older than [`MAX_AGE_MS`].
pub fn check(raw: &Value, sent_at: Option<i64>, received: i64) -> Result<Row, BadRow> {
    let text = raw.to_string();
    let event_id = raw.get("event_id").and_then(Value::as_str).unwrap_or("").to_owned();
    let bad = |reason: &'static str| BadRow {
        event_id: event_id.chars().take(64).collect(),
        reason,
        raw: text.chars().take(MAX_EVENT_BYTES).collect(),
    };
    if text.len() > MAX_EVENT_BYTES {
        return Err(bad("too_large"));
    }
    let event: TrackEvent = serde_json::from_value(raw.clone()).map_err(|_| bad("invalid_event"))?;
    if !valid_id(&event.event_id, 1) {
        return Err(bad("invalid_event_id"));
    }
    if event.page.chars().count() > 256 || event.page.chars().any(char::is_control) {
        return Err(bad("page_too_long"));
    }
    let props = match &event.props {
        None | Some(Value::Null) => "{}".to_owned(),
        Some(value @ Value::Object(_)) => value.to_string(),
        Some(_) => return Err(bad("props_not_object")),
    };
    let client_time = time_ms(&event.occurred_at).ok_or_else(|| bad("invalid_time"))?;
    let corrected = match sent_at {
        Some(sent) => received - (sent - client_time),
        None => client_time,
    };
    let occurred_at = corrected.clamp(received - MAX_AGE_MS, received);
    Ok(Row { event_id: event.event_id, kind: event.kind, page: event.page, props, occurred_at, client_time })
}

/// `sent_at` in ms, when given and valid.
pub fn sent_at_ms(batch: &TrackBatch) -> Option<i64> {
    batch.sent_at.as_deref().and_then(time_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_skewed_clock_is_corrected_and_clamped() {
        let received = 1_800_000_000_000;
        let event = json!({"event_id": "e1", "type": "page_view", "occurred_at": "2027-01-15T08:00:00Z", "page": "p"});
        let device_occurred = time_ms("2027-01-15T08:00:00Z").unwrap();
        // The device's clock is an hour fast: sent_at is an hour after the real receive time.
        let sent = received + 3_600_000;
        let row = check(&event, Some(sent), received).unwrap();
        assert_eq!(row.occurred_at, (received - (sent - device_occurred)).clamp(received - MAX_AGE_MS, received));
        assert_eq!(row.client_time, device_occurred);
        let future = check(&event, None, device_occurred - 1_000).unwrap();
        assert_eq!(future.occurred_at, device_occurred - 1_000, "never in the future");
    }

    #[test]
    fn each_bad_event_is_rejected_with_its_reason() {
        let now = 1_800_000_000_000;
        for (event, reason) in [
            (json!({"type": "click", "occurred_at": "2027-01-15T08:00:00Z"}), "invalid_event"),
            (json!({"event_id": "a b", "type": "click", "occurred_at": "2027-01-15T08:00:00Z"}), "invalid_event_id"),
            (json!({"event_id": "e", "type": "scroll", "occurred_at": "2027-01-15T08:00:00Z"}), "invalid_event"),
            (json!({"event_id": "e", "type": "click", "occurred_at": "yesterday"}), "invalid_time"),
            (
                json!({"event_id": "e", "type": "click", "occurred_at": "2027-01-15T08:00:00Z", "props": [1]}),
                "props_not_object",
            ),
            (
                json!({"event_id": "e", "type": "click", "occurred_at": "2027-01-15T08:00:00Z", "props": {"x": "y".repeat(40_000)}}),
                "too_large",
            ),
        ] {
            assert_eq!(check(&event, None, now).unwrap_err().reason, reason, "{event}");
        }
    }
}
