//! Catalog SQL. Portable across SQLite and MySQL: `?` placeholders, BIGINT ids, fen and epoch-ms.

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, AnyPool, Executor, QueryBuilder, Row};

use crate::db::Bounded;
use crate::db::{get_text, insert_returning_id, Dialect};

/// Products of the listing walk newest first: `id` descending.
pub struct ProductQuery<'a> {
    /// Only products in this status (`on_sale` for the storefront); `None` for every product (back office).
    pub status: Option<&'a str>,
    pub category_id: Option<i64>,
    /// Already escaped for `LIKE … ESCAPE '!'`.
    pub title_like: Option<&'a str>,
    /// Only ids below this one (the cursor).
    pub before_id: Option<i64>,
    pub limit: u32,
}

pub struct CategoryRow {
    pub id: i64,
    pub parent_id: Option<i64>,
    pub name: String,
    pub icon_url: String,
    pub sort_order: i64,
}

pub struct ProductRow {
    pub id: i64,
    pub category_id: i64,
    pub title: String,
    pub subtitle: String,
    pub description: String,
    pub image_urls: String,
    pub min_price_fen: Option<i64>,
    pub in_stock: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub status: String,
}

pub struct SkuRow {
    pub id: i64,
    pub product_id: i64,
    pub title: String,
    pub price_fen: i64,
    pub stock: i64,
    pub attributes: String,
    pub status: String,
}

fn sku_row(r: &AnyRow) -> Result<SkuRow, sqlx::Error> {
    Ok(SkuRow {
        id: r.try_get("id")?,
        product_id: r.try_get("product_id")?,
        title: r.try_get("title")?,
        price_fen: r.try_get("price_fen")?,
        stock: r.try_get("stock")?,
        attributes: get_text(r, "attributes")?,
        status: r.try_get("status")?,
    })
}

pub async fn list_categories(pool: &AnyPool) -> Result<Vec<CategoryRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, parent_id, name, icon_url, sort_order FROM category \
         WHERE status = 'active' ORDER BY sort_order, id",
    )
    .fetch_all(pool)
    .bounded()
    .await?;
    rows.iter()
        .map(|r| {
            Ok(CategoryRow {
                id: r.try_get("id")?,
                parent_id: r.try_get("parent_id")?,
                name: r.try_get("name")?,
                icon_url: r.try_get("icon_url")?,
                sort_order: r.try_get("sort_order")?,
            })
        })
        .collect()
}

/// The columns of a product with its lowest active SKU price and whether any active SKU has stock.
const PRODUCT_COLUMNS: &str = "p.id, p.category_id, p.title, p.subtitle, p.description, p.image_urls, \
     p.created_at, p.updated_at, \
     (SELECT MIN(s.price_fen) FROM sku s WHERE s.product_id = p.id AND s.status = 'active') AS min_price_fen, \
     (SELECT COUNT(*) FROM sku s WHERE s.product_id = p.id AND s.status = 'active' AND s.stock > 0) AS stocked_skus";

fn product_row(r: &AnyRow) -> Result<ProductRow, sqlx::Error> {
    Ok(ProductRow {
        id: r.try_get("id")?,
        category_id: r.try_get("category_id")?,
        title: r.try_get("title")?,
        subtitle: r.try_get("subtitle")?,
        description: get_text(r, "description")?,
        image_urls: get_text(r, "image_urls")?,
        min_price_fen: r.try_get("min_price_fen")?,
        in_stock: r.try_get::<i64, _>("stocked_skus")? > 0,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        status: r.try_get("status")?,
    })
}

/// On-sale products matching the query, newest first.
pub async fn list_products(pool: &AnyPool, query: &ProductQuery<'_>) -> Result<Vec<ProductRow>, sqlx::Error> {
    let mut sql = QueryBuilder::<Any>::new(format!("SELECT {PRODUCT_COLUMNS}, p.status FROM product p WHERE 1 = 1"));
    if let Some(status) = query.status {
        sql.push(" AND p.status = ").push_bind(status.to_owned());
    }
    if let Some(category_id) = query.category_id {
        sql.push(" AND p.category_id = ").push_bind(category_id);
    }
    if let Some(pattern) = query.title_like {
        sql.push(" AND p.title LIKE ").push_bind(pattern.to_owned()).push(" ESCAPE '!'");
    }
    if let Some(before_id) = query.before_id {
        sql.push(" AND p.id < ").push_bind(before_id);
    }
    sql.push(" ORDER BY p.id DESC LIMIT ").push_bind(i64::from(query.limit));
    let rows = sql.build().fetch_all(pool).bounded().await?;
    rows.iter().map(product_row).collect()
}

/// An on-sale product.
pub async fn find_product(pool: &AnyPool, id: i64) -> Result<Option<ProductRow>, sqlx::Error> {
    let sql = format!("SELECT {PRODUCT_COLUMNS}, p.status FROM product p WHERE p.id = ? AND p.status = 'on_sale'");
    let row = sqlx::query(&sql).bind(id).fetch_optional(pool).bounded().await?;
    row.as_ref().map(product_row).transpose()
}

/// A product whatever its status (back office).
pub async fn find_product_any_status(pool: &AnyPool, id: i64) -> Result<Option<ProductRow>, sqlx::Error> {
    let sql = format!("SELECT {PRODUCT_COLUMNS}, p.status FROM product p WHERE p.id = ?");
    let row = sqlx::query(&sql).bind(id).fetch_optional(pool).bounded().await?;
    row.as_ref().map(product_row).transpose()
}

const SKU_COLUMNS: &str = "id, product_id, title, price_fen, stock, attributes, status";

/// The SKUs of a product in creation order: only active ones, or all of them (back office).
pub async fn list_skus(pool: &AnyPool, product_id: i64, active_only: bool) -> Result<Vec<SkuRow>, sqlx::Error> {
    let filter = if active_only { " AND status = 'active'" } else { "" };
    let sql = format!("SELECT {SKU_COLUMNS} FROM sku WHERE product_id = ?{filter} ORDER BY id");
    let rows = sqlx::query(&sql).bind(product_id).fetch_all(pool).bounded().await?;
    rows.iter().map(sku_row).collect()
}

/// One SKU; with `lock`, locked until the transaction ends (MySQL; a SQLite write transaction already is).
pub async fn find_sku(
    conn: &mut AnyConnection,
    id: i64,
    dialect: Dialect,
    lock: bool,
) -> Result<Option<SkuRow>, sqlx::Error> {
    let suffix = if lock { dialect.for_update() } else { "" };
    let sql = format!("SELECT {SKU_COLUMNS} FROM sku WHERE id = ?{suffix}");
    let row = sqlx::query(&sql).bind(id).fetch_optional(conn).bounded().await?;
    row.as_ref().map(sku_row).transpose()
}

/// Every category, whatever its status (back office), with its status.
pub async fn list_all_categories(pool: &AnyPool) -> Result<Vec<(CategoryRow, String)>, sqlx::Error> {
    let rows =
        sqlx::query("SELECT id, parent_id, name, icon_url, sort_order, status FROM category ORDER BY sort_order, id")
            .fetch_all(pool)
            .bounded()
            .await?;
    rows.iter()
        .map(|r| {
            let category = CategoryRow {
                id: r.try_get("id")?,
                parent_id: r.try_get("parent_id")?,
                name: r.try_get("name")?,
                icon_url: r.try_get("icon_url")?,
                sort_order: r.try_get("sort_order")?,
            };
            Ok((category, r.try_get("status")?))
        })
        .collect()
}

pub async fn category_exists(pool: &AnyPool, id: i64) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query("SELECT id FROM category WHERE id = ?").bind(id).fetch_optional(pool).bounded().await?.is_some())
}

/// A value of one column change in [`update_row`].
pub enum SetValue {
    Int(i64),
    Text(String),
}

/// `UPDATE <table> SET <column> = ?, ..., updated_at = ? WHERE id = ?`. Returns whether the row exists. The table
/// and column names come from code, never from input.
pub async fn update_row(
    pool: &AnyPool,
    table: &'static str,
    id: i64,
    changes: Vec<(&'static str, SetValue)>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let mut sql = QueryBuilder::<Any>::new(format!("UPDATE {table} SET "));
    for (column, value) in changes {
        sql.push(column).push(" = ");
        match value {
            SetValue::Int(v) => sql.push_bind(v),
            SetValue::Text(v) => sql.push_bind(v),
        };
        sql.push(", ");
    }
    sql.push("updated_at = ").push_bind(now).push(" WHERE id = ").push_bind(id);
    Ok(sql.build().execute(pool).bounded().await?.rows_affected() == 1)
}

/// Adds `delta` to a SKU's stock unless that takes it below zero. Returns the new stock, or `None` when the stock
/// is short or the SKU does not exist.
pub async fn add_stock(
    conn: &mut AnyConnection,
    sku_id: i64,
    delta: i64,
    now: i64,
) -> Result<Option<i64>, sqlx::Error> {
    let updated = sqlx::query("UPDATE sku SET stock = stock + ?, updated_at = ? WHERE id = ? AND stock + ? >= 0")
        .bind(delta)
        .bind(now)
        .bind(sku_id)
        .bind(delta)
        .execute(&mut *conn)
        .bounded()
        .await?
        .rows_affected();
    if updated == 0 {
        return Ok(None);
    }
    crate::orders::store::stock_changed(conn, sku_id, delta, "admin").await?;
    let row = sqlx::query("SELECT stock FROM sku WHERE id = ?").bind(sku_id).fetch_one(&mut *conn).bounded().await?;
    Ok(Some(row.try_get("stock")?))
}

pub struct StockAdjustmentRow {
    pub id: i64,
    pub admin_user_id: i64,
    pub delta: i64,
    pub stock_after: i64,
    pub reason: String,
    pub created_at: i64,
}

pub struct NewStockAdjustment<'a> {
    pub sku_id: i64,
    pub admin_user_id: i64,
    pub delta: i64,
    pub stock_after: i64,
    pub reason: &'a str,
}

pub async fn insert_stock_adjustment(
    conn: &mut AnyConnection,
    new: &NewStockAdjustment<'_>,
    now: i64,
) -> Result<i64, sqlx::Error> {
    let query = sqlx::query(
        "INSERT INTO stock_adjustment (sku_id, admin_user_id, delta, stock_after, reason, created_at) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(new.sku_id)
    .bind(new.admin_user_id)
    .bind(new.delta)
    .bind(new.stock_after)
    .bind(new.reason.to_owned())
    .bind(now);
    insert_returning_id(conn, query).await
}

/// A SKU's stock adjustments, newest first.
pub async fn list_stock_adjustments(
    pool: &AnyPool,
    sku_id: i64,
    limit: u32,
) -> Result<Vec<StockAdjustmentRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, admin_user_id, delta, stock_after, reason, created_at FROM stock_adjustment \
         WHERE sku_id = ? ORDER BY id DESC LIMIT ?",
    )
    .bind(sku_id)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .bounded()
    .await?;
    rows.iter()
        .map(|r| {
            Ok(StockAdjustmentRow {
                id: r.try_get("id")?,
                admin_user_id: r.try_get("admin_user_id")?,
                delta: r.try_get("delta")?,
                stock_after: r.try_get("stock_after")?,
                reason: r.try_get("reason")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect()
}

pub struct NewCategory<'a> {
    pub parent_id: Option<i64>,
    pub name: &'a str,
    pub icon_url: &'a str,
    pub sort_order: i64,
}

pub struct NewProduct<'a> {
    pub category_id: i64,
    pub title: &'a str,
    pub subtitle: &'a str,
    pub description: &'a str,
    /// JSON array.
    pub image_urls: &'a str,
}

pub struct NewSku<'a> {
    pub product_id: i64,
    pub title: &'a str,
    pub price_fen: i64,
    pub stock: i64,
    /// JSON object.
    pub attributes: &'a str,
}

pub async fn insert_category(conn: &mut AnyConnection, new: &NewCategory<'_>, now_ms: i64) -> Result<i64, sqlx::Error> {
    let query = sqlx::query(
        "INSERT INTO category (parent_id, name, icon_url, sort_order, status, created_at, updated_at) \
         VALUES (?, ?, ?, ?, 'active', ?, ?)",
    )
    .bind(new.parent_id)
    .bind(new.name)
    .bind(new.icon_url)
    .bind(new.sort_order)
    .bind(now_ms)
    .bind(now_ms);
    insert_returning_id(conn, query).await
}

pub async fn insert_product(conn: &mut AnyConnection, new: &NewProduct<'_>, now_ms: i64) -> Result<i64, sqlx::Error> {
    let query = sqlx::query(
        "INSERT INTO product (category_id, title, subtitle, description, image_urls, status, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, 'on_sale', ?, ?)",
    )
    .bind(new.category_id)
    .bind(new.title)
    .bind(new.subtitle)
    .bind(new.description)
    .bind(new.image_urls)
    .bind(now_ms)
    .bind(now_ms);
    insert_returning_id(conn, query).await
}

pub async fn insert_sku(conn: &mut AnyConnection, new: &NewSku<'_>, now_ms: i64) -> Result<i64, sqlx::Error> {
    let query = sqlx::query(
        "INSERT INTO sku (product_id, title, price_fen, stock, attributes, status, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, 'active', ?, ?)",
    )
    .bind(new.product_id)
    .bind(new.title)
    .bind(new.price_fen)
    .bind(new.stock)
    .bind(new.attributes)
    .bind(now_ms)
    .bind(now_ms);
    insert_returning_id(conn, query).await
}

/// Counts categories with a locking read, so two instances seeding at once do not both see an empty catalog.
pub async fn count_categories_locked<'c, E>(executor: E, dialect: Dialect) -> Result<i64, sqlx::Error>
where
    E: Executor<'c, Database = Any>,
{
    let sql = format!("SELECT COUNT(*) AS n FROM category{}", dialect.for_update());
    sqlx::query(&sql).fetch_one(executor).bounded().await?.try_get("n")
}
