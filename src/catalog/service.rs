//! Catalog rules: only active categories and on-sale products are visible; pages are cut by id, newest first.

use std::time::Duration;

use axum::body::Bytes;

use crate::cache::Cache;
use crate::catalog::model::{Category, CategoryList, ProductDetail, ProductPage, ProductSummary, Sku};
use crate::catalog::store::{self, ProductQuery, ProductRow, SkuRow};
use crate::db::{rfc3339, Db};
use crate::domain::{cut_page, Cursor, Money, PageLimit};
use crate::error::{AppError, FieldError};

/// The longest search text accepted.
pub const MAX_SEARCH_CHARS: usize = 64;

/// A parsed, validated product listing request.
#[derive(Debug)]
pub struct ProductFilter {
    pub category_id: Option<i64>,
    pub search: Option<String>,
    pub limit: PageLimit,
    pub cursor: Option<Cursor>,
}

impl ProductFilter {
    /// Validates every field at once so the 422 names all offending fields.
    pub fn parse(
        category_id: Option<i64>,
        q: Option<String>,
        limit: Option<i64>,
        cursor: Option<&str>,
    ) -> Result<ProductFilter, AppError> {
        let cursor = cursor.filter(|c| !c.is_empty()).map(|c| Cursor::parse(c, 1)).transpose()?;
        let mut fields = Vec::new();
        let limit = match PageLimit::parse(limit) {
            Ok(limit) => Some(limit),
            Err(AppError::Validation(mut f)) => {
                fields.append(&mut f);
                None
            }
            Err(other) => return Err(other),
        };
        let search = q.map(|q| q.trim().to_owned()).filter(|q| !q.is_empty());
        if let Some(search) = &search {
            if search.chars().count() > MAX_SEARCH_CHARS {
                fields.push(FieldError::new("q", format!("must be at most {MAX_SEARCH_CHARS} characters")));
            }
        }
        if let Some(id) = category_id {
            if id <= 0 {
                fields.push(FieldError::new("category_id", "must be a positive id"));
            }
        }
        match limit {
            Some(limit) if fields.is_empty() => Ok(ProductFilter { category_id, search, limit, cursor }),
            _ => Err(AppError::Validation(fields)),
        }
    }
}

/// Cache key of a product's detail response. Versioned: a new response shape gets new keys.
pub fn product_cache_key(id: i64) -> String {
    format!("catalog:v1:product:{id}")
}

/// Cache key of the category list response.
pub const CATEGORIES_CACHE_KEY: &str = "catalog:v1:categories";

/// A cached JSON response, or `load` serialized and cached for `ttl` (zero: no caching).
async fn cached_json<T, F>(cache: &Cache, key: &str, ttl: Duration, load: F) -> Result<Bytes, AppError>
where
    T: serde::Serialize,
    F: std::future::Future<Output = Result<T, AppError>>,
{
    if ttl.is_zero() {
        return Ok(Bytes::from(serde_json::to_vec(&load.await?).map_err(anyhow::Error::from)?));
    }
    if let Some(hit) = cache.get("catalog", key).await {
        return Ok(hit);
    }
    let body = Bytes::from(serde_json::to_vec(&load.await?).map_err(anyhow::Error::from)?);
    cache.put(key, body.clone(), ttl).await;
    Ok(body)
}

/// The serialized category list, from the cache when fresh.
pub async fn categories_json(db: &Db, cache: &Cache, ttl: Duration) -> Result<Bytes, AppError> {
    cached_json(cache, CATEGORIES_CACHE_KEY, ttl, async { Ok(CategoryList { items: list_categories(db).await? }) })
        .await
}

/// A product's serialized detail, from the cache when fresh. Unknown ids are not cached.
pub async fn product_json(db: &Db, cache: &Cache, ttl: Duration, id: i64) -> Result<Bytes, AppError> {
    cached_json(cache, &product_cache_key(id), ttl, get_product(db, id)).await
}

pub async fn list_categories(db: &Db) -> Result<Vec<Category>, AppError> {
    let rows = store::list_categories(&db.pool).await?;
    Ok(rows
        .into_iter()
        .map(|r| Category {
            id: r.id,
            parent_id: r.parent_id,
            name: r.name,
            icon_url: r.icon_url,
            sort_order: r.sort_order,
        })
        .collect())
}

pub async fn list_products(db: &Db, filter: &ProductFilter) -> Result<ProductPage, AppError> {
    let pattern = filter.search.as_deref().map(like_contains);
    let limit = filter.limit.get();
    // One extra row tells whether another page follows.
    let query = ProductQuery {
        status: Some("on_sale"),
        category_id: filter.category_id,
        title_like: pattern.as_deref(),
        before_id: filter.cursor.as_ref().map(|c| c.keys()[0]),
        limit: limit + 1,
    };
    let rows = store::list_products(&db.pool, &query).await?;
    let (rows, next_cursor) = cut_page(rows, limit, |r| vec![r.id]);
    let items = rows.into_iter().map(summary).collect::<Result<Vec<_>, _>>()?;
    Ok(ProductPage { items, next_cursor })
}

pub async fn get_product(db: &Db, id: i64) -> Result<ProductDetail, AppError> {
    let row = store::find_product(&db.pool, id).await?.ok_or(AppError::not_found("product"))?;
    let skus = store::list_skus(&db.pool, id, true)
        .await?
        .into_iter()
        .map(|s| {
            let attributes = sku_attributes(&s)?;
            Ok(Sku { id: s.id, title: s.title, price_fen: money(s.price_fen)?, stock: s.stock, attributes })
        })
        .collect::<Result<Vec<_>, AppError>>()?;
    let image_urls = image_urls(&row)?;
    Ok(ProductDetail {
        id: row.id,
        category_id: row.category_id,
        title: row.title,
        subtitle: row.subtitle,
        description: row.description,
        image_urls,
        price_fen: row.min_price_fen.map(money).transpose()?,
        skus,
        created_at: rfc3339(row.created_at),
        updated_at: rfc3339(row.updated_at),
    })
}

fn summary(row: ProductRow) -> Result<ProductSummary, AppError> {
    let image_url = image_urls(&row)?.into_iter().next();
    Ok(ProductSummary {
        id: row.id,
        category_id: row.category_id,
        title: row.title,
        subtitle: row.subtitle,
        image_url,
        price_fen: row.min_price_fen.map(money).transpose()?,
        in_stock: row.in_stock,
    })
}

/// A product's stored image list (a JSON array).
pub fn image_urls(row: &ProductRow) -> Result<Vec<String>, AppError> {
    serde_json::from_str(&row.image_urls)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("product {} has malformed image_urls: {e}", row.id)))
}

/// A SKU's stored attributes (a JSON object).
pub fn sku_attributes(row: &SkuRow) -> Result<serde_json::Map<String, serde_json::Value>, AppError> {
    serde_json::from_str(&row.attributes)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("sku {} has malformed attributes: {e}", row.id)))
}

fn money(fen: i64) -> Result<Money, AppError> {
    Money::from_fen(fen).map_err(|e| AppError::Internal(anyhow::anyhow!("stored price: {e}")))
}

/// `text` as a `LIKE … ESCAPE '!'` pattern matching it anywhere. `!` rather than backslash because MySQL treats a
/// backslash in a string literal as an escape itself, SQLite does not.
pub fn like_contains(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '!' | '%' | '_') {
            pattern.push('!');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_pattern_escapes_wildcards() {
        assert_eq!(like_contains("100%_off!"), "%100!%!_off!!%");
        assert_eq!(like_contains("茶"), "%茶%");
    }

    #[test]
    fn filter_reports_every_bad_field() {
        let err = ProductFilter::parse(Some(0), Some("x".repeat(65)), Some(500), None).unwrap_err();
        match err {
            AppError::Validation(fields) => {
                let names: Vec<_> = fields.iter().map(|f| f.field.as_str()).collect();
                assert_eq!(names, ["limit", "q", "category_id"]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
