//! Order SQL. Stock moves by conditional UPDATEs (`stock >= ?`), SKUs always in ascending id order so concurrent
//! transactions lock rows in one order and cannot deadlock on them.

mod create;

pub use create::*;

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, AnyPool, QueryBuilder, Row};

use crate::db::Bounded;
use crate::db::{get_text, Dialect};

pub async fn insert_event(
    conn: &mut AnyConnection,
    order_id: i64,
    from: Option<&str>,
    to: &str,
    actor: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO order_event (order_id, from_status, to_status, actor, created_at) VALUES (?, ?, ?, ?, ?)")
        .bind(order_id)
        .bind(from.map(str::to_owned))
        .bind(to.to_owned())
        .bind(actor.to_owned())
        .bind(now)
        .execute(conn)
        .bounded()
        .await?;
    Ok(())
}

pub struct OrderRow {
    pub id: i64,
    pub order_no: String,
    pub user_id: i64,
    pub status: String,
    pub total_fen: i64,
    pub address: String,
    pub remark: String,
    pub pay_deadline: i64,
    pub carrier: Option<String>,
    pub tracking_no: Option<String>,
    pub created_at: i64,
    pub flash_sale_id: Option<i64>,
    pub coupon_id: Option<i64>,
    pub discount_fen: i64,
}

const ORDER_COLUMNS: &str = "id, order_no, user_id, status, total_fen, address, remark, pay_deadline, carrier, \
                             tracking_no, created_at, flash_sale_id, coupon_id, discount_fen";

fn order_row(r: &AnyRow) -> Result<OrderRow, sqlx::Error> {
    Ok(OrderRow {
        id: r.try_get("id")?,
        order_no: r.try_get("order_no")?,
        user_id: r.try_get("user_id")?,
        status: r.try_get("status")?,
        total_fen: r.try_get("total_fen")?,
        address: get_text(r, "address")?,
        remark: r.try_get("remark")?,
        pay_deadline: r.try_get("pay_deadline")?,
        carrier: r.try_get("carrier")?,
        tracking_no: r.try_get("tracking_no")?,
        created_at: r.try_get("created_at")?,
        flash_sale_id: r.try_get("flash_sale_id")?,
        coupon_id: r.try_get("coupon_id")?,
        discount_fen: r.try_get("discount_fen")?,
    })
}

/// `order.created` with the order's lines, to record inside the creating transaction after its rows, from what the
/// creating code already holds: no read-back of the rows it just wrote.
pub fn order_created(id: i64, order: &NewOrder<'_>, items: &[ItemRow]) -> crate::events::Event {
    let items: Vec<serde_json::Value> = items
        .iter()
        .map(|i| serde_json::json!({ "sku_id": i.sku_id, "quantity": i.quantity, "price_fen": i.price_fen }))
        .collect();
    let data = serde_json::json!({
        "order_id": id, "order_no": order.order_no, "user_id": order.user_id, "total_fen": order.total_fen,
        "discount_fen": order.discount_fen, "coupon_id": order.coupon_id, "flash_sale_id": order.flash_sale_id,
        "items": items,
    });
    crate::events::Event::new("order", id, "order.created", data)
}

/// An order's number, owner and total (what its events carry).
pub async fn summary(conn: &mut AnyConnection, id: i64) -> Result<(String, i64, i64), sqlx::Error> {
    let row = sqlx::query("SELECT order_no, user_id, total_fen FROM shop_order WHERE id = ?")
        .bind(id)
        .fetch_one(conn)
        .bounded()
        .await?;
    Ok((row.try_get("order_no")?, row.try_get("user_id")?, row.try_get("total_fen")?))
}

/// The order, locked until the transaction ends (MySQL), so its status is current.
pub async fn lock_order(conn: &mut AnyConnection, dialect: Dialect, id: i64) -> Result<Option<OrderRow>, sqlx::Error> {
    let sql = format!("SELECT {ORDER_COLUMNS} FROM shop_order WHERE id = ?{}", dialect.for_update());
    let row = sqlx::query(&sql).bind(id).fetch_optional(conn).bounded().await?;
    row.as_ref().map(order_row).transpose()
}

pub async fn find_order(conn: &mut AnyConnection, id: i64) -> Result<Option<OrderRow>, sqlx::Error> {
    let sql = format!("SELECT {ORDER_COLUMNS} FROM shop_order WHERE id = ?");
    let row = sqlx::query(&sql).bind(id).fetch_optional(conn).bounded().await?;
    row.as_ref().map(order_row).transpose()
}

pub async fn items_of(conn: &mut AnyConnection, order_id: i64) -> Result<Vec<ItemRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT sku_id, product_id, title, sku_title, price_fen, quantity FROM order_item WHERE order_id = ? ORDER BY sku_id",
    )
    .bind(order_id)
    .fetch_all(conn)
    .bounded().await?;
    rows.iter()
        .map(|r| {
            Ok(ItemRow {
                sku_id: r.try_get("sku_id")?,
                product_id: r.try_get("product_id")?,
                title: r.try_get("title")?,
                sku_title: r.try_get("sku_title")?,
                price_fen: r.try_get("price_fen")?,
                quantity: r.try_get("quantity")?,
            })
        })
        .collect()
}

pub struct EventRow {
    pub from_status: Option<String>,
    pub to_status: String,
    pub actor: String,
    pub created_at: i64,
}

pub async fn events_of(pool: &AnyPool, order_id: i64) -> Result<Vec<EventRow>, sqlx::Error> {
    let rows =
        sqlx::query("SELECT from_status, to_status, actor, created_at FROM order_event WHERE order_id = ? ORDER BY id")
            .bind(order_id)
            .fetch_all(pool)
            .bounded()
            .await?;
    rows.iter()
        .map(|r| {
            Ok(EventRow {
                from_status: r.try_get("from_status")?,
                to_status: r.try_get("to_status")?,
                actor: r.try_get("actor")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect()
}

/// Moves an order from `from` to `to` if it is still in `from`; sets shipping details when given.
pub async fn set_status(
    conn: &mut AnyConnection,
    id: i64,
    from: &str,
    to: &str,
    shipping: Option<(&str, &str)>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let (carrier, tracking) = shipping.map(|(c, t)| (Some(c.to_owned()), Some(t.to_owned()))).unwrap_or((None, None));
    let result = sqlx::query(
        "UPDATE shop_order SET status = ?, carrier = COALESCE(?, carrier), tracking_no = COALESCE(?, tracking_no), \
         updated_at = ? WHERE id = ? AND status = ?",
    )
    .bind(to.to_owned())
    .bind(carrier)
    .bind(tracking)
    .bind(now)
    .bind(id)
    .bind(from.to_owned())
    .execute(conn)
    .bounded()
    .await?;
    Ok(result.rows_affected() == 1)
}

pub async fn set_paid_at(conn: &mut AnyConnection, id: i64, at: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE shop_order SET paid_at = ? WHERE id = ?").bind(at).bind(id).execute(conn).bounded().await?;
    Ok(())
}

pub async fn set_completed_at(conn: &mut AnyConnection, id: i64, at: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE shop_order SET completed_at = ? WHERE id = ?")
        .bind(at)
        .bind(id)
        .execute(conn)
        .bounded()
        .await?;
    Ok(())
}

/// Records the shipping time and queues the shipping information's upload to WeChat.
pub async fn set_shipped(conn: &mut AnyConnection, dialect: Dialect, id: i64, at: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE shop_order SET shipped_at = ? WHERE id = ?")
        .bind(at)
        .bind(id)
        .execute(&mut *conn)
        .bounded()
        .await?;
    let sql = format!(
        "{} INTO shipping_upload (order_id, state, attempts, next_attempt_at, updated_at) VALUES (?, 'pending', 0, ?, ?)",
        dialect.insert_ignore()
    );
    sqlx::query(&sql).bind(id).bind(at).bind(at).execute(conn).bounded().await?;
    Ok(())
}

/// Orders shipped before `cutoff` and still `shipped` (auto-completion).
pub async fn shipped_before(pool: &AnyPool, cutoff: i64, limit: i64) -> Result<Vec<i64>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id FROM shop_order WHERE status = 'shipped' AND shipped_at <= ? ORDER BY shipped_at LIMIT ?",
    )
    .bind(cutoff)
    .bind(limit)
    .fetch_all(pool)
    .bounded()
    .await?;
    rows.iter().map(|r| r.try_get("id")).collect()
}

/// Filters of an order listing; `None` is "any". Keyset: newest first on (created_at, id).
#[derive(Default)]
pub struct OrderFilter<'a> {
    pub user_id: Option<i64>,
    pub status: Option<&'a str>,
    pub order_no: Option<&'a str>,
    pub created_from: Option<i64>,
    pub created_to: Option<i64>,
    /// The (created_at, id) of the last order of the previous page.
    pub after: Option<(i64, i64)>,
    pub limit: u32,
}

/// Who placed the order.
pub async fn owner_of(pool: &AnyPool, order_id: i64) -> Result<Option<i64>, sqlx::Error> {
    let row = sqlx::query("SELECT user_id FROM shop_order WHERE id = ?")
        .bind(order_id)
        .fetch_optional(pool)
        .bounded()
        .await?;
    row.map(|r| r.try_get("user_id")).transpose()
}

/// A listed order: only what a listing shows, all of it in the index `shop_order_user_created` (migration 0012),
/// so a user's page is read from the index alone, without a row lookup per order.
pub struct SummaryRow {
    pub id: i64,
    pub order_no: String,
    pub user_id: i64,
    pub status: String,
    pub total_fen: i64,
    pub created_at: i64,
}

pub async fn list_orders(pool: &AnyPool, f: &OrderFilter<'_>) -> Result<Vec<SummaryRow>, sqlx::Error> {
    let mut sql = QueryBuilder::<Any>::new(
        "SELECT id, order_no, user_id, status, total_fen, created_at FROM shop_order WHERE 1 = 1",
    );
    if let Some(user_id) = f.user_id {
        sql.push(" AND user_id = ").push_bind(user_id);
    }
    if let Some(status) = f.status {
        sql.push(" AND status = ").push_bind(status.to_owned());
    }
    if let Some(order_no) = f.order_no {
        sql.push(" AND order_no = ").push_bind(order_no.to_owned());
    }
    if let Some(from) = f.created_from {
        sql.push(" AND created_at >= ").push_bind(from);
    }
    if let Some(to) = f.created_to {
        sql.push(" AND created_at < ").push_bind(to);
    }
    if let Some((created_at, id)) = f.after {
        sql.push(" AND (created_at < ").push_bind(created_at);
        sql.push(" OR (created_at = ").push_bind(created_at).push(" AND id < ").push_bind(id).push("))");
    }
    sql.push(" ORDER BY created_at DESC, id DESC LIMIT ").push_bind(i64::from(f.limit));
    let rows = sql.build().fetch_all(pool).bounded().await?;
    rows.iter()
        .map(|r| {
            Ok(SummaryRow {
                id: r.try_get("id")?,
                order_no: r.try_get("order_no")?,
                user_id: r.try_get("user_id")?,
                status: r.try_get("status")?,
                total_fen: r.try_get("total_fen")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect()
}

/// Up to `limit` unpaid orders past their deadline, claimed for this transaction (others skip them).
pub async fn claim_expired(
    conn: &mut AnyConnection,
    dialect: Dialect,
    now: i64,
    limit: i64,
    skip: &[i64],
) -> Result<Vec<i64>, sqlx::Error> {
    let skipped = if skip.is_empty() {
        String::new()
    } else {
        format!(" AND id NOT IN ({})", skip.iter().map(i64::to_string).collect::<Vec<_>>().join(", "))
    };
    let sql = format!(
        "SELECT id FROM shop_order WHERE status = 'pending_payment' AND pay_deadline <= ?{skipped} \
         ORDER BY pay_deadline LIMIT ?{}",
        dialect.skip_locked()
    );
    let rows = sqlx::query(&sql).bind(now).bind(limit).fetch_all(conn).bounded().await?;
    rows.iter().map(|r| r.try_get("id")).collect()
}
