//! Keeping every instance's snapshot current: a poll of the one-row global version every `flags.poll_ms` (reload
//! when it moved), and in scale-out a Redis subscription on which writers announce each new version, so a change is
//! usually in force everywhere in milliseconds and at worst within one poll. While either source is unreachable the
//! snapshot stops counting as fresh: evaluations say `STALE` after `flags.stale_after_ms` (with Redis down the poll
//! still brings changes in; only the announcements are missing).

use std::time::Duration;

use futures_util::StreamExt;

use crate::error::AppError;
use crate::flags::store;
use crate::state::{App, AppState};

fn channel(app: &App) -> Option<String> {
    app.redis.as_ref().map(|redis| redis.key("flags"))
}

/// Reads the store when its version moved (or `force`); marks the snapshot fresh either way.
pub async fn refresh(app: &App, force: bool) -> Result<bool, AppError> {
    let version = store::global_version(&app.db.pool).await?;
    if !force && version == app.flags.snapshot().version {
        app.flags.mark_synced();
        return Ok(false);
    }
    let (version, flags) = store::load_all(&app.db).await?;
    let changed = version != app.flags.snapshot().version;
    app.flags.install(version, flags);
    if changed {
        metrics::counter!("flag_reloads_total").increment(1);
    }
    Ok(changed)
}

/// At start-up: the store, else the bootstrap file (served as stale until the store answers).
pub async fn load_at_start(app: &App) {
    if let Err(error) = refresh(app, true).await {
        tracing::warn!(%error, "cannot read the feature flags at start-up");
        if !app.flags.load_bootstrap() {
            tracing::warn!("no flags bootstrap file either: every flag is off (reason ERROR) until the store answers");
        }
    }
}

/// Tells the other instances a new version is committed (scale-out); they also find it by polling.
pub async fn announce(app: &App, version: i64) {
    let (Some(redis), Some(channel)) = (app.redis.as_ref(), channel(app)) else { return };
    let sent = redis::cmd("PUBLISH").arg(&channel).arg(version).query_async::<i64>(&mut redis.conn()).await;
    if let Err(error) = sent {
        tracing::warn!(%error, "cannot announce a flag change on Redis; the others will see it on their next poll");
    }
}

pub async fn run(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let listener = tokio::spawn(listen(state.clone()));
    let interval = Duration::from_millis(state.config.flags.poll_ms.max(10));
    loop {
        if let Err(error) = refresh(&state, false).await {
            tracing::debug!(%error, "cannot poll the feature flags; serving the last snapshot");
        }
        metrics::gauge!("flag_snapshot_age_seconds").set(state.flags.age_ms().max(0) as f64 / 1000.0);
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => break,
        }
    }
    listener.abort();
}

/// Reloads as soon as another instance announces a change.
async fn listen(state: AppState) {
    let (Some(redis), Some(channel)) = (state.redis.clone(), channel(&state)) else { return };
    loop {
        if let Ok(mut pubsub) = redis.pubsub().await {
            if pubsub.subscribe(&channel).await.is_ok() {
                state.flags.set_announcements_up(true);
                // Whatever was announced while we were not listening: the poll has it.
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    let announced: i64 = message.get_payload().unwrap_or(i64::MAX);
                    if announced > state.flags.snapshot().version {
                        if let Err(error) = refresh(&state, false).await {
                            tracing::debug!(%error, "cannot reload the announced flags; the poll will");
                        }
                    }
                }
            }
        }
        // The subscription ended or could not start: Redis is unreachable.
        state.flags.set_announcements_up(false);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
