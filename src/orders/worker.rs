//! The payment-timeout sweep: cancels unpaid orders past their deadline and returns their stock.
//!
//! Durable: the deadline is in the order row, so a restart loses nothing. Safe with N instances: each batch is
//! claimed with `FOR UPDATE SKIP LOCKED` (MySQL), and each cancellation is the conditional transition
//! `pending_payment → cancelled`, which only one transaction can win, so no order is cancelled (or its stock
//! returned) twice. Also purges expired idempotency keys.

use std::time::Duration;

use sqlx::Connection;

use crate::db::Bounded;
use crate::db::{now_ms, retry_transient};
use crate::error::AppError;
use crate::jobs::FailingItems;
use crate::orders::lifecycle::{self, Actor};
use crate::orders::{key_store, store};
use crate::state::AppState;

const BATCH: i64 = 200;

/// Runs until `shutdown` fires.
pub async fn run(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let interval = Duration::from_millis(state.config.orders.sweep_interval_ms);
    let mut failing = failing_orders();
    loop {
        state.heartbeats.beat("orders.timeout_sweep");
        match sweep_with(&state, &mut failing).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(cancelled = n, "cancelled unpaid orders past their deadline"),
            Err(error) => tracing::warn!(%error, "order timeout sweep failed; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Orders whose cancellation failed: retried after 1 s, doubling up to 5 minutes; alerted after 5 failures.
pub fn failing_orders() -> FailingItems<i64> {
    FailingItems::new("orders.timeout_sweep", Duration::from_secs(1), Duration::from_secs(300), 5)
}

/// One pass with no memory of earlier failures; returns how many orders it cancelled.
pub async fn sweep(state: &AppState) -> Result<usize, AppError> {
    sweep_with(state, &mut failing_orders()).await
}

/// One pass; returns how many orders it cancelled. An order whose cancellation fails is rolled back alone (its
/// savepoint), retried later with backoff, and does not hold up the rest of the batch.
///
/// Close before cancel: an expired order with an open WeChat Pay prepay is first closed at WeChat (outside any
/// transaction); one WeChat cannot confirm closed (the user may be paying, or the answer was lost) is not
/// cancelled but queried, and tried again later with backoff. Only then is it claimed like any other.
pub async fn sweep_with(state: &AppState, failing: &mut FailingItems<i64>) -> Result<usize, AppError> {
    let mut cancelled = 0;
    let open =
        crate::payments::store::open_past_deadline(&state.db.pool, now_ms(), &failing.backing_off(), BATCH).await?;
    let mut unclosed = Vec::new();
    for (id, _) in open {
        match crate::payments::service::close_before_cancel(state, id).await {
            Ok(true) => {}
            Ok(false) => {
                failing.failed(id, &"WeChat Pay did not confirm the close");
                unclosed.push(id);
            }
            Err(error) => {
                failing.failed(id, &error);
                unclosed.push(id);
            }
        }
    }
    loop {
        let mut skip = failing.backing_off();
        skip.extend(&unclosed);
        // The claimed rows stay locked until this transaction ends: another instance's sweep skips them.
        let (batch, done, failed) = retry_transient(|| async {
            let mut tx = state.db.begin_write().await?;
            let ids = store::claim_expired(&mut tx, state.db.dialect, now_ms(), BATCH, &skip).await?;
            let mut done = Vec::with_capacity(ids.len());
            let mut failed = Vec::new();
            for &id in &ids {
                // Prepaid meanwhile (a pay request raced the deadline): the next pass closes it first.
                let payment = crate::payments::store::find_by_order(&mut tx, id).await?;
                if payment.is_some_and(|p| p.state == "pending") {
                    continue;
                }
                let mut savepoint = tx.begin().bounded().await?;
                match lifecycle::cancel_in(&mut savepoint, id, None, &Actor::Timeout).await {
                    Ok(released) => {
                        savepoint.commit().bounded().await?;
                        done.push((id, released));
                    }
                    // Paid or cancelled meanwhile (by the owner, or another instance): nothing to do.
                    Err(AppError::Conflict { .. }) | Err(AppError::NotFound(_)) => {
                        savepoint.rollback().bounded().await?
                    }
                    // A deadlock aborts the whole transaction: run the batch again.
                    Err(error) if error.is_transient() => return Err(error),
                    Err(error) => {
                        savepoint.rollback().bounded().await?;
                        failed.push((id, error.to_string()));
                    }
                }
            }
            tx.commit().bounded().await?;
            Ok((ids.len(), done, failed))
        })
        .await?;
        cancelled += done.len();
        let progress = !done.is_empty();
        for (id, released) in done {
            failing.succeeded(&id);
            lifecycle::cancelled(state, id, &Actor::Timeout, released).await;
        }
        for (id, error) in &failed {
            failing.failed(*id, error);
        }
        // A full batch in which nothing could be cancelled (all failing, or all prepaid meanwhile) ends the pass.
        if batch < BATCH as usize || !progress {
            break;
        }
    }
    key_store::delete_expired_keys(&state.db.pool, now_ms()).await?;
    Ok(cancelled)
}
