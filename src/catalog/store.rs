//! Catalog SQL. Portable across SQLite and MySQL: `?` placeholders, BIGINT ids, fen and epoch-ms.

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, AnyPool, Executor, QueryBuilder, Row};

use crate::db::{get_text, insert_returning_id, Dialect};

/// Products of the listing walk newest first: `id` descending.
pub struct ProductQuery<'a> {
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
}

pub struct SkuRow {
    pub id: i64,
    pub title: String,
    pub price_fen: i64,
    pub stock: i64,
    pub attributes: String,
}

pub async fn list_categories(pool: &AnyPool) -> Result<Vec<CategoryRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, parent_id, name, icon_url, sort_order FROM category \
         WHERE status = 'active' ORDER BY sort_order, id",
    )
    .fetch_all(pool)
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
    })
}

/// On-sale products matching the query, newest first.
pub async fn list_products(pool: &AnyPool, query: &ProductQuery<'_>) -> Result<Vec<ProductRow>, sqlx::Error> {
    let mut sql =
        QueryBuilder::<Any>::new(format!("SELECT {PRODUCT_COLUMNS} FROM product p WHERE p.status = 'on_sale'"));
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
    let rows = sql.build().fetch_all(pool).await?;
    rows.iter().map(product_row).collect()
}

/// An on-sale product.
pub async fn find_product(pool: &AnyPool, id: i64) -> Result<Option<ProductRow>, sqlx::Error> {
    let sql = format!("SELECT {PRODUCT_COLUMNS} FROM product p WHERE p.id = ? AND p.status = 'on_sale'");
    let row = sqlx::query(&sql).bind(id).fetch_optional(pool).await?;
    row.as_ref().map(product_row).transpose()
}

/// The active SKUs of a product, in creation order.
pub async fn list_skus(pool: &AnyPool, product_id: i64) -> Result<Vec<SkuRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, title, price_fen, stock, attributes FROM sku \
         WHERE product_id = ? AND status = 'active' ORDER BY id",
    )
    .bind(product_id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(SkuRow {
                id: r.try_get("id")?,
                title: r.try_get("title")?,
                price_fen: r.try_get("price_fen")?,
                stock: r.try_get("stock")?,
                attributes: get_text(r, "attributes")?,
            })
        })
        .collect()
}

pub struct NewCategory<'a> {
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
        "INSERT INTO category (name, icon_url, sort_order, status, created_at, updated_at) \
         VALUES (?, ?, ?, 'active', ?, ?)",
    )
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
    sqlx::query(&sql).fetch_one(executor).await?.try_get("n")
}
