//! SQL of `cart_item`.

use sqlx::{AnyConnection, AnyPool, Row};

use crate::db::Bounded;
use crate::db::Dialect;

/// A cart line joined with its SKU and product as they are now.
pub struct CartLine {
    pub sku_id: i64,
    pub quantity: i64,
    pub product_id: i64,
    pub title: String,
    pub sku_title: String,
    pub image_urls: String,
    pub price_fen: i64,
    pub stock: i64,
    pub sku_status: String,
    pub product_status: String,
}

pub async fn lines(pool: &AnyPool, user_id: i64) -> Result<Vec<CartLine>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT c.sku_id, c.quantity, s.product_id, p.title, s.title AS sku_title, p.image_urls, s.price_fen, s.stock, \
                s.status AS sku_status, p.status AS product_status \
         FROM cart_item c JOIN sku s ON s.id = c.sku_id JOIN product p ON p.id = s.product_id \
         WHERE c.user_id = ? ORDER BY c.created_at DESC, c.sku_id",
    )
    .bind(user_id)
    .fetch_all(pool)
    .bounded().await?;
    rows.iter()
        .map(|r| {
            Ok(CartLine {
                sku_id: r.try_get("sku_id")?,
                quantity: r.try_get("quantity")?,
                product_id: r.try_get("product_id")?,
                title: r.try_get("title")?,
                sku_title: r.try_get("sku_title")?,
                image_urls: crate::db::get_text(r, "image_urls")?,
                price_fen: r.try_get("price_fen")?,
                stock: r.try_get("stock")?,
                sku_status: r.try_get("sku_status")?,
                product_status: r.try_get("product_status")?,
            })
        })
        .collect()
}

pub async fn count(pool: &AnyPool, user_id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT COUNT(*) AS n FROM cart_item WHERE user_id = ?")
        .bind(user_id)
        .fetch_one(pool)
        .bounded()
        .await?
        .try_get("n")
}

pub async fn contains(pool: &AnyPool, user_id: i64, sku_id: i64) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("SELECT 1 AS present FROM cart_item WHERE user_id = ? AND sku_id = ?")
        .bind(user_id)
        .bind(sku_id)
        .fetch_optional(pool)
        .bounded()
        .await?;
    Ok(row.is_some())
}

pub async fn set(
    pool: &AnyPool,
    dialect: Dialect,
    user_id: i64,
    sku_id: i64,
    quantity: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO cart_item (user_id, sku_id, quantity, created_at, updated_at) VALUES (?, ?, ?, ?, ?){}",
        dialect.upsert("user_id, sku_id", &["quantity", "updated_at"])
    );
    sqlx::query(&sql).bind(user_id).bind(sku_id).bind(quantity).bind(now).bind(now).execute(pool).bounded().await?;
    Ok(())
}

pub async fn remove(conn: &mut AnyConnection, user_id: i64, sku_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM cart_item WHERE user_id = ? AND sku_id = ?")
        .bind(user_id)
        .bind(sku_id)
        .execute(conn)
        .bounded()
        .await?;
    Ok(())
}

pub async fn clear(pool: &AnyPool, user_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM cart_item WHERE user_id = ?").bind(user_id).execute(pool).bounded().await?;
    Ok(())
}

/// The cart's SKUs and quantities (for ordering from the cart).
pub async fn items(conn: &mut AnyConnection, user_id: i64) -> Result<Vec<(i64, i64)>, sqlx::Error> {
    let rows = sqlx::query("SELECT sku_id, quantity FROM cart_item WHERE user_id = ? ORDER BY sku_id")
        .bind(user_id)
        .fetch_all(conn)
        .bounded()
        .await?;
    rows.iter().map(|r| Ok((r.try_get("sku_id")?, r.try_get("quantity")?))).collect()
}
