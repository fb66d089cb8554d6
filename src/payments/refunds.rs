//! After-sales: refund requests by the buyer, approved (in full or in part) or rejected by an admin, sent to
//! WeChat with an `out_refund_no` stored before the call and settled by notification or query; and the automatic
//! full refund of a payment that arrives for a cancelled order.
//!
//! Several partial refunds never add up to more than the order's total: the sum of every refund not closed or
//! rejected is checked in the same transaction that approves a new one, with the order row locked by its
//! conditional transition to `refunding` (one refund in flight per order).

use serde_json::json;
use sqlx::AnyConnection;

use crate::db::{now_ms, Bounded};
use crate::error::AppError;
use crate::orders::lifecycle::{self, Actor};
use crate::orders::store::{self as order_store, OrderRow};
use crate::orders::OrderStatus;
use crate::payments::model::RefundInfo;
pub use crate::payments::model::{Refund, RefundStatus};
pub use crate::payments::refund_store::{find, list, of_order, RefundRow};
use crate::payments::refund_store::{find_by_no, insert, set_status, NewRefund};
use crate::state::App;

/// What WeChat is asked to refund: stored before the first call, replayed on every retry.
fn request_body(app: &App, order: &OrderRow, out_refund_no: &str, amount_fen: i64, reason: &str) -> String {
    let reason: String = reason.chars().filter(|c| c.len_utf8() <= 3).take(80).collect();
    json!({
        "out_trade_no": order.order_no,
        "out_refund_no": out_refund_no,
        "reason": reason,
        "notify_url": app.pay.notify_url,
        "amount": { "refund": amount_fen, "total": order.total_fen, "currency": "CNY" },
    })
    .to_string()
}

/// The full refund of a payment that arrived for a cancelled order (deterministic `out_refund_no`: `C` + the
/// order number, so it can only ever happen once). Inside the caller's transaction.
pub(crate) async fn insert_after_cancel(
    app: &App,
    conn: &mut AnyConnection,
    order: &OrderRow,
    amount_fen: i64,
    now: i64,
) -> Result<i64, AppError> {
    let no = format!("C{}", order.order_no);
    if let Some(existing) = find_by_no(conn, &no).await? {
        return Ok(existing.id);
    }
    let body = request_body(app, order, &no, amount_fen, "订单已取消，自动退款");
    let new = NewRefund {
        order_id: order.id,
        out_refund_no: &no,
        kind: "after_cancel",
        status: "processing",
        amount_fen,
        reason: "paid after cancellation",
        body: Some(body),
    };
    Ok(insert(conn, new, now).await?)
}

/// Requested, processing or succeeded amounts of an order (what can no longer be refunded).
fn committed(refunds: &[RefundRow]) -> i64 {
    refunds
        .iter()
        .filter(|r| matches!(r.status.as_str(), "requested" | "processing" | "succeeded" | "abnormal"))
        .map(|r| r.amount_fen)
        .sum()
}

/// `POST /api/v1/orders/{id}/refund-requests`: the buyer asks for `amount_fen` (default: all that is left).
pub async fn request(
    app: &App,
    user_id: i64,
    order_id: i64,
    reason: &str,
    amount_fen: Option<i64>,
) -> Result<Refund, AppError> {
    let reason = reason.trim();
    let mut fields = Vec::new();
    crate::domain::check_human_text("reason", reason, 200, true, &mut fields);
    if let Some(amount) = amount_fen.filter(|a| *a < 1) {
        fields.push(crate::error::FieldError::new("amount_fen", format!("must be at least 1, got {amount}")));
    }
    if !fields.is_empty() {
        return Err(AppError::Validation(fields));
    }
    let now = now_ms();
    let mut tx = app.db.begin_write().await?;
    // Locked: two requests for one order at once take turns (SQLite's write transaction does this by itself).
    let order = order_store::lock_order(&mut tx, app.db.dialect, order_id).await?.filter(|o| o.user_id == user_id);
    let order = order.ok_or(AppError::not_found("order"))?;
    if !matches!(order.status.as_str(), "paid" | "shipped") {
        return Err(AppError::conflict(
            "invalid_order_state",
            format!("an order that is {} cannot be refunded", order.status),
        ));
    }
    let refunds = of_order(&mut tx, order_id).await?;
    if refunds.iter().any(|r| matches!(r.status.as_str(), "requested" | "processing" | "abnormal")) {
        return Err(AppError::conflict("refund_in_progress", "this order has a refund in progress"));
    }
    let left = order.total_fen - committed(&refunds);
    let amount = amount_fen.unwrap_or(left);
    if amount > left || amount < 1 {
        return Err(AppError::validation("amount_fen", format!("at most {left} fen is left to refund")));
    }
    let no = format!("R{}{:02}", order.order_no, refunds.len() + 1);
    let new = NewRefund {
        order_id,
        out_refund_no: &no,
        kind: "request",
        status: "requested",
        amount_fen: amount,
        reason,
        body: None,
    };
    let id = insert(&mut tx, new, now).await?;
    let data =
        json!({ "refund_id": id, "order_id": order_id, "user_id": user_id, "amount_fen": amount, "reason": reason });
    crate::events::record(&mut tx, crate::events::Event::new("refund", id, "refund.requested", data)).await?;
    let refund = find(&mut tx, id).await?.ok_or(AppError::not_found("refund"))?;
    tx.commit().bounded().await?;
    app.events_wake.notify_one();
    Ok(refund.view())
}

/// Admin approval: the refund (of `amount_fen`, at most what was asked) goes to WeChat, the order to `refunding`.
pub async fn approve(
    app: &App,
    admin_id: i64,
    refund_id: i64,
    amount_fen: Option<i64>,
    note: Option<&str>,
) -> Result<Refund, AppError> {
    let now = now_ms();
    let mut tx = app.db.begin_write().await?;
    let refund = find(&mut tx, refund_id).await?.ok_or(AppError::not_found("refund"))?;
    if refund.status != "requested" {
        return Err(AppError::conflict(
            "invalid_refund_state",
            format!("a refund that is {} cannot be approved", refund.status),
        ));
    }
    let amount = amount_fen.unwrap_or(refund.amount_fen);
    if amount < 1 || amount > refund.amount_fen {
        return Err(AppError::validation(
            "amount_fen",
            format!("must be between 1 and the {} fen asked for", refund.amount_fen),
        ));
    }
    let order = order_store::lock_order(&mut tx, app.db.dialect, refund.order_id).await?;
    let order = order.ok_or(AppError::not_found("order"))?;
    let others: Vec<RefundRow> = of_order(&mut tx, order.id).await?.into_iter().filter(|r| r.id != refund_id).collect();
    let left = order.total_fen - committed(&others);
    if amount > left {
        return Err(AppError::validation("amount_fen", format!("at most {left} fen is left to refund")));
    }
    let status = OrderStatus::parse(&order.status).unwrap_or(OrderStatus::Cancelled);
    lifecycle::transition(&mut tx, order.id, status, OrderStatus::Refunding, &Actor::Admin(admin_id), None).await?;
    let body = request_body(app, &order, &refund.out_refund_no, amount, &refund.reason);
    sqlx::query(
        "UPDATE refund SET status = 'processing', amount_fen = ?, request_body = ?, order_status_before = ?, \
         decided_by = ?, decision_note = ?, updated_at = ? WHERE id = ? AND status = 'requested'",
    )
    .bind(amount)
    .bind(body)
    .bind(order.status.clone())
    .bind(admin_id)
    .bind(note.map(str::to_owned))
    .bind(now)
    .bind(refund_id)
    .execute(&mut *tx)
    .bounded()
    .await?;
    tx.commit().bounded().await?;
    crate::orders::changed(app, order.id).await;
    send(app, refund_id).await;
    let mut conn = app.db.pool.acquire().await?;
    Ok(find(&mut conn, refund_id).await?.ok_or(AppError::not_found("refund"))?.view())
}

/// Admin rejection, with the reason the buyer sees.
pub async fn reject(app: &App, refund_id: i64, note: &str) -> Result<Refund, AppError> {
    let note = note.trim();
    let mut fields = Vec::new();
    crate::domain::check_human_text("reason", note, 200, true, &mut fields);
    if !fields.is_empty() {
        return Err(AppError::Validation(fields));
    }
    let mut tx = app.db.begin_write().await?;
    let refund = find(&mut tx, refund_id).await?.ok_or(AppError::not_found("refund"))?;
    if !set_status(&mut tx, refund_id, &["requested"], "rejected", now_ms()).await? {
        return Err(AppError::conflict(
            "invalid_refund_state",
            format!("a refund that is {} cannot be rejected", refund.status),
        ));
    }
    sqlx::query("UPDATE refund SET decision_note = ? WHERE id = ?")
        .bind(note.to_owned())
        .bind(refund_id)
        .execute(&mut *tx)
        .bounded()
        .await?;
    tx.commit().bounded().await?;
    let mut conn = app.db.pool.acquire().await?;
    Ok(find(&mut conn, refund_id).await?.ok_or(AppError::not_found("refund"))?.view())
}

/// Sends a processing refund to WeChat (again: the same body, the same `out_refund_no`, refunded once) and applies
/// the answer. Failures leave it for the worker, which retries with backoff or queries.
pub async fn send(app: &App, refund_id: i64) {
    let result = async {
        let mut conn = app.db.pool.acquire().await?;
        let Some(refund) = find(&mut conn, refund_id).await? else { return Ok::<(), AppError>(()) };
        drop(conn);
        let Some(body) = refund.request_body.filter(|_| refund.status == "processing") else { return Ok(()) };
        match app.pay.client.refund(body.as_bytes()).await {
            Ok(info) => apply_refund(app, &info, "refund", None).await.map(|_| ()),
            Err(error) => {
                match error.code() {
                    // Refused for good (already refunded in full, too old, parameters): the refund is closed.
                    Some("INVALID_REQUEST" | "PARAM_ERROR" | "RESOURCE_NOT_EXISTS") => {
                        tracing::error!(%error, refund_id, "WeChat Pay refused the refund");
                        close(app, refund_id, &error.to_string()).await?;
                    }
                    _ => tracing::warn!(%error, refund_id, "refund not confirmed; the payment worker retries it"),
                }
                Ok(())
            }
        }
    }
    .await;
    if let Err(error) = result {
        tracing::warn!(%error, refund_id, "sending a refund failed; the payment worker retries it");
    }
}

async fn close(app: &App, refund_id: i64, note: &str) -> Result<(), AppError> {
    let mut tx = app.db.begin_write().await?;
    let Some(refund) = find(&mut tx, refund_id).await? else { return Ok(()) };
    if set_status(&mut tx, refund_id, &["processing", "abnormal"], "closed", now_ms()).await? {
        sqlx::query("UPDATE refund SET decision_note = ? WHERE id = ?")
            .bind(note.chars().take(200).collect::<String>())
            .bind(refund_id)
            .execute(&mut *tx)
            .bounded()
            .await?;
        restore_order(&mut tx, &refund).await?;
    }
    tx.commit().bounded().await?;
    crate::orders::changed(app, refund.order_id).await;
    Ok(())
}

/// A failed or partial refund puts the order back where it was (`paid` or `shipped`).
async fn restore_order(conn: &mut AnyConnection, refund: &RefundRow) -> Result<(), AppError> {
    let Some(before) = refund.order_status_before.as_deref().and_then(OrderStatus::parse) else { return Ok(()) };
    let order = order_store::find_order(conn, refund.order_id).await?.ok_or(AppError::not_found("order"))?;
    if order.status == "refunding" {
        lifecycle::transition(conn, order.id, OrderStatus::Refunding, before, &Actor::Payment, None).await?;
    }
    Ok(())
}

/// Settles a refund from a notification, the refund call's answer or a query (idempotent): `SUCCESS` →
/// succeeded (the order `refunded` when nothing is left, else back where it was; a full refund before shipping
/// returns stock and coupon), `CLOSED` → closed (order back), `ABNORMAL` → abnormal (not final).
pub async fn apply_refund(
    app: &App,
    info: &RefundInfo,
    source: &str,
    event: Option<(&str, &str)>,
) -> Result<bool, AppError> {
    let now = now_ms();
    let mut tx = app.db.begin_write().await?;
    if let Some((event_id, event_type)) = event {
        let new = crate::payments::store::insert_event(
            &mut tx,
            app.db.dialect,
            event_id,
            event_type,
            &info.out_refund_no,
            now,
        )
        .await?;
        if !new {
            tx.commit().bounded().await?;
            return Ok(false);
        }
    }
    let Some(refund) = find_by_no(&mut tx, &info.out_refund_no).await? else {
        crate::payments::store::insert_anomaly(
            &mut tx,
            &info.out_refund_no,
            "unknown_refund",
            source,
            "no refund with this out_refund_no",
            now,
        )
        .await?;
        tx.commit().bounded().await?;
        metrics::counter!("pay_anomalies_total", "kind" => "unknown_refund").increment(1);
        return Ok(false);
    };
    if info.amount.refund != refund.amount_fen {
        let detail = format!("refund {} but we asked {}", info.amount.refund, refund.amount_fen);
        crate::payments::store::insert_anomaly(
            &mut tx,
            &info.out_refund_no,
            "refund_amount_mismatch",
            source,
            &detail,
            now,
        )
        .await?;
        tx.commit().bounded().await?;
        metrics::counter!("pay_anomalies_total", "kind" => "refund_amount_mismatch").increment(1);
        return Ok(false);
    }
    if let Some(id) = &info.refund_id {
        sqlx::query("UPDATE refund SET refund_id = ? WHERE id = ?")
            .bind(id.clone())
            .bind(refund.id)
            .execute(&mut *tx)
            .bounded()
            .await?;
    }
    let changed = match info.status.as_deref() {
        Some("SUCCESS") => {
            let done = set_status(&mut tx, refund.id, &["processing", "abnormal"], "succeeded", now).await?;
            if done {
                refund_event(&mut tx, &refund, "refund.succeeded").await?;
                if refund.kind == "request" {
                    settle_order(&mut tx, &refund).await?;
                }
            }
            done
        }
        Some("CLOSED") => {
            let done = set_status(&mut tx, refund.id, &["processing", "abnormal"], "closed", now).await?;
            if done {
                refund_event(&mut tx, &refund, "refund.closed").await?;
                restore_order(&mut tx, &refund).await?;
            }
            done
        }
        Some("ABNORMAL") => {
            let done = set_status(&mut tx, refund.id, &["processing"], "abnormal", now).await?;
            if done {
                metrics::counter!("pay_refund_abnormal_total").increment(1);
                tracing::error!(out_refund_no = refund.out_refund_no, "refund ABNORMAL at WeChat Pay: needs a person");
            }
            done
        }
        _ => false,
    };
    tx.commit().bounded().await?;
    app.events_wake.notify_one();
    crate::orders::changed(app, refund.order_id).await;
    Ok(changed)
}

/// Records a refund's outcome (inside the transaction that settles it).
async fn refund_event(conn: &mut AnyConnection, refund: &RefundRow, kind: &str) -> Result<(), sqlx::Error> {
    let data = json!({
        "refund_id": refund.id, "order_id": refund.order_id, "out_refund_no": refund.out_refund_no,
        "amount_fen": refund.amount_fen, "kind": refund.kind,
    });
    crate::events::record(conn, crate::events::Event::new("refund", refund.id, kind, data)).await
}

/// After a successful refund: `refunded` when the whole total is back (stock and coupon returned when it was never
/// shipped), else the order goes back to where it was.
async fn settle_order(conn: &mut AnyConnection, refund: &RefundRow) -> Result<(), AppError> {
    let order = order_store::find_order(conn, refund.order_id).await?.ok_or(AppError::not_found("order"))?;
    let refunded: i64 = of_order(conn, order.id)
        .await?
        .iter()
        .filter(|r| r.status == "succeeded" && r.kind == "request")
        .map(|r| r.amount_fen)
        .sum();
    if order.status != "refunding" {
        return Ok(());
    }
    if refunded >= order.total_fen {
        lifecycle::transition(conn, order.id, OrderStatus::Refunding, OrderStatus::Refunded, &Actor::Payment, None)
            .await?;
        if refund.order_status_before.as_deref() == Some("paid") {
            lifecycle::return_goods(conn, &order, crate::db::now_ms()).await?;
        }
        metrics::counter!("orders_refunded_total").increment(1);
    } else {
        restore_order(conn, refund).await?;
    }
    Ok(())
}
