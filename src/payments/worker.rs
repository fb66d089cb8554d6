//! The payment worker, in every instance: each item is claimed by a conditional UPDATE of its next-check time, so
//! N instances never do the same item at once, and its schedule lives in the database (a restart loses nothing).
//!
//! Each pass: pending payments without a notification are queried (first `pay.poll_after_secs` after the prepay,
//! then backing off), refunds in flight are sent again or queried, shipping information is uploaded to WeChat
//! until accepted, shipped orders are completed after `orders.auto_complete_days`, and yesterday's trade bill is
//! reconciled once it exists (after 10:30 Beijing time).

use std::time::Duration;

use serde_json::json;
use sqlx::Row;

use crate::db::{now_ms, Bounded};
use crate::error::AppError;
use crate::payments::{reconcile, refund_store, refunds, service, store};
use crate::state::AppState;

const BATCH: i64 = 50;
/// Backoff of the pending-payment poller and of retried items: doubling, capped.
const MAX_BACKOFF_MS: i64 = 600_000;

pub async fn run(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let interval = Duration::from_millis(state.config.pay.worker_interval_ms);
    loop {
        state.heartbeats.beat("payments.worker");
        if let Err(error) = pass(&state).await {
            tracing::warn!(%error, "payment worker pass failed; retrying");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

fn backoff(base_ms: i64, attempts: i64) -> i64 {
    base_ms.saturating_mul(1 << attempts.clamp(0, 20)).min(MAX_BACKOFF_MS)
}

/// One pass of everything (tests call it directly).
pub async fn pass(state: &AppState) -> Result<(), AppError> {
    poll_pending(state).await?;
    refunds_in_flight(state).await?;
    upload_shipping(state).await?;
    let completed = crate::orders::lifecycle::auto_complete(state).await?;
    if completed > 0 {
        tracing::info!(completed, "completed orders shipped long ago");
    }
    reconcile::daily(state).await;
    Ok(())
}

/// Pending payments whose notification is late: asked about, then asked again later.
pub async fn poll_pending(state: &AppState) -> Result<usize, AppError> {
    let now = now_ms();
    let base = state.config.pay.poll_after_secs as i64 * 1000;
    let mut applied = 0;
    for payment in store::due_for_check(&state.db.pool, now, BATCH).await? {
        let next = now + backoff(base, payment.check_attempts + 1);
        if !store::claim_check(&state.db.pool, payment.order_id, payment.next_check_at, next).await? {
            continue;
        }
        match service::query_and_apply(state, &payment.out_trade_no, "poller").await {
            Ok(service::Applied::Paid) => applied += 1,
            Ok(_) => {}
            Err(error) => tracing::info!(%error, order_id = payment.order_id, "pending payment query failed"),
        }
    }
    Ok(applied)
}

/// Refunds not yet settled: sent again when WeChat never confirmed taking them, else queried.
async fn refunds_in_flight(state: &AppState) -> Result<(), AppError> {
    let now = now_ms();
    for refund in refund_store::due(state, now, BATCH).await? {
        let age = (now - refund.updated_at).max(0);
        let next = now + backoff(5_000, (age / 60_000).min(10));
        if !refund_store::claim(state, refund.id, refund.next_check_at, next).await? {
            continue;
        }
        if refund.refund_id.is_none() {
            refunds::send(state, refund.id).await;
            continue;
        }
        match state.pay.client.query_refund(&refund.out_refund_no).await {
            Ok(info) => {
                refunds::apply_refund(state, &info, "query", None).await?;
            }
            Err(error) => tracing::info!(%error, refund_id = refund.id, "refund query failed"),
        }
    }
    Ok(())
}

/// Shipping information not yet accepted by WeChat: uploaded, retried with backoff until it is.
async fn upload_shipping(state: &AppState) -> Result<(), AppError> {
    let now = now_ms();
    let rows = sqlx::query(
        "SELECT s.order_id, s.attempts, s.next_attempt_at, o.order_no, o.carrier, o.tracking_no, o.shipped_at, u.openid \
         FROM shipping_upload s JOIN shop_order o ON o.id = s.order_id JOIN app_user u ON u.id = o.user_id \
         WHERE s.state = 'pending' AND s.next_attempt_at <= ? ORDER BY s.next_attempt_at LIMIT ?",
    )
    .bind(now)
    .bind(BATCH)
    .fetch_all(&state.db.pool)
    .bounded()
    .await?;
    for row in rows {
        let order_id: i64 = row.try_get("order_id")?;
        let attempts: i64 = row.try_get("attempts")?;
        let seen: i64 = row.try_get("next_attempt_at")?;
        let next = now + backoff(5_000, attempts);
        let claimed = sqlx::query(
            "UPDATE shipping_upload SET attempts = attempts + 1, next_attempt_at = ?, updated_at = ? \
             WHERE order_id = ? AND next_attempt_at = ? AND state = 'pending'",
        )
        .bind(next)
        .bind(now)
        .bind(order_id)
        .bind(seen)
        .execute(&state.db.pool)
        .bounded()
        .await?;
        if claimed.rows_affected() != 1 {
            continue;
        }
        let carrier: Option<String> = row.try_get("carrier")?;
        let tracking: Option<String> = row.try_get("tracking_no")?;
        let shipped_at: Option<i64> = row.try_get("shipped_at")?;
        let body = json!({
            "order_key": {
                "order_number_type": 1,
                "mchid": state.pay.client.keys().merchant.mch_id,
                "out_trade_no": row.try_get::<String, _>("order_no")?,
            },
            "logistics_type": 1,
            "delivery_mode": 1,
            "shipping_list": [{
                "tracking_no": tracking.unwrap_or_default(),
                "express_company": carrier.unwrap_or_default(),
                "item_desc": "wxshop order",
            }],
            "upload_time": crate::db::rfc3339_beijing(shipped_at.unwrap_or(now) / 1000),
            "payer": { "openid": row.try_get::<String, _>("openid")? },
        });
        let (done, error) = match state.wechat.upload_shipping_info(&body).await {
            Ok(()) => (true, None),
            Err(error) => (false, Some(error.to_string())),
        };
        if let Some(error) = &error {
            tracing::warn!(
                error,
                order_id,
                attempts = attempts + 1,
                "shipping information upload failed; retrying later"
            );
            metrics::counter!("shipping_upload_failures_total").increment(1);
        }
        sqlx::query("UPDATE shipping_upload SET state = ?, last_error = ?, updated_at = ? WHERE order_id = ?")
            .bind(if done { "done" } else { "pending" })
            .bind(error.map(|e| e.chars().take(250).collect::<String>()))
            .bind(now_ms())
            .bind(order_id)
            .execute(&state.db.pool)
            .bounded()
            .await?;
    }
    Ok(())
}
