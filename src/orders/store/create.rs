//! The writes that make an order: the SKUs it takes and their stock, the order row and its number, its lines,
//! the cart lines it consumed.

use sqlx::{Any, AnyConnection, QueryBuilder, Row};

use crate::db::insert_returning_id;
use crate::db::Bounded;
use crate::events::Event;

/// A SKU as an order line needs it, with its product.
pub struct SkuForOrder {
    pub sku_id: i64,
    pub product_id: i64,
    pub title: String,
    pub sku_title: String,
    pub price_fen: i64,
    pub stock: i64,
    pub purchasable: bool,
}

pub async fn skus_for_order(conn: &mut AnyConnection, sku_ids: &[i64]) -> Result<Vec<SkuForOrder>, sqlx::Error> {
    let mut sql = QueryBuilder::<Any>::new(
        "SELECT s.id, s.product_id, p.title, s.title AS sku_title, s.price_fen, s.stock, s.status AS sku_status, \
         p.status AS product_status FROM sku s JOIN product p ON p.id = s.product_id WHERE s.id IN (",
    );
    let mut ids = sql.separated(", ");
    for id in sku_ids {
        ids.push_bind(*id);
    }
    sql.push(") ORDER BY s.id");
    let rows = sql.build().fetch_all(conn).bounded().await?;
    rows.iter()
        .map(|r| {
            Ok(SkuForOrder {
                sku_id: r.try_get("id")?,
                product_id: r.try_get("product_id")?,
                title: r.try_get("title")?,
                sku_title: r.try_get("sku_title")?,
                price_fen: r.try_get("price_fen")?,
                stock: r.try_get("stock")?,
                purchasable: r.try_get::<String, _>("sku_status")? == "active"
                    && r.try_get::<String, _>("product_status")? == "on_sale",
            })
        })
        .collect()
}

/// Records `sku.stock_changed` for a change of `delta` units (inside the changing transaction).
pub async fn stock_changed(conn: &mut AnyConnection, sku_id: i64, delta: i64, reason: &str) -> Result<(), sqlx::Error> {
    crate::events::record(conn, stock_changed_event(sku_id, delta, reason)).await
}

/// `sku.stock_changed` for a change of `delta` units; `reason`: `order`, `flash_sale`, `admin`, `returned`.
pub fn stock_changed_event(sku_id: i64, delta: i64, reason: &str) -> Event {
    let data = serde_json::json!({ "sku_id": sku_id, "delta": delta, "reason": reason });
    Event::new("sku", sku_id, "sku.stock_changed", data)
}

/// Takes `quantity` units of an active SKU if that many are there. When it did, returns the `sku.stock_changed`
/// event (`reason`: `order`, `flash_sale`), for the caller to record in this transaction after its other changes
/// (an order records all its events in one statement).
#[must_use = "record the returned event in the same transaction"]
pub async fn take_stock(
    conn: &mut AnyConnection,
    sku_id: i64,
    quantity: i64,
    now: i64,
    reason: &str,
) -> Result<Option<Event>, sqlx::Error> {
    let result = sqlx::query(
        "UPDATE sku SET stock = stock - ?, updated_at = ? WHERE id = ? AND stock >= ? AND status = 'active'",
    )
    .bind(quantity)
    .bind(now)
    .bind(sku_id)
    .bind(quantity)
    .execute(&mut *conn)
    .bounded()
    .await?;
    Ok((result.rows_affected() == 1).then(|| stock_changed_event(sku_id, -quantity, reason)))
}

pub async fn return_stock(conn: &mut AnyConnection, sku_id: i64, quantity: i64, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sku SET stock = stock + ?, updated_at = ? WHERE id = ?")
        .bind(quantity)
        .bind(now)
        .bind(sku_id)
        .execute(&mut *conn)
        .bounded()
        .await?;
    stock_changed(conn, sku_id, quantity, "returned").await
}

pub struct NewOrder<'a> {
    /// Drawn by [`order_number`]; [`insert_order`] draws again should it be taken.
    pub order_no: String,
    pub user_id: i64,
    pub status: &'a str,
    pub total_fen: i64,
    pub address: &'a str,
    pub remark: &'a str,
    pub pay_deadline: i64,
    pub flash_sale_id: Option<i64>,
    pub coupon_id: Option<i64>,
    pub discount_fen: i64,
}

/// Inserts the order and returns its id. Should its number be taken (8 random digits per second: at 500 orders/s
/// two share a number about once in 13 minutes), another is drawn: a duplicate key fails the statement, not the
/// transaction, on both databases. `o.order_no` is the number stored.
pub async fn insert_order(conn: &mut AnyConnection, o: &mut NewOrder<'_>, now: i64) -> Result<i64, sqlx::Error> {
    let mut draws = 1;
    loop {
        match insert_order_once(conn, o, now).await {
            Err(sqlx::Error::Database(e))
                if e.is_unique_violation() && e.message().contains("order_no") && draws < 5 =>
            {
                metrics::counter!("order_number_redrawn_total").increment(1);
                o.order_no = order_number(now);
                draws += 1;
            }
            other => return other,
        }
    }
}

async fn insert_order_once(conn: &mut AnyConnection, o: &NewOrder<'_>, now: i64) -> Result<i64, sqlx::Error> {
    let query = sqlx::query(
        "INSERT INTO shop_order (order_no, user_id, status, total_fen, address, remark, pay_deadline, flash_sale_id, \
         coupon_id, discount_fen, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(o.order_no.clone())
    .bind(o.user_id)
    .bind(o.status.to_owned())
    .bind(o.total_fen)
    .bind(o.address.to_owned())
    .bind(o.remark.to_owned())
    .bind(o.pay_deadline)
    .bind(o.flash_sale_id)
    .bind(o.coupon_id)
    .bind(o.discount_fen)
    .bind(now)
    .bind(now);
    insert_returning_id(conn, query).await
}

/// `YYYYMMDDhhmmss` (UTC) and 8 random digits: 22 characters, so that refund numbers built on it (`R` + number + two
/// digits) stay within WeChat Pay's 32.
pub fn order_number(now_ms: i64) -> String {
    use rand::Rng;
    let time = time::OffsetDateTime::from_unix_timestamp(now_ms / 1_000).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}{:08}",
        time.year(),
        u8::from(time.month()),
        time.day(),
        time.hour(),
        time.minute(),
        time.second(),
        rand::rng().random_range(0..100_000_000u32)
    )
}

pub struct ItemRow {
    pub sku_id: i64,
    pub product_id: i64,
    pub title: String,
    pub sku_title: String,
    pub price_fen: i64,
    pub quantity: i64,
}

pub async fn insert_items(conn: &mut AnyConnection, order_id: i64, items: &[ItemRow]) -> Result<(), sqlx::Error> {
    let mut sql = QueryBuilder::<Any>::new(
        "INSERT INTO order_item (order_id, sku_id, product_id, title, sku_title, price_fen, quantity) ",
    );
    sql.push_values(items, |mut row, item| {
        row.push_bind(order_id)
            .push_bind(item.sku_id)
            .push_bind(item.product_id)
            .push_bind(item.title.clone())
            .push_bind(item.sku_title.clone())
            .push_bind(item.price_fen)
            .push_bind(item.quantity);
    });
    sql.build().execute(conn).bounded().await?;
    Ok(())
}

pub async fn remove_from_cart(conn: &mut AnyConnection, user_id: i64, sku_ids: &[i64]) -> Result<(), sqlx::Error> {
    let mut sql = QueryBuilder::<Any>::new("DELETE FROM cart_item WHERE user_id = ");
    sql.push_bind(user_id).push(" AND sku_id IN (");
    let mut ids = sql.separated(", ");
    for id in sku_ids {
        ids.push_bind(*id);
    }
    sql.push(")");
    sql.build().execute(conn).bounded().await?;
    Ok(())
}
