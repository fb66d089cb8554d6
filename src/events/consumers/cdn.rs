//! `cdn_purge`: an image taken down (`upload.taken_down`) queues its URLs for the CDN purger (`cdn::worker`), in
//! the consumer's transaction, so each URL is queued once however often the event is delivered.

use sqlx::AnyConnection;

use crate::error::AppError;
use crate::events::envelope::CloudEvent;
use crate::state::App;

pub async fn apply(app: &App, conn: &mut AnyConnection, event: &CloudEvent) -> Result<(), AppError> {
    // Without a CDN there is nothing to purge: the event is consumed and forgotten.
    if app.cdn.is_none() {
        return Ok(());
    }
    let urls = event.data.get("urls").and_then(serde_json::Value::as_array).ok_or_else(|| {
        AppError::Internal(anyhow::anyhow!("event {} ({}) has no `urls`", event.id, event.event_type))
    })?;
    let now = crate::db::now_ms();
    for url in urls.iter().filter_map(serde_json::Value::as_str) {
        crate::cdn::store::enqueue(conn, url, now).await?;
    }
    Ok(())
}
