//! The sweep of abandoned uploads: a credential that expired long ago without a completion loses its object (if
//! one arrived) and is marked `expired`. Runs in every instance; the conditional UPDATE makes one of them win.

use std::time::Duration;

use crate::db::now_ms;
use crate::error::AppError;
use crate::state::AppState;
use crate::uploads::store;

pub async fn run(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let interval = Duration::from_secs(state.config.storage.sweep_interval_secs.max(1));
    loop {
        state.heartbeats.beat("uploads.sweep");
        if let Err(error) = sweep(&state).await {
            tracing::warn!(%error, "upload sweep failed; retrying");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One pass (tests call it directly): returns how many uploads it expired.
pub async fn sweep(state: &AppState) -> Result<usize, AppError> {
    let before = now_ms() - state.config.storage.abandon_after_secs as i64 * 1000;
    let mut swept = 0;
    for row in store::abandoned(&state.db.pool, before, 100).await? {
        state.storage.delete(&row.incoming_key).await?;
        if store::reject(&state.db.pool, &row.id, "expired", "upload_expired", "not completed in time").await? {
            swept += 1;
        }
    }
    if swept > 0 {
        metrics::counter!("uploads_total", "stage" => "expired", "purpose" => "any").increment(swept as u64);
        tracing::info!(swept, "swept abandoned uploads");
    }
    Ok(swept)
}
