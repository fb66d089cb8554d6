//! The domain event bus: every state change others care about writes a CloudEvents 1.0 event into the `outbox`
//! table in the *same transaction* ([`record`]); a relay with one leader per database publishes pending rows in
//! commit order and marks them published only after every delivery is acknowledged; idempotent consumers apply
//! each event once (an inbox row in their own transaction).
//!
//! - `envelope`: the CloudEvent and the event types.
//! - `outbox`: the SQL of the outbox, the lease, the inbox and offsets.
//! - `relay`: the leader's loop (claim pending rows, publish, mark; back off; park the unpublishable).
//! - `bus`: the transports: the database's own log read by in-process consumers (embedded, and scale-out without
//!   a broker), or Kafka (`kafka` cargo feature).
//! - `consumers`: sales statistics per day and SKU, and WeChat subscribe messages on paid and shipped.
//!
//! Rule: insert the event *after* the statement that changes the aggregate, in the same transaction. The
//! aggregate's row lock then orders its events: for one aggregate, id order is commit order.

pub mod admin_routes;
pub mod bus;
pub mod consumers;
pub mod envelope;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod outbox;
pub mod relay;

use serde_json::Value;
use sqlx::AnyConnection;

pub use envelope::CloudEvent;

/// An event about to be recorded.
pub struct Event {
    /// `order`, `refund`, `sku`, `flash_purchase`, `coupon`, `user`.
    pub aggregate: &'static str,
    pub aggregate_id: String,
    /// The short type, e.g. `order.paid` (published as `cn.wxshop.order.paid.v1`).
    pub kind: String,
    pub data: Value,
}

impl Event {
    pub fn new(aggregate: &'static str, aggregate_id: impl ToString, kind: impl Into<String>, data: Value) -> Event {
        Event { aggregate, aggregate_id: aggregate_id.to_string(), kind: kind.into(), data }
    }
}

/// Writes `event` into the outbox, inside the caller's transaction (after the state change it describes).
pub async fn record(conn: &mut AnyConnection, event: Event) -> Result<(), sqlx::Error> {
    record_all(conn, vec![event]).await
}

/// Writes `events` into the outbox in one statement, in this order, inside the caller's transaction (after all
/// the state changes they describe): one round trip for the events of a whole order.
pub async fn record_all(conn: &mut AnyConnection, events: Vec<Event>) -> Result<(), sqlx::Error> {
    let now = crate::db::now_ms();
    let envelopes: Vec<(CloudEvent, &'static str)> = events
        .into_iter()
        .map(|e| (CloudEvent::new(e.aggregate, &e.aggregate_id, &e.kind, e.data, now), e.aggregate))
        .collect();
    outbox::insert(conn, &envelopes).await?;
    for (envelope, _) in &envelopes {
        metrics::counter!("events_recorded_total", "type" => envelope.kind().to_owned()).increment(1);
    }
    Ok(())
}
