//! The consumers of domain events. Each applies an event inside the transaction [`crate::events::bus::deliver`]
//! opened with its inbox row, so it applies each event once however often it is delivered.

pub mod cdn;
pub mod sales;
pub mod subscribe;

use sqlx::AnyConnection;

use crate::error::AppError;
use crate::events::envelope::CloudEvent;
use crate::state::App;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumer {
    /// Sales per day and SKU: orders, units, GMV, refunds (`GET /admin/api/v1/stats/sales`).
    Sales,
    /// WeChat subscribe messages (订阅消息) to the buyer when an order is paid and when it ships.
    Subscribe,
    /// CDN purges of images taken down (`cdn::worker` sends them).
    CdnPurge,
}

impl Consumer {
    pub const ALL: [Consumer; 3] = [Consumer::Sales, Consumer::Subscribe, Consumer::CdnPurge];

    /// Its name: the inbox key, the offset's key, the Kafka consumer group's suffix.
    pub fn name(self) -> &'static str {
        match self {
            Consumer::Sales => "sales_stats",
            Consumer::Subscribe => "subscribe_messages",
            Consumer::CdnPurge => "cdn_purge",
        }
    }

    /// The aggregate types whose events it reads (its Kafka topics).
    pub fn aggregates(self) -> &'static [&'static str] {
        match self {
            Consumer::Sales => &["order", "refund"],
            Consumer::Subscribe => &["order"],
            Consumer::CdnPurge => &["upload"],
        }
    }

    /// Whether it cares about events of this (short) type.
    pub fn wants(self, kind: &str) -> bool {
        match self {
            Consumer::Sales => matches!(kind, "order.paid" | "refund.succeeded"),
            Consumer::Subscribe => matches!(kind, "order.paid" | "order.shipped"),
            Consumer::CdnPurge => kind == "upload.taken_down",
        }
    }

    pub async fn apply(self, app: &App, conn: &mut AnyConnection, event: &CloudEvent) -> Result<(), AppError> {
        match self {
            Consumer::Sales => sales::apply(app, conn, event).await,
            Consumer::Subscribe => subscribe::apply(app, conn, event).await,
            Consumer::CdnPurge => cdn::apply(app, conn, event).await,
        }
    }
}

/// An integer field of the event's data.
pub(crate) fn data_i64(event: &CloudEvent, field: &str) -> Result<i64, AppError> {
    event.data.get(field).and_then(serde_json::Value::as_i64).ok_or_else(|| {
        AppError::Internal(anyhow::anyhow!("event {} ({}) has no integer `{field}`", event.id, event.event_type))
    })
}
