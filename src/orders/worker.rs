//! The payment-timeout sweep: cancels unpaid orders past their deadline and returns their stock.
//!
//! Durable: the deadline is in the order row, so a restart loses nothing. Safe with N instances: each batch is
//! claimed with `FOR UPDATE SKIP LOCKED` (MySQL), and each cancellation is the conditional transition
//! `pending_payment → cancelled`, which only one transaction can win, so no order is cancelled (or its stock
//! returned) twice. Also purges expired idempotency keys.

use std::time::Duration;

use crate::db::{now_ms, retry_transient};
use crate::error::AppError;
use crate::orders::lifecycle::{self, Actor};
use crate::orders::store;
use crate::state::AppState;

const BATCH: i64 = 200;

/// Runs until `shutdown` fires.
pub async fn run(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let interval = Duration::from_millis(state.config.orders.sweep_interval_ms);
    loop {
        state.heartbeats.beat("orders.timeout_sweep");
        match sweep(&state).await {
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

/// One pass; returns how many orders it cancelled.
pub async fn sweep(state: &AppState) -> Result<usize, AppError> {
    let mut cancelled = 0;
    loop {
        // The claimed rows stay locked until this transaction ends: another instance's sweep skips them.
        let (batch, done) = retry_transient(|| async {
            let mut tx = state.db.begin_write().await?;
            let ids = store::claim_expired(&mut tx, state.db.dialect, now_ms(), BATCH).await?;
            let mut done = Vec::with_capacity(ids.len());
            for &id in &ids {
                match lifecycle::cancel_in(&mut tx, id, None, &Actor::Timeout).await {
                    Ok(released) => done.push((id, released)),
                    // Paid or cancelled meanwhile (by the owner, or another instance): nothing to do.
                    Err(AppError::Conflict { .. }) | Err(AppError::NotFound(_)) => {}
                    Err(other) => return Err(other),
                }
            }
            tx.commit().await?;
            Ok((ids.len(), done))
        })
        .await?;
        cancelled += done.len();
        for (id, released) in done {
            lifecycle::cancelled(state, id, &Actor::Timeout, released).await;
        }

        if batch < BATCH as usize {
            break;
        }
    }
    store::delete_expired_keys(&state.db.pool, now_ms()).await?;
    Ok(cancelled)
}
