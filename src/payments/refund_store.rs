//! SQL of refunds.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::db::{rfc3339, Bounded};
use crate::payments::model::{Refund, RefundStatus};
use crate::state::App;

pub struct RefundRow {
    pub id: i64,
    pub order_id: i64,
    pub out_refund_no: String,
    pub kind: String,
    pub status: String,
    pub amount_fen: i64,
    pub reason: String,
    pub decision_note: Option<String>,
    pub order_status_before: Option<String>,
    pub refund_id: Option<String>,
    pub request_body: Option<String>,
    pub next_check_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, order_id, out_refund_no, kind, status, amount_fen, reason, decision_note, \
                       order_status_before, refund_id, request_body, next_check_at, created_at, updated_at";

fn row(r: &AnyRow) -> Result<RefundRow, sqlx::Error> {
    Ok(RefundRow {
        id: r.try_get("id")?,
        order_id: r.try_get("order_id")?,
        out_refund_no: r.try_get("out_refund_no")?,
        kind: r.try_get("kind")?,
        status: r.try_get("status")?,
        amount_fen: r.try_get("amount_fen")?,
        reason: r.try_get("reason")?,
        decision_note: r.try_get("decision_note")?,
        order_status_before: r.try_get("order_status_before")?,
        refund_id: r.try_get("refund_id")?,
        request_body: r.try_get("request_body")?,
        next_check_at: r.try_get("next_check_at")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

impl RefundRow {
    pub fn view(self) -> Refund {
        Refund {
            id: self.id,
            order_id: self.order_id,
            out_refund_no: self.out_refund_no,
            kind: self.kind,
            status: RefundStatus::parse(&self.status).unwrap_or(RefundStatus::Processing),
            amount_fen: self.amount_fen,
            reason: self.reason,
            decision_note: self.decision_note,
            created_at: rfc3339(self.created_at),
            updated_at: rfc3339(self.updated_at),
        }
    }
}

pub async fn find(conn: &mut AnyConnection, id: i64) -> Result<Option<RefundRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM refund WHERE id = ?");
    sqlx::query(&sql).bind(id).fetch_optional(conn).bounded().await?.as_ref().map(row).transpose()
}

pub async fn find_by_no(conn: &mut AnyConnection, no: &str) -> Result<Option<RefundRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM refund WHERE out_refund_no = ?");
    sqlx::query(&sql).bind(no.to_owned()).fetch_optional(conn).bounded().await?.as_ref().map(row).transpose()
}

pub async fn of_order(conn: &mut AnyConnection, order_id: i64) -> Result<Vec<RefundRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM refund WHERE order_id = ? ORDER BY id");
    sqlx::query(&sql).bind(order_id).fetch_all(conn).bounded().await?.iter().map(row).collect()
}

/// Refunds newest first, optionally in one status (the admin list).
pub async fn list(
    app: &App,
    status: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<RefundRow>, sqlx::Error> {
    let sql =
        format!("SELECT {COLUMNS} FROM refund WHERE id < ? AND (? IS NULL OR status = ?) ORDER BY id DESC LIMIT ?");
    let rows = sqlx::query(&sql)
        .bind(before.unwrap_or(i64::MAX))
        .bind(status.map(str::to_owned))
        .bind(status.map(str::to_owned))
        .bind(limit)
        .fetch_all(&app.db.pool)
        .bounded()
        .await?;
    rows.iter().map(row).collect()
}

/// Refunds to send or to ask about now (processing or abnormal), claimed by moving their next check.
pub async fn due(app: &App, now: i64, limit: i64) -> Result<Vec<RefundRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM refund WHERE status IN ('processing', 'abnormal') AND next_check_at <= ? ORDER BY next_check_at LIMIT ?"
    );
    let rows = sqlx::query(&sql).bind(now).bind(limit).fetch_all(&app.db.pool).bounded().await?;
    rows.iter().map(row).collect()
}

pub async fn claim(app: &App, id: i64, seen: i64, next: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE refund SET next_check_at = ? WHERE id = ? AND next_check_at = ?")
        .bind(next)
        .bind(id)
        .bind(seen)
        .execute(&app.db.pool)
        .bounded()
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn set_status(
    conn: &mut AnyConnection,
    id: i64,
    from: &[&str],
    to: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let placeholders = from.iter().map(|_| "?").collect::<Vec<_>>().join(", ");
    let sql = format!("UPDATE refund SET status = ?, updated_at = ? WHERE id = ? AND status IN ({placeholders})");
    let mut query = sqlx::query(&sql).bind(to.to_owned()).bind(now).bind(id);
    for status in from {
        query = query.bind((*status).to_owned());
    }
    Ok(query.execute(conn).bounded().await?.rows_affected() == 1)
}

pub struct NewRefund<'a> {
    pub order_id: i64,
    pub out_refund_no: &'a str,
    pub kind: &'a str,
    pub status: &'a str,
    pub amount_fen: i64,
    pub reason: &'a str,
    pub body: Option<String>,
}

pub async fn insert(conn: &mut AnyConnection, new: NewRefund<'_>, now: i64) -> Result<i64, sqlx::Error> {
    let id = crate::db::insert_returning_id(
        conn,
        sqlx::query(
            "INSERT INTO refund (order_id, out_refund_no, kind, status, amount_fen, reason, request_body, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(new.order_id)
        .bind(new.out_refund_no.to_owned())
        .bind(new.kind.to_owned())
        .bind(new.status.to_owned())
        .bind(new.amount_fen)
        .bind(new.reason.to_owned())
        .bind(new.body)
        .bind(now)
        .bind(now),
    )
    .await?;
    Ok(id)
}
