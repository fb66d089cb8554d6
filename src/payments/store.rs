//! SQL of payments: the payment row per order, the notification inbox, anomalies.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

use crate::db::{Bounded, Dialect};

pub struct PaymentRow {
    pub order_id: i64,
    pub out_trade_no: String,
    pub state: String,
    pub prepay_body: String,
    pub prepay_id: Option<String>,
    pub prepay_expires_at: Option<i64>,
    pub transaction_id: Option<String>,
    pub amount_fen: i64,
    pub paid_at: Option<i64>,
    pub next_check_at: i64,
    pub check_attempts: i64,
    pub last_queried_at: i64,
    pub created_at: i64,
}

const COLUMNS: &str = "order_id, out_trade_no, state, prepay_body, prepay_id, prepay_expires_at, transaction_id, \
                       amount_fen, paid_at, next_check_at, check_attempts, last_queried_at, created_at";

fn payment_row(r: &AnyRow) -> Result<PaymentRow, sqlx::Error> {
    Ok(PaymentRow {
        order_id: r.try_get("order_id")?,
        out_trade_no: r.try_get("out_trade_no")?,
        state: r.try_get("state")?,
        prepay_body: crate::db::get_text(r, "prepay_body")?,
        prepay_id: r.try_get("prepay_id")?,
        prepay_expires_at: r.try_get("prepay_expires_at")?,
        transaction_id: r.try_get("transaction_id")?,
        amount_fen: r.try_get("amount_fen")?,
        paid_at: r.try_get("paid_at")?,
        next_check_at: r.try_get("next_check_at")?,
        check_attempts: r.try_get("check_attempts")?,
        last_queried_at: r.try_get("last_queried_at")?,
        created_at: r.try_get("created_at")?,
    })
}

pub async fn find_by_order(conn: &mut AnyConnection, order_id: i64) -> Result<Option<PaymentRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM payment WHERE order_id = ?");
    let row = sqlx::query(&sql).bind(order_id).fetch_optional(conn).bounded().await?;
    row.as_ref().map(payment_row).transpose()
}

pub async fn find_by_out_trade_no(conn: &mut AnyConnection, no: &str) -> Result<Option<PaymentRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM payment WHERE out_trade_no = ?");
    let row = sqlx::query(&sql).bind(no.to_owned()).fetch_optional(conn).bounded().await?;
    row.as_ref().map(payment_row).transpose()
}

/// The payment, locked until the transaction ends (MySQL; SQLite's write transaction excludes other writers), so
/// what is read is current and stays so.
pub async fn lock_by_out_trade_no(
    conn: &mut AnyConnection,
    dialect: Dialect,
    no: &str,
) -> Result<Option<PaymentRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM payment WHERE out_trade_no = ?{}", dialect.for_update());
    let row = sqlx::query(&sql).bind(no.to_owned()).fetch_optional(conn).bounded().await?;
    row.as_ref().map(payment_row).transpose()
}

/// A payment about to be prepaid.
pub struct NewPayment<'a> {
    pub order_id: i64,
    pub out_trade_no: &'a str,
    /// The prepay request body, sent now and replayed byte for byte later.
    pub body: &'a str,
    pub amount_fen: i64,
    /// When the poller first asks about it.
    pub next_check_at: i64,
}

/// Stores an order's first prepay request (a concurrent second one is ignored: the first body wins).
pub async fn insert_pending(
    conn: &mut AnyConnection,
    dialect: Dialect,
    new: &NewPayment<'_>,
    now: i64,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "{} INTO payment (order_id, out_trade_no, state, prepay_body, amount_fen, next_check_at, created_at, updated_at) \
         VALUES (?, ?, 'pending', ?, ?, ?, ?, ?)",
        dialect.insert_ignore()
    );
    sqlx::query(&sql)
        .bind(new.order_id)
        .bind(new.out_trade_no.to_owned())
        .bind(new.body.to_owned())
        .bind(new.amount_fen)
        .bind(new.next_check_at)
        .bind(now)
        .bind(now)
        .execute(conn)
        .bounded()
        .await?;
    Ok(())
}

pub async fn set_prepay(
    pool: &AnyPool,
    order_id: i64,
    prepay_id: &str,
    expires_at: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE payment SET prepay_id = ?, prepay_expires_at = ?, updated_at = ? WHERE order_id = ?")
        .bind(prepay_id.to_owned())
        .bind(expires_at)
        .bind(now)
        .bind(order_id)
        .execute(pool)
        .bounded()
        .await?;
    Ok(())
}

/// Moves a payment from `from` to `to` (with the transaction when paid); false if it was not in `from`.
pub async fn set_state(
    conn: &mut AnyConnection,
    order_id: i64,
    from: &str,
    to: &str,
    paid: Option<(&str, i64)>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let (transaction_id, paid_at) = paid.map(|(t, at)| (Some(t.to_owned()), Some(at))).unwrap_or((None, None));
    let done = sqlx::query(
        "UPDATE payment SET state = ?, transaction_id = COALESCE(?, transaction_id), paid_at = COALESCE(?, paid_at), \
         updated_at = ? WHERE order_id = ? AND state = ?",
    )
    .bind(to.to_owned())
    .bind(transaction_id)
    .bind(paid_at)
    .bind(now)
    .bind(order_id)
    .bind(from.to_owned())
    .execute(conn)
    .bounded()
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Takes the right to ask WeChat about this payment now: only one caller (on any instance) wins per window.
pub async fn take_query_slot(pool: &AnyPool, order_id: i64, seen: i64, now: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE payment SET last_queried_at = ? WHERE order_id = ? AND last_queried_at = ?")
        .bind(now)
        .bind(order_id)
        .bind(seen)
        .execute(pool)
        .bounded()
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Pending payments the poller should query now (their order still unpaid).
pub async fn due_for_check(pool: &AnyPool, now: i64, limit: i64) -> Result<Vec<PaymentRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {} FROM payment p JOIN shop_order o ON o.id = p.order_id \
         WHERE p.state = 'pending' AND p.next_check_at <= ? AND o.status = 'pending_payment' ORDER BY p.next_check_at LIMIT ?",
        COLUMNS.split(", ").map(|c| format!("p.{c}")).collect::<Vec<_>>().join(", ")
    );
    let rows = sqlx::query(&sql).bind(now).bind(limit).fetch_all(pool).bounded().await?;
    rows.iter().map(payment_row).collect()
}

/// Claims a check: moves `next_check_at` from what the caller saw to `next`; false if another instance did.
pub async fn claim_check(pool: &AnyPool, order_id: i64, seen: i64, next: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE payment SET next_check_at = ?, check_attempts = check_attempts + 1 WHERE order_id = ? AND next_check_at = ?",
    )
    .bind(next)
    .bind(order_id)
    .bind(seen)
    .execute(pool)
    .bounded()
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Expired unpaid orders whose prepay is still open at WeChat: to be closed before they are cancelled.
pub async fn open_past_deadline(
    pool: &AnyPool,
    now: i64,
    skip: &[i64],
    limit: i64,
) -> Result<Vec<(i64, String)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT p.order_id, p.out_trade_no FROM payment p JOIN shop_order o ON o.id = p.order_id \
         WHERE p.state = 'pending' AND o.status = 'pending_payment' AND o.pay_deadline <= ? ORDER BY o.pay_deadline LIMIT ?",
    )
    .bind(now)
    .bind(limit + skip.len() as i64)
    .fetch_all(pool)
    .bounded()
    .await?;
    let mut out = Vec::new();
    for row in rows {
        let id: i64 = row.try_get("order_id")?;
        if !skip.contains(&id) {
            out.push((id, row.try_get("out_trade_no")?));
        }
    }
    out.truncate(limit as usize);
    Ok(out)
}

/// Records a notification in the inbox; false when it was there already (a duplicate).
pub async fn insert_event(
    conn: &mut AnyConnection,
    dialect: Dialect,
    event_id: &str,
    event_type: &str,
    reference: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let sql = format!(
        "{} INTO pay_event (event_id, event_type, reference, outcome, received_at) VALUES (?, ?, ?, 'received', ?)",
        dialect.insert_ignore()
    );
    let done = sqlx::query(&sql)
        .bind(event_id.to_owned())
        .bind(event_type.to_owned())
        .bind(reference.to_owned())
        .bind(now)
        .execute(conn)
        .bounded()
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn set_event_outcome(conn: &mut AnyConnection, event_id: &str, outcome: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE pay_event SET outcome = ? WHERE event_id = ?")
        .bind(outcome.to_owned())
        .bind(event_id.to_owned())
        .execute(conn)
        .bounded()
        .await?;
    Ok(())
}

pub async fn insert_anomaly(
    conn: &mut AnyConnection,
    out_trade_no: &str,
    kind: &str,
    source: &str,
    detail: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO pay_anomaly (out_trade_no, kind, source, detail, created_at) VALUES (?, ?, ?, ?, ?)")
        .bind(out_trade_no.chars().take(64).collect::<String>())
        .bind(kind.to_owned())
        .bind(source.to_owned())
        .bind(detail.chars().take(1000).collect::<String>())
        .bind(now)
        .execute(conn)
        .bounded()
        .await?;
    Ok(())
}

pub struct AnomalyRow {
    pub id: i64,
    pub out_trade_no: String,
    pub kind: String,
    pub source: String,
    pub detail: String,
    pub created_at: i64,
}

pub async fn anomalies(pool: &AnyPool, before_id: Option<i64>, limit: i64) -> Result<Vec<AnomalyRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, out_trade_no, kind, source, detail, created_at FROM pay_anomaly WHERE id < ? ORDER BY id DESC LIMIT ?",
    )
    .bind(before_id.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(pool)
    .bounded()
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AnomalyRow {
                id: r.try_get("id")?,
                out_trade_no: r.try_get("out_trade_no")?,
                kind: r.try_get("kind")?,
                source: r.try_get("source")?,
                detail: r.try_get("detail")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect()
}

/// Payments newest first (by order id), optionally in one state.
pub async fn list(
    pool: &AnyPool,
    state: Option<&str>,
    before_order: Option<i64>,
    limit: i64,
) -> Result<Vec<PaymentRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM payment WHERE order_id < ? AND (? IS NULL OR state = ?) ORDER BY order_id DESC LIMIT ?"
    );
    let rows = sqlx::query(&sql)
        .bind(before_order.unwrap_or(i64::MAX))
        .bind(state.map(str::to_owned))
        .bind(state.map(str::to_owned))
        .bind(limit)
        .fetch_all(pool)
        .bounded()
        .await?;
    rows.iter().map(payment_row).collect()
}

/// Paid payments whose payment time falls in [from, to).
pub async fn paid_between(pool: &AnyPool, from: i64, to: i64) -> Result<Vec<PaymentRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM payment WHERE paid_at >= ? AND paid_at < ? ORDER BY order_id");
    let rows = sqlx::query(&sql).bind(from).bind(to).fetch_all(pool).bounded().await?;
    rows.iter().map(payment_row).collect()
}

pub async fn openid_of(conn: &mut AnyConnection, user_id: i64) -> Result<Option<String>, sqlx::Error> {
    let row =
        sqlx::query("SELECT openid FROM app_user WHERE id = ?").bind(user_id).fetch_optional(conn).bounded().await?;
    row.map(|r| r.try_get("openid")).transpose()
}
