//! Back-office catalog management: products and SKUs (categories in `categories.rs`, stock in `stock.rs`). Every change invalidates the cached
//! storefront responses it affects, so the mini-program sees it on its next request.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::catalog::check::Check;
use crate::catalog::service::{image_urls, product_cache_key, sku_attributes};
use crate::catalog::store::{self, NewProduct, NewSku, ProductQuery, SetValue, SkuRow};
use crate::db::Bounded;
use crate::db::{now_ms, rfc3339};
use crate::domain::{cut_page, Cursor, PageLimit};
use crate::error::AppError;
use crate::state::App;

// ---- what the back office sees -------------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct AdminSku {
    pub id: i64,
    pub product_id: i64,
    pub title: String,
    pub price_fen: i64,
    pub stock: i64,
    #[schema(value_type = Object)]
    pub attributes: Map<String, Value>,
    /// `active` or `delisted`.
    pub status: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdminProduct {
    pub id: i64,
    pub category_id: i64,
    pub title: String,
    pub subtitle: String,
    pub description: String,
    pub image_urls: Vec<String>,
    /// `on_sale` or `delisted`.
    pub status: String,
    pub skus: Vec<AdminSku>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdminProductSummary {
    pub id: i64,
    pub category_id: i64,
    pub title: String,
    pub status: String,
    pub price_fen: Option<i64>,
    pub in_stock: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdminProductPage {
    pub items: Vec<AdminProductSummary>,
    pub next_cursor: Option<String>,
}

// ---- inputs ----------------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSku {
    pub title: String,
    /// Integer fen.
    pub price_fen: i64,
    pub stock: i64,
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProduct {
    pub category_id: i64,
    pub title: String,
    pub subtitle: Option<String>,
    pub description: Option<String>,
    /// Committed `product_image` uploads (`POST /admin/api/v1/uploads`), in display order; at most 20.
    pub image_upload_ids: Option<Vec<String>>,
    /// At least one.
    pub skus: Vec<CreateSku>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProduct {
    pub category_id: Option<i64>,
    pub title: Option<String>,
    pub subtitle: Option<String>,
    pub description: Option<String>,
    /// Replaces the images: committed `product_image` uploads, in display order; at most 20.
    pub image_upload_ids: Option<Vec<String>>,
    /// `on_sale` or `delisted`.
    pub status: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSku {
    pub title: Option<String>,
    pub price_fen: Option<i64>,
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Map<String, Value>>,
    /// `active` or `delisted`.
    pub status: Option<String>,
}

// ---- products and SKUs ------------------------------------------------------------------------------------------

/// Every product whatever its status (or only `status`), newest first, cursor-paginated.
pub async fn list_products(
    app: &App,
    status: Option<&str>,
    category_id: Option<i64>,
    limit: Option<i64>,
    cursor: Option<&str>,
) -> Result<AdminProductPage, AppError> {
    let limit = PageLimit::parse(limit)?.get();
    let cursor = cursor.filter(|c| !c.is_empty()).map(|c| Cursor::parse(c, 1)).transpose()?;
    let mut check = Check::default();
    check.one_of("status", status, &["on_sale", "delisted"]);
    check.range("category_id", category_id, 1, i64::MAX);
    check.done()?;
    let query = ProductQuery {
        status,
        category_id,
        title_like: None,
        before_id: cursor.map(|c| c.keys()[0]),
        limit: limit + 1,
    };
    let rows = store::list_products(&app.db.pool, &query).await?;
    let (rows, next_cursor) = cut_page(rows, limit, |r| vec![r.id]);
    let items = rows
        .into_iter()
        .map(|r| AdminProductSummary {
            id: r.id,
            category_id: r.category_id,
            title: r.title,
            status: r.status,
            price_fen: r.min_price_fen,
            in_stock: r.in_stock,
        })
        .collect();
    Ok(AdminProductPage { items, next_cursor })
}

fn admin_sku(row: SkuRow) -> Result<AdminSku, AppError> {
    let attributes = sku_attributes(&row)?;
    Ok(AdminSku {
        id: row.id,
        product_id: row.product_id,
        title: row.title,
        price_fen: row.price_fen,
        stock: row.stock,
        attributes,
        status: row.status,
    })
}

pub async fn get_product(app: &App, id: i64) -> Result<AdminProduct, AppError> {
    let row = store::find_product_any_status(&app.db.pool, id).await?.ok_or(AppError::not_found("product"))?;
    let skus = store::list_skus(&app.db.pool, id, false).await?.into_iter().map(admin_sku).collect::<Result<_, _>>()?;
    let image_urls = image_urls(&row)?;
    Ok(AdminProduct {
        id: row.id,
        category_id: row.category_id,
        title: row.title,
        subtitle: row.subtitle,
        description: row.description,
        image_urls,
        status: row.status,
        skus,
        created_at: rfc3339(row.created_at),
        updated_at: rfc3339(row.updated_at),
    })
}

fn check_images(check: &mut Check, images: Option<&Vec<String>>) {
    if images.is_some_and(|images| images.len() > 20) {
        check.fail("image_upload_ids", "at most 20 images");
    }
}

/// The URLs of the given product-image uploads (404 `upload_not_found` for any that is not one).
async fn image_urls_of(app: &App, ids: Option<&Vec<String>>) -> Result<Option<Vec<String>>, AppError> {
    match ids {
        Some(ids) => Ok(Some(crate::uploads::service::product_image_urls(app, ids).await?)),
        None => Ok(None),
    }
}

pub async fn create_product(app: &App, input: CreateProduct) -> Result<AdminProduct, AppError> {
    let mut check = Check::default();
    check.text("title", Some(&input.title), 128, true);
    check.text("subtitle", input.subtitle.as_deref(), 256, false);
    check.text("description", input.description.as_deref(), 10_000, false);
    check_images(&mut check, input.image_upload_ids.as_ref());
    if input.skus.is_empty() || input.skus.len() > 100 {
        check.fail("skus", "between 1 and 100 SKUs");
    }
    for (i, sku) in input.skus.iter().enumerate() {
        check.sku(&format!("skus[{i}]."), Some(&sku.title), Some(sku.price_fen), Some(sku.stock));
        check.attributes(&format!("skus[{i}].attributes"), sku.attributes.as_ref());
    }
    check.done()?;
    if !store::category_exists(&app.db.pool, input.category_id).await? {
        return Err(AppError::not_found("category"));
    }
    let images = image_urls_of(app, input.image_upload_ids.as_ref()).await?.unwrap_or_default();
    let now = now_ms();
    let images = serde_json::to_string(&images).map_err(anyhow::Error::from)?;
    let mut tx = app.db.begin_write().await?;
    let product = NewProduct {
        category_id: input.category_id,
        title: input.title.trim(),
        subtitle: input.subtitle.as_deref().unwrap_or(""),
        description: input.description.as_deref().unwrap_or(""),
        image_urls: &images,
    };
    let product_id = store::insert_product(&mut tx, &product, now).await?;
    for sku in &input.skus {
        let attributes = Value::Object(sku.attributes.clone().unwrap_or_default()).to_string();
        let new = NewSku {
            product_id,
            title: sku.title.trim(),
            price_fen: sku.price_fen,
            stock: sku.stock,
            attributes: &attributes,
        };
        store::insert_sku(&mut tx, &new, now).await?;
    }
    tx.commit().bounded().await?;
    get_product(app, product_id).await
}

pub async fn update_product(app: &App, id: i64, input: UpdateProduct) -> Result<AdminProduct, AppError> {
    let mut check = Check::default();
    check.text("title", input.title.as_deref(), 128, true);
    check.text("subtitle", input.subtitle.as_deref(), 256, false);
    check.text("description", input.description.as_deref(), 10_000, false);
    check_images(&mut check, input.image_upload_ids.as_ref());
    check.one_of("status", input.status.as_deref(), &["on_sale", "delisted"]);
    check.done()?;
    if let Some(category) = input.category_id {
        if !store::category_exists(&app.db.pool, category).await? {
            return Err(AppError::not_found("category"));
        }
    }
    let images = image_urls_of(app, input.image_upload_ids.as_ref()).await?;
    let mut changes = Vec::new();
    if let Some(v) = input.category_id {
        changes.push(("category_id", SetValue::Int(v)));
    }
    if let Some(v) = input.title {
        changes.push(("title", SetValue::Text(v.trim().to_owned())));
    }
    if let Some(v) = input.subtitle {
        changes.push(("subtitle", SetValue::Text(v)));
    }
    if let Some(v) = input.description {
        changes.push(("description", SetValue::Text(v)));
    }
    if let Some(v) = images {
        changes.push(("image_urls", SetValue::Text(serde_json::to_string(&v).map_err(anyhow::Error::from)?)));
    }
    if let Some(v) = input.status {
        changes.push(("status", SetValue::Text(v)));
    }
    if !store::update_row(&app.db.pool, "product", id, changes, now_ms()).await? {
        return Err(AppError::not_found("product"));
    }
    app.cache.invalidate(&product_cache_key(id)).await;
    get_product(app, id).await
}

pub async fn add_sku(app: &App, product_id: i64, input: CreateSku) -> Result<AdminSku, AppError> {
    let mut check = Check::default();
    check.sku("", Some(&input.title), Some(input.price_fen), Some(input.stock));
    check.attributes("attributes", input.attributes.as_ref());
    check.done()?;
    if store::find_product_any_status(&app.db.pool, product_id).await?.is_none() {
        return Err(AppError::not_found("product"));
    }
    let attributes = Value::Object(input.attributes.unwrap_or_default()).to_string();
    let mut tx = app.db.begin_write().await?;
    let new = NewSku {
        product_id,
        title: input.title.trim(),
        price_fen: input.price_fen,
        stock: input.stock,
        attributes: &attributes,
    };
    let id = store::insert_sku(&mut tx, &new, now_ms()).await?;
    let row = store::find_sku(&mut tx, id, app.db.dialect, false).await?.ok_or(AppError::not_found("sku"))?;
    tx.commit().bounded().await?;
    app.cache.invalidate(&product_cache_key(product_id)).await;
    admin_sku(row)
}

pub async fn update_sku(app: &App, id: i64, input: UpdateSku) -> Result<AdminSku, AppError> {
    let mut check = Check::default();
    check.sku("", input.title.as_deref(), input.price_fen, None);
    check.attributes("attributes", input.attributes.as_ref());
    check.one_of("status", input.status.as_deref(), &["active", "delisted"]);
    check.done()?;
    let mut changes = Vec::new();
    if let Some(v) = input.title {
        changes.push(("title", SetValue::Text(v.trim().to_owned())));
    }
    if let Some(v) = input.price_fen {
        changes.push(("price_fen", SetValue::Int(v)));
    }
    if let Some(v) = input.attributes {
        changes.push(("attributes", SetValue::Text(Value::Object(v).to_string())));
    }
    if let Some(v) = input.status {
        changes.push(("status", SetValue::Text(v)));
    }
    if !store::update_row(&app.db.pool, "sku", id, changes, now_ms()).await? {
        return Err(AppError::not_found("sku"));
    }
    let mut conn = app.db.pool.acquire().await?;
    let row = store::find_sku(&mut conn, id, app.db.dialect, false).await?.ok_or(AppError::not_found("sku"))?;
    drop(conn);
    app.cache.invalidate(&product_cache_key(row.product_id)).await;
    admin_sku(row)
}
