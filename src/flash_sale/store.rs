//! SQL for flash sales and their purchases.

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, AnyPool, QueryBuilder, Row};

use crate::db::Bounded;
use crate::db::{insert_returning_id, newest_first, Dialect};

#[derive(Debug, Clone)]
pub struct SaleRow {
    pub id: i64,
    pub sku_id: i64,
    pub price_fen: i64,
    pub stock: i64,
    pub per_user_limit: i64,
    pub starts_at: i64,
    pub ends_at: i64,
    pub ended_early_at: Option<i64>,
    pub stock_returned_at: Option<i64>,
    pub created_at: i64,
}

impl SaleRow {
    /// When purchases stop: the planned end, or when it was ended early.
    pub fn closes_at(&self) -> i64 {
        self.ended_early_at.map_or(self.ends_at, |t| t.min(self.ends_at))
    }
}

const SALE_COLUMNS: &str = "id, sku_id, price_fen, stock, per_user_limit, starts_at, ends_at, ended_early_at, \
                            stock_returned_at, created_at";

fn sale_row(r: &AnyRow) -> Result<SaleRow, sqlx::Error> {
    Ok(SaleRow {
        id: r.try_get("id")?,
        sku_id: r.try_get("sku_id")?,
        price_fen: r.try_get("price_fen")?,
        stock: r.try_get("stock")?,
        per_user_limit: r.try_get("per_user_limit")?,
        starts_at: r.try_get("starts_at")?,
        ends_at: r.try_get("ends_at")?,
        ended_early_at: r.try_get("ended_early_at")?,
        stock_returned_at: r.try_get("stock_returned_at")?,
        created_at: r.try_get("created_at")?,
    })
}

pub struct SaleFields {
    pub sku_id: i64,
    pub price_fen: i64,
    pub stock: i64,
    pub per_user_limit: i64,
    pub starts_at: i64,
    pub ends_at: i64,
}

pub async fn insert_sale(conn: &mut AnyConnection, s: &SaleFields, now: i64) -> Result<i64, sqlx::Error> {
    let query = sqlx::query(
        "INSERT INTO flash_sale (sku_id, price_fen, stock, per_user_limit, starts_at, ends_at, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(s.sku_id)
    .bind(s.price_fen)
    .bind(s.stock)
    .bind(s.per_user_limit)
    .bind(s.starts_at)
    .bind(s.ends_at)
    .bind(now)
    .bind(now);
    insert_returning_id(conn, query).await
}

/// Rewrites a sale that has not started (conditional on that, so a sale cannot change under its buyers).
pub async fn update_unstarted(
    conn: &mut AnyConnection,
    id: i64,
    s: &SaleFields,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE flash_sale SET price_fen = ?, stock = ?, per_user_limit = ?, starts_at = ?, ends_at = ?, updated_at = ? \
         WHERE id = ? AND starts_at > ? AND ended_early_at IS NULL",
    )
    .bind(s.price_fen)
    .bind(s.stock)
    .bind(s.per_user_limit)
    .bind(s.starts_at)
    .bind(s.ends_at)
    .bind(now)
    .bind(id)
    .bind(now)
    .execute(conn)
    .bounded().await?;
    Ok(done.rows_affected() == 1)
}

pub async fn end_early(conn: &mut AnyConnection, id: i64, now: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE flash_sale SET ended_early_at = ?, updated_at = ? WHERE id = ? AND ended_early_at IS NULL AND ends_at > ?",
    )
    .bind(now)
    .bind(now)
    .bind(id)
    .bind(now)
    .execute(conn)
    .bounded().await?;
    Ok(done.rows_affected() == 1)
}

pub async fn find_sale(conn: &mut AnyConnection, id: i64) -> Result<Option<SaleRow>, sqlx::Error> {
    let sql = format!("SELECT {SALE_COLUMNS} FROM flash_sale WHERE id = ?");
    let row = sqlx::query(&sql).bind(id).fetch_optional(conn).bounded().await?;
    row.as_ref().map(sale_row).transpose()
}

/// Sales newest first after the cursor id; `open_at`: only those not closed by then.
pub async fn list_sales(
    pool: &AnyPool,
    open_at: Option<i64>,
    before_id: Option<i64>,
    limit: u32,
) -> Result<Vec<SaleRow>, sqlx::Error> {
    let select = format!("SELECT {SALE_COLUMNS} FROM flash_sale");
    let open = open_at.map(|now| ("ends_at > ? AND ended_early_at IS NULL", now));
    let rows = newest_first(pool, &select, open, before_id, limit).await?;
    rows.iter().map(sale_row).collect()
}

/// Sales closed longer ago than this have no hand-off or reconciliation work left.
const WORK_AFTER_CLOSE_MS: i64 = 24 * 3600 * 1_000;

/// Sales that may still have work at `now`: closed less than a day ago, or whose leftover stock has not gone back
/// yet.
pub async fn working_sales(pool: &AnyPool, now: i64) -> Result<Vec<SaleRow>, sqlx::Error> {
    let since = now - WORK_AFTER_CLOSE_MS;
    let sql =
        format!("SELECT {SALE_COLUMNS} FROM flash_sale WHERE ends_at > ? OR stock_returned_at IS NULL ORDER BY id");
    let rows = sqlx::query(&sql).bind(since).fetch_all(pool).bounded().await?;
    rows.iter().map(sale_row).collect()
}

#[derive(Debug, Clone)]
pub struct PurchaseRow {
    pub id: String,
    pub sale_id: i64,
    pub user_id: i64,
    pub quantity: i64,
    pub address_id: i64,
    pub idem_key: String,
    /// `queued`, `created`, `failed` or `released`.
    pub status: String,
    pub order_id: Option<i64>,
    pub reason: Option<String>,
    pub decided_at: i64,
}

impl PurchaseRow {
    /// Whether this purchase holds units of the sale.
    pub fn holds(&self) -> bool {
        self.status == "queued" || self.status == "created"
    }
}

const PURCHASE_COLUMNS: &str =
    "id, flash_sale_id, user_id, quantity, address_id, idem_key, status, order_id, reason, decided_at";

fn purchase_row(r: &AnyRow) -> Result<PurchaseRow, sqlx::Error> {
    Ok(PurchaseRow {
        id: r.try_get("id")?,
        sale_id: r.try_get("flash_sale_id")?,
        user_id: r.try_get("user_id")?,
        quantity: r.try_get("quantity")?,
        address_id: r.try_get("address_id")?,
        idem_key: r.try_get("idem_key")?,
        status: r.try_get("status")?,
        order_id: r.try_get("order_id")?,
        reason: r.try_get("reason")?,
        decided_at: r.try_get("decided_at")?,
    })
}

/// Records a won purchase as `queued`; with `ignore`, a purchase recorded already is left as it is.
pub async fn insert_purchase(
    conn: &mut AnyConnection,
    dialect: Dialect,
    p: &PurchaseRow,
    ignore: bool,
) -> Result<(), sqlx::Error> {
    let verb = if ignore { dialect.insert_ignore() } else { "INSERT" };
    let sql = format!(
        "{verb} INTO flash_purchase (id, flash_sale_id, user_id, quantity, address_id, idem_key, status, decided_at, \
         updated_at) VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?)"
    );
    sqlx::query(&sql)
        .bind(p.id.clone())
        .bind(p.sale_id)
        .bind(p.user_id)
        .bind(p.quantity)
        .bind(p.address_id)
        .bind(p.idem_key.clone())
        .bind(p.decided_at)
        .bind(p.decided_at)
        .execute(conn)
        .bounded()
        .await?;
    Ok(())
}

/// The purchase; `lock`: FOR UPDATE (MySQL), so two instances cannot materialize it at once.
pub async fn find_purchase(
    conn: &mut AnyConnection,
    id: &str,
    lock: Option<Dialect>,
) -> Result<Option<PurchaseRow>, sqlx::Error> {
    let lock = lock.map_or("", |d| d.for_update());
    let sql = format!("SELECT {PURCHASE_COLUMNS} FROM flash_purchase WHERE id = ?{lock}");
    let row = sqlx::query(&sql).bind(id.to_owned()).fetch_optional(conn).bounded().await?;
    row.as_ref().map(purchase_row).transpose()
}

pub async fn purchases_of(pool: &AnyPool, sale_id: i64) -> Result<Vec<PurchaseRow>, sqlx::Error> {
    let sql = format!("SELECT {PURCHASE_COLUMNS} FROM flash_purchase WHERE flash_sale_id = ? ORDER BY decided_at");
    let rows = sqlx::query(&sql).bind(sale_id).fetch_all(pool).bounded().await?;
    rows.iter().map(purchase_row).collect()
}

/// The oldest `queued` purchases (the embedded hand-off queue).
/// Queued purchases whose next attempt is due at `now`, oldest first.
pub async fn queued(pool: &AnyPool, now: i64, limit: i64) -> Result<Vec<PurchaseRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {PURCHASE_COLUMNS} FROM flash_purchase WHERE status = 'queued' AND retry_at <= ? \
         ORDER BY decided_at LIMIT ?"
    );
    let rows = sqlx::query(&sql).bind(now).bind(limit).fetch_all(pool).bounded().await?;
    rows.iter().map(purchase_row).collect()
}

/// Counts a failed attempt at a queued purchase and sets when the next one is due. Returns the attempts so far,
/// or `None` when the purchase is no longer queued (done meanwhile).
pub async fn count_attempt(
    conn: &mut AnyConnection,
    id: &str,
    retry_at: impl Fn(i64) -> i64,
) -> Result<Option<i64>, sqlx::Error> {
    // The UPDATE first: it takes the row lock (MySQL) before the count is read.
    let counted = sqlx::query("UPDATE flash_purchase SET attempts = attempts + 1 WHERE id = ? AND status = 'queued'")
        .bind(id.to_owned())
        .execute(&mut *conn)
        .bounded()
        .await?;
    if counted.rows_affected() != 1 {
        return Ok(None);
    }
    let attempts: i64 = sqlx::query("SELECT attempts FROM flash_purchase WHERE id = ?")
        .bind(id.to_owned())
        .fetch_one(&mut *conn)
        .bounded()
        .await?
        .try_get("attempts")?;
    sqlx::query("UPDATE flash_purchase SET retry_at = ? WHERE id = ?")
        .bind(retry_at(attempts))
        .bind(id.to_owned())
        .execute(&mut *conn)
        .bounded()
        .await?;
    Ok(Some(attempts))
}

/// When the purchase's next attempt is due (0 when it never failed or has no row yet).
pub async fn retry_at(pool: &AnyPool, id: &str) -> Result<i64, sqlx::Error> {
    let row = sqlx::query("SELECT retry_at FROM flash_purchase WHERE id = ?")
        .bind(id.to_owned())
        .fetch_optional(pool)
        .bounded()
        .await?;
    row.map(|r| r.try_get::<i64, _>("retry_at")).transpose().map(Option::unwrap_or_default)
}

pub async fn mark_created(conn: &mut AnyConnection, id: &str, order_id: i64, now: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE flash_purchase SET status = 'created', order_id = ?, updated_at = ? WHERE id = ? AND status = 'queued'",
    )
    .bind(order_id)
    .bind(now)
    .bind(id.to_owned())
    .execute(&mut *conn)
    .bounded()
    .await?;
    let decided = done.rows_affected() == 1;
    if decided {
        purchase_decided(conn, id, "created", Some(order_id), None).await?;
    }
    Ok(decided)
}

/// Records `flash_purchase.decided` (inside the deciding transaction).
async fn purchase_decided(
    conn: &mut AnyConnection,
    id: &str,
    status: &str,
    order_id: Option<i64>,
    reason: Option<&str>,
) -> Result<(), sqlx::Error> {
    let data = serde_json::json!({ "purchase_id": id, "status": status, "order_id": order_id, "reason": reason });
    crate::events::record(conn, crate::events::Event::new("flash_purchase", id, "flash_purchase.decided", data)).await
}

pub async fn mark_failed(conn: &mut AnyConnection, id: &str, reason: &str, now: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE flash_purchase SET status = 'failed', reason = ?, updated_at = ? WHERE id = ? AND status = 'queued'",
    )
    .bind(reason.to_owned())
    .bind(now)
    .bind(id.to_owned())
    .execute(&mut *conn)
    .bounded()
    .await?;
    let decided = done.rows_affected() == 1;
    if decided {
        purchase_decided(conn, id, "failed", None, Some(reason)).await?;
    }
    Ok(decided)
}

/// The cancelled order's purchase gives its units back (`created → released`); the purchase, if there was one.
pub async fn release_for_order(
    conn: &mut AnyConnection,
    order_id: i64,
    now: i64,
) -> Result<Option<PurchaseRow>, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE flash_purchase SET status = 'released', updated_at = ? WHERE order_id = ? AND status = 'created'",
    )
    .bind(now)
    .bind(order_id)
    .execute(&mut *conn)
    .bounded()
    .await?;
    if done.rows_affected() == 0 {
        return Ok(None);
    }
    let sql = format!("SELECT {PURCHASE_COLUMNS} FROM flash_purchase WHERE order_id = ?");
    let row = sqlx::query(&sql).bind(order_id).fetch_optional(conn).bounded().await?;
    row.as_ref().map(purchase_row).transpose()
}

/// Touches the sale row (locking it until commit) unless its leftover stock went back to the SKU already: then
/// returned units belong to the SKU, not the sale.
pub async fn lock_unreturned(conn: &mut AnyConnection, id: i64, now: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE flash_sale SET updated_at = ? WHERE id = ? AND stock_returned_at IS NULL")
        .bind(now)
        .bind(id)
        .execute(conn)
        .bounded()
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Marks the leftover as returned (once): true for the one caller that did it.
pub async fn mark_stock_returned(conn: &mut AnyConnection, id: i64, now: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE flash_sale SET stock_returned_at = ?, updated_at = ? WHERE id = ? AND stock_returned_at IS NULL",
    )
    .bind(now)
    .bind(now)
    .bind(id)
    .execute(conn)
    .bounded()
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Units held by purchases (queued or with a live order) of one sale.
pub async fn held_units(conn: &mut AnyConnection, sale_id: i64) -> Result<i64, sqlx::Error> {
    Ok(held_units_by_sale(conn, &[sale_id]).await?.get(&sale_id).copied().unwrap_or(0))
}

/// Units held by purchases (queued or with a live order), per sale, in one query. Summed here: MySQL's SUM is a
/// DECIMAL the Any driver cannot read.
pub async fn held_units_by_sale(
    conn: &mut AnyConnection,
    sale_ids: &[i64],
) -> Result<std::collections::HashMap<i64, i64>, sqlx::Error> {
    let mut held = std::collections::HashMap::new();
    if sale_ids.is_empty() {
        return Ok(held);
    }
    let mut sql =
        QueryBuilder::<Any>::new("SELECT flash_sale_id, quantity FROM flash_purchase WHERE flash_sale_id IN (");
    let mut ids = sql.separated(", ");
    for id in sale_ids {
        ids.push_bind(*id);
    }
    sql.push(") AND status IN ('queued', 'created')");
    for row in sql.build().fetch_all(conn).bounded().await? {
        *held.entry(row.try_get::<i64, _>("flash_sale_id")?).or_insert(0) += row.try_get::<i64, _>("quantity")?;
    }
    Ok(held)
}
