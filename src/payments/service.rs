//! Paying for an order: the prepay (stored once, replayed byte for byte), the `wx.requestPayment` fields, the
//! active query, and the one idempotent function both the notification and every query go through.

use std::time::Duration;

use serde_json::json;

use crate::db::{now_ms, rfc3339, Bounded};
use crate::error::AppError;
use crate::orders::lifecycle::{self, Actor};
use crate::orders::store as order_store;
use crate::orders::OrderStatus;
use crate::payments::client::PayError;
use crate::payments::model::{PaymentState, PaymentView, RequestPayment, Transaction};
use crate::payments::{refunds, store};
use crate::state::App;

/// Under this much time before the deadline no prepay is made: WeChat raises `time_expire` to at least a minute
/// after the prepay, so a later one could let the user pay after the sweep cancelled the order.
pub const MIN_WINDOW_MS: i64 = 90_000;
/// A prepay id is reused while it has this long left of its 2 h.
const PREPAY_TTL_MS: i64 = 7_200_000;

pub(crate) fn unavailable(error: &PayError) -> AppError {
    tracing::warn!(%error, "WeChat Pay call failed");
    AppError::Unavailable { code: "wechat_pay_unavailable", message: "WeChat Pay is unavailable; retry shortly".into() }
}

/// The `description` WeChat shows in the payer's bill: the first item's title (no 4-byte characters, at most
/// 127 bytes), with the item count when there are more.
fn description(items: &[order_store::ItemRow]) -> String {
    let first: String =
        items.first().map(|i| i.title.chars().filter(|c| c.len_utf8() <= 3).collect()).unwrap_or_default();
    let suffix = if items.len() > 1 { format!(" 等{}件", items.len()) } else { String::new() };
    let mut text = first.trim().to_owned();
    while text.len() + suffix.len() > 127 {
        text.pop();
    }
    if text.is_empty() {
        text = "wxshop".into();
    }
    text + &suffix
}

/// `POST /api/v1/orders/{id}/pay`: the five `wx.requestPayment` fields for the user's unpaid order.
pub async fn pay(app: &App, user_id: i64, order_id: i64) -> Result<RequestPayment, AppError> {
    let pay = &app.pay;
    let now = now_ms();
    let mut conn = app.db.pool.acquire().await?;
    let order = order_store::find_order(&mut conn, order_id).await?.filter(|o| o.user_id == user_id);
    let order = order.ok_or(AppError::not_found("order"))?;
    if order.status != OrderStatus::PendingPayment.as_str() {
        return Err(AppError::conflict(
            "invalid_order_state",
            format!("an order that is {} cannot be paid", order.status),
        ));
    }
    let mut payment = store::find_by_order(&mut conn, order_id).await?;
    if payment.as_ref().is_some_and(|p| p.state != PaymentState::Pending.as_str()) {
        return Err(AppError::conflict("payment_window_closed", "this order's payment is closed"));
    }
    if order.pay_deadline - now < MIN_WINDOW_MS {
        return Err(AppError::conflict("payment_window_closed", "too little time is left to pay this order"));
    }
    if order.total_fen < 1 {
        return Err(AppError::conflict("invalid_order_state", "this order has nothing to pay"));
    }
    if payment.is_none() {
        let openid = store::openid_of(&mut conn, user_id).await?.ok_or(AppError::not_found("user"))?;
        let items = order_store::items_of(&mut conn, order_id).await?;
        let body = json!({
            "appid": pay.app_id,
            "mchid": pay.client.keys().merchant.mch_id,
            "description": description(&items),
            "out_trade_no": order.order_no,
            "time_expire": crate::db::rfc3339_beijing(order.pay_deadline / 1000),
            "notify_url": pay.notify_url,
            "amount": { "total": order.total_fen, "currency": "CNY" },
            "payer": { "openid": openid },
        })
        .to_string();
        let new = store::NewPayment {
            order_id,
            out_trade_no: &order.order_no,
            body: &body,
            amount_fen: order.total_fen,
            next_check_at: now + app.config.pay.poll_after_secs as i64 * 1000,
        };
        store::insert_pending(&mut conn, app.db.dialect, &new, now).await?;
        payment = store::find_by_order(&mut conn, order_id).await?;
    }
    drop(conn);
    let payment = payment.ok_or_else(|| AppError::Internal(anyhow::anyhow!("payment of order {order_id} vanished")))?;
    let prepay_id = match (&payment.prepay_id, payment.prepay_expires_at) {
        (Some(id), Some(expires)) if expires - now > 60_000 => id.clone(),
        _ => {
            let started = std::time::Instant::now();
            let result = pay.client.prepay_jsapi(payment.prepay_body.as_bytes()).await;
            metrics::histogram!("pay_prepay_seconds").record(started.elapsed().as_secs_f64());
            match result {
                Ok(id) => {
                    store::set_prepay(&app.db.pool, order_id, &id, now + PREPAY_TTL_MS, now_ms()).await?;
                    id
                }
                Err(error) => return Err(prepay_failed(app, &payment.out_trade_no, error).await),
            }
        }
    };
    let timestamp = now_ms() / 1000;
    let nonce = crate::payments::sign::nonce();
    let pay_sign = pay.client.keys().merchant.pay_sign(&pay.app_id, timestamp, &nonce, &prepay_id);
    Ok(RequestPayment {
        time_stamp: timestamp.to_string(),
        nonce_str: nonce,
        package: format!("prepay_id={prepay_id}"),
        sign_type: "RSA".into(),
        pay_sign,
    })
}

/// What a failed prepay means for the user.
async fn prepay_failed(app: &App, out_trade_no: &str, error: PayError) -> AppError {
    match error.code() {
        // Paid already (a hint): settle it with a signed query.
        Some("ORDERPAID") => {
            let _ = query_and_apply(app, out_trade_no, "query").await;
            AppError::conflict("invalid_order_state", "this order is paid already")
        }
        Some("ORDER_CLOSED") => AppError::conflict("payment_window_closed", "this order's payment is closed"),
        Some("OUT_TRADE_NO_USED") => {
            AppError::Internal(anyhow::anyhow!("WeChat Pay refused the stored prepay body of {out_trade_no}: {error}"))
        }
        _ => unavailable(&error),
    }
}

/// `GET /api/v1/orders/{id}/payment`: the payment state; while pending, WeChat is asked (at most once per order
/// per `pay.query_min_interval_ms`, across instances), because `requestPayment:ok` does not mean paid.
pub async fn payment_view(app: &App, user_id: i64, order_id: i64) -> Result<PaymentView, AppError> {
    let mut conn = app.db.pool.acquire().await?;
    let order = order_store::find_order(&mut conn, order_id).await?.filter(|o| o.user_id == user_id);
    let order = order.ok_or(AppError::not_found("order"))?;
    let payment = store::find_by_order(&mut conn, order_id).await?;
    drop(conn);
    let Some(payment) = payment else {
        return Ok(PaymentView {
            order_id,
            out_trade_no: order.order_no,
            state: PaymentState::None,
            order_status: parse_status(&order.status)?,
            amount_fen: order.total_fen,
            transaction_id: None,
            paid_at: None,
        });
    };
    let now = now_ms();
    let pending = payment.state == PaymentState::Pending.as_str() && order.status == "pending_payment";
    let due = pending && now - payment.last_queried_at >= app.config.pay.query_min_interval_ms as i64;
    if due && store::take_query_slot(&app.db.pool, order_id, payment.last_queried_at, now).await? {
        let bounded =
            tokio::time::timeout(Duration::from_secs(3), query_and_apply(app, &payment.out_trade_no, "query"));
        match bounded.await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::info!(%error, order_id, "payment query failed; answering the local state"),
            Err(_) => tracing::info!(order_id, "payment query timed out; answering the local state"),
        }
    }
    let mut conn = app.db.pool.acquire().await?;
    let order = order_store::find_order(&mut conn, order_id).await?.ok_or(AppError::not_found("order"))?;
    let payment = store::find_by_order(&mut conn, order_id).await?.ok_or(AppError::not_found("payment"))?;
    Ok(PaymentView {
        order_id,
        out_trade_no: payment.out_trade_no,
        state: PaymentState::parse(&payment.state),
        order_status: parse_status(&order.status)?,
        amount_fen: payment.amount_fen,
        transaction_id: payment.transaction_id,
        paid_at: payment.paid_at.map(rfc3339),
    })
}

fn parse_status(s: &str) -> Result<OrderStatus, AppError> {
    OrderStatus::parse(s).ok_or_else(|| AppError::Internal(anyhow::anyhow!("unknown order status {s}")))
}

/// Asks WeChat about a transaction and applies the signed answer.
pub async fn query_and_apply(app: &App, out_trade_no: &str, source: &str) -> Result<Applied, AppError> {
    match app.pay.client.query(out_trade_no).await {
        Ok(txn) => apply_transaction(app, &txn, source, None).await,
        Err(error) if error.code() == Some("ORDER_NOT_EXIST") => Ok(Applied::NotPaid),
        Err(error) => Err(unavailable(&error)),
    }
}

/// What applying a transaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The order became paid now.
    Paid,
    /// Nothing to do: already applied, or already paid.
    Unchanged,
    /// The transaction is not paid (query answers only).
    NotPaid,
    /// Paid after the order was cancelled: a full refund is on its way.
    RefundAfterCancel,
    /// The transaction disagrees with our records: stored as an anomaly, nothing moved.
    Anomaly,
    /// The same notification again.
    Duplicate,
}

/// The one idempotent function every paid transaction goes through (notification, query, poller,
/// reconciliation). In one database transaction: the event into the inbox (when it came as a notification), the
/// business checks, the payment row, and the conditional `pending_payment → paid`; a payment for a cancelled order
/// starts an automatic full refund instead.
pub async fn apply_transaction(
    app: &App,
    txn: &Transaction,
    source: &str,
    event: Option<(&str, &str)>,
) -> Result<Applied, AppError> {
    // Run again on a deadlock (nothing after the commit has happened then); the inbox keeps it idempotent.
    crate::db::retry_transient(|| apply_once(app, txn, source, event)).await
}

async fn apply_once(
    app: &App,
    txn: &Transaction,
    source: &str,
    event: Option<(&str, &str)>,
) -> Result<Applied, AppError> {
    let now = now_ms();
    let mut tx = app.db.begin_write().await?;
    if let Some((event_id, event_type)) = event {
        if !store::insert_event(&mut tx, app.db.dialect, event_id, event_type, &txn.out_trade_no, now).await? {
            tx.commit().bounded().await?;
            metrics::counter!("pay_notifications_total", "outcome" => "duplicate").increment(1);
            return Ok(Applied::Duplicate);
        }
    }
    if txn.trade_state != "SUCCESS" && txn.trade_state != "REFUND" {
        tx.commit().bounded().await?;
        return Ok(Applied::NotPaid);
    }
    let payment = store::lock_by_out_trade_no(&mut tx, app.db.dialect, &txn.out_trade_no).await?;
    let mismatch = check(app, txn, payment.as_ref().map(|p| p.amount_fen));
    let Some(payment) = payment.filter(|_| mismatch.is_none()) else {
        let (kind, detail) = mismatch.unwrap_or(("unknown_order", "no payment with this out_trade_no".into()));
        store::insert_anomaly(&mut tx, &txn.out_trade_no, kind, source, &detail, now).await?;
        if let Some((event_id, _)) = event {
            store::set_event_outcome(&mut tx, event_id, "anomaly").await?;
        }
        tx.commit().bounded().await?;
        metrics::counter!("pay_anomalies_total", "kind" => kind).increment(1);
        tracing::error!(out_trade_no = txn.out_trade_no, kind, detail, source, "payment anomaly: not applied");
        return Ok(Applied::Anomaly);
    };
    let transaction_id = txn.transaction_id.clone().unwrap_or_default();
    let paid_at = txn
        .success_time
        .as_deref()
        .and_then(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .unwrap_or(now);
    let order = order_store::find_order(&mut tx, payment.order_id).await?.ok_or(AppError::not_found("order"))?;
    let mut refund_after_cancel = None;
    let applied = match (payment.state.as_str(), order.status.as_str()) {
        ("pending", "pending_payment") => {
            store::set_state(&mut tx, payment.order_id, "pending", "paid", Some((&transaction_id, paid_at)), now)
                .await?;
            lifecycle::transition(
                &mut tx,
                order.id,
                OrderStatus::PendingPayment,
                OrderStatus::Paid,
                &Actor::Payment,
                None,
            )
            .await?;
            order_store::set_paid_at(&mut tx, order.id, paid_at).await?;
            Applied::Paid
        }
        (state @ ("pending" | "closed"), "cancelled") => {
            store::set_state(
                &mut tx,
                payment.order_id,
                state,
                "refunded_after_cancel",
                Some((&transaction_id, paid_at)),
                now,
            )
            .await?;
            refund_after_cancel =
                Some(refunds::insert_after_cancel(app, &mut tx, &order, payment.amount_fen, now).await?);
            Applied::RefundAfterCancel
        }
        _ => Applied::Unchanged,
    };
    if let Some((event_id, _)) = event {
        store::set_event_outcome(
            &mut tx,
            event_id,
            if applied == Applied::Unchanged { "unchanged" } else { "applied" },
        )
        .await?;
    }
    tx.commit().bounded().await?;
    match applied {
        Applied::Paid => {
            metrics::counter!("orders_paid_total", "via" => source.to_owned()).increment(1);
            tracing::info!(order_id = order.id, source, "order paid");
        }
        Applied::RefundAfterCancel => {
            metrics::counter!("pay_refund_after_cancel_total").increment(1);
            tracing::warn!(order_id = order.id, source, "payment arrived for a cancelled order: refunding it in full");
        }
        _ => {}
    }
    crate::orders::changed(app, order.id).await;
    if let Some(refund_id) = refund_after_cancel {
        refunds::send(app, refund_id).await;
    }
    Ok(applied)
}

/// The business checks of a paid transaction against our own records: `None` when it agrees.
fn check(app: &App, txn: &Transaction, amount_fen: Option<i64>) -> Option<(&'static str, String)> {
    let amount = txn.amount.as_ref();
    if txn.mchid != app.pay.client.keys().merchant.mch_id {
        return Some(("mchid_mismatch", format!("mchid {}", txn.mchid)));
    }
    if txn.appid != app.pay.app_id {
        return Some(("appid_mismatch", format!("appid {}", txn.appid)));
    }
    let amount_fen = amount_fen?;
    match amount {
        Some(a) if a.total != amount_fen => {
            Some(("amount_mismatch", format!("amount.total {} but the order asks {amount_fen}", a.total)))
        }
        Some(a) if a.currency.as_deref().unwrap_or("CNY") != "CNY" => {
            Some(("currency_mismatch", format!("currency {:?}", a.currency)))
        }
        None => Some(("amount_mismatch", "no amount".into())),
        _ => None,
    }
}

/// Close before cancel: an order with an open prepay may be cancelled only once WeChat says the transaction is
/// closed (204 or `ORDER_CLOSED`) or never existed. `Ok(true)`: go ahead and cancel. `Ok(false)`: not now (the
/// user may be paying, or the answer is unknown: queried first, try again later); the order may have become paid.
pub async fn close_before_cancel(app: &App, order_id: i64) -> Result<bool, AppError> {
    let mut conn = app.db.pool.acquire().await?;
    let payment = store::find_by_order(&mut conn, order_id).await?;
    drop(conn);
    let Some(payment) = payment.filter(|p| p.state == PaymentState::Pending.as_str()) else { return Ok(true) };
    let closed = match app.pay.client.close(&payment.out_trade_no).await {
        Ok(()) => true,
        Err(error) => match error.code() {
            Some("ORDER_CLOSED") | Some("ORDER_NOT_EXIST") => true,
            _ => {
                tracing::info!(%error, order_id, "close did not confirm; querying before anything else");
                metrics::counter!("pay_close_deferred_total").increment(1);
                if let Err(error) = query_and_apply(app, &payment.out_trade_no, "query").await {
                    tracing::info!(%error, order_id, "query after a failed close failed too");
                }
                false
            }
        },
    };
    if closed {
        let mut conn = app.db.pool.acquire().await?;
        store::set_state(&mut conn, order_id, "pending", "closed", None, now_ms()).await?;
    }
    Ok(closed)
}

/// A user's cancel: close at WeChat first, then cancel (409 `payment_in_progress` when WeChat cannot confirm).
pub async fn cancel_for_user(app: &App, user_id: i64, order_id: i64) -> Result<(), AppError> {
    let mut conn = app.db.pool.acquire().await?;
    let order = order_store::find_order(&mut conn, order_id).await?.filter(|o| o.user_id == user_id);
    let order = order.ok_or(AppError::not_found("order"))?;
    drop(conn);
    if order.status == "pending_payment" && !close_before_cancel(app, order_id).await? {
        return Err(AppError::conflict(
            "payment_in_progress",
            "WeChat Pay could not confirm the payment is closed (it may be in progress); check the order again shortly",
        ));
    }
    lifecycle::cancel(app, order_id, Some(user_id), Actor::User(user_id)).await
}
