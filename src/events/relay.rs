//! The outbox relay. One leader per database (the `bus_lease` row: taken for `LEASE_MS`, renewed every pass, lost
//! by an instance that dies, given up on a clean shutdown). Each pass claims the unpublished rows in `seq` order,
//! publishes them through the transport, and marks published only what was acknowledged.
//!
//! - A row backing off after a failure holds back the later events of its aggregate (they never overtake it).
//! - A transport failure (broker down) publishes nothing and backs the whole relay off; rows are not blamed.
//! - A message the transport refuses for itself (e.g. too large) is retried with backoff, then parked (`published_at
//!   = -1`, `events_dead_total`, an alert); the rest of its aggregate then goes on.

use std::collections::HashSet;
use std::time::Duration;

use crate::db::{now_ms, Bounded};
use crate::error::AppError;
use crate::events::bus::{self, Published};
use crate::events::outbox;
use crate::state::AppState;

/// The relay's lease lasts this long unless renewed.
pub const LEASE_MS: i64 = 10_000;
const BATCH: i64 = 500;

/// Runs until `shutdown`: relay passes and, for the log transport, the in-process consumers, on the leader only.
pub async fn run(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let holder = uuid::Uuid::new_v4().to_string();
    let poll = Duration::from_millis(state.config.events.relay_poll_ms);
    let mut backoff = Duration::ZERO;
    let mut last_purge = 0;
    loop {
        state.heartbeats.beat("events.relay");
        let now = now_ms();
        let leader = outbox::take_lease(&state.db.pool, state.db.dialect, "outbox", &holder, now, now + LEASE_MS)
            .await
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "could not take the event relay lease");
                false
            });
        metrics::gauge!("events_relay_leader").set(if leader { 1.0 } else { 0.0 });
        let mut more = false;
        if leader {
            match pass(&state).await {
                Ok(published) => {
                    backoff = Duration::ZERO;
                    // A full batch: there is probably more; go on at once.
                    more = published >= BATCH as usize;
                }
                Err(error) => {
                    backoff = (backoff * 2).clamp(Duration::from_millis(200), Duration::from_secs(30));
                    tracing::warn!(%error, backoff_ms = backoff.as_millis() as u64, "event relay pass failed; backing off");
                }
            }
            // While catching up on a backlog, publishing comes first; the consumers read on between full batches.
            if !more {
                if let Err(error) = bus::run_consumers(&state).await {
                    tracing::warn!(%error, "in-process consumers failed; retrying");
                }
            }
            if now - last_purge > 60_000 {
                last_purge = now;
                let before = now - state.config.events.retention_days as i64 * 86_400_000;
                if let Err(error) = outbox::purge(&state.db.pool, state.db.dialect, before).await {
                    tracing::warn!(%error, "could not purge published events");
                }
            }
        }
        report_backlog(&state).await;
        if more {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(poll + backoff) => {}
            _ = state.events_wake.notified() => {}
            _ = shutdown.changed() => {
                let _ = outbox::release_lease(&state.db.pool, "outbox", &holder).await;
                bus::shutdown(&state).await;
                return;
            }
        }
    }
}

async fn report_backlog(state: &AppState) {
    if let Ok((pending, oldest_ms)) = outbox::backlog(&state.db.pool, now_ms()).await {
        metrics::gauge!("events_outbox_pending").set(pending as f64);
        metrics::gauge!("events_outbox_oldest_pending_seconds").set(oldest_ms as f64 / 1000.0);
    }
}

/// One relay pass; returns how many events it published.
pub async fn pass(state: &AppState) -> Result<usize, AppError> {
    let now = now_ms();
    let rows = outbox::pending(&state.db.pool, BATCH).await?;
    let mut held: HashSet<(String, String)> = HashSet::new();
    let mut batch = Vec::with_capacity(rows.len());
    for row in rows {
        let key = (row.aggregate.clone(), row.aggregate_id.clone());
        if held.contains(&key) {
            continue;
        }
        if row.next_attempt_at > now {
            held.insert(key);
            continue;
        }
        batch.push(row);
    }
    if batch.is_empty() {
        return Ok(0);
    }
    let outcomes = bus::publish(state, &batch).await?;
    let mut published = Vec::with_capacity(batch.len());
    let max_attempts = state.config.events.max_attempts as i64;
    for (row, outcome) in batch.iter().zip(outcomes) {
        match outcome {
            Published::Acknowledged => published.push(row.seq),
            Published::Refused(error) => {
                let attempts = row.attempts + 1;
                let dead = attempts >= max_attempts;
                let retry_at = now + (1_000i64 << attempts.min(8));
                outbox::mark_failed(&state.db.pool, row.seq, &error, retry_at, dead).await?;
                if dead {
                    metrics::counter!("events_dead_total").increment(1);
                    tracing::error!(
                        seq = row.seq,
                        event_id = row.event.id,
                        error,
                        "an event cannot be published: parked"
                    );
                } else {
                    metrics::counter!("events_publish_failures_total").increment(1);
                }
            }
        }
    }
    // READ COMMITTED on MySQL: no gap locks, so marking rows never deadlocks with business transactions inserting
    // new ones at the tail of the same indexes. (SQLite's single writer needs nothing.)
    let mut tx = state.db.begin_write_read_committed().await?;
    outbox::mark_published(&mut tx, &published, now_ms(), bus::uses_log(state)).await?;
    tx.commit().bounded().await?;
    metrics::counter!("events_published_total").increment(published.len() as u64);
    Ok(published.len())
}
