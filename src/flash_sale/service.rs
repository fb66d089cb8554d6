//! Flash sales in the back office (create, change before the start, end early, list) and the public list.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::Bounded;
use crate::db::{now_ms, rfc3339};
use crate::domain::{check_window, cut_page, id_page, time_field, Page};
use crate::error::{AppError, FieldError};
use crate::flash_sale::store::{self, SaleFields, SaleRow};
use crate::orders::store as order_store;
use crate::soldout::Kind;
use crate::state::App;

pub const MAX_STOCK: i64 = 1_000_000;
pub const MAX_PER_USER: i64 = 99;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateFlashSale {
    pub sku_id: i64,
    /// The flash price.
    pub price_fen: i64,
    /// Units for the sale, taken from the SKU's stock.
    pub stock: i64,
    /// Units one buyer may get.
    pub per_user_limit: i64,
    /// RFC 3339.
    pub starts_at: String,
    pub ends_at: String,
}

/// Any of these, before the sale starts.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateFlashSale {
    pub price_fen: Option<i64>,
    pub stock: Option<i64>,
    pub per_user_limit: Option<i64>,
    pub starts_at: Option<String>,
    pub ends_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FlashSale {
    pub id: i64,
    pub sku_id: i64,
    pub product_id: i64,
    pub title: String,
    pub sku_title: String,
    /// The SKU's ordinary price.
    pub original_price_fen: i64,
    pub price_fen: i64,
    pub stock: i64,
    /// Units left; `null` when not known cheaply.
    pub remaining: Option<i64>,
    pub per_user_limit: i64,
    pub starts_at: String,
    pub ends_at: String,
    /// `upcoming`, `active`, `sold_out` or `ended`.
    pub status: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AdminFlashSale {
    #[serde(flatten)]
    pub sale: FlashSale,
    /// Units held by purchases in the database (queued, or with an order that is not cancelled).
    pub sold: i64,
    pub ended_early_at: Option<String>,
    /// Unsold units went back to the SKU (after the sale and its payment window).
    pub stock_returned_at: Option<String>,
}

/// Checks the sale's fields, given the errors found parsing its times (whose window is checked when they parsed).
fn check(
    f: &SaleFields,
    window: (Option<i64>, Option<i64>),
    now: i64,
    mut errors: Vec<FieldError>,
) -> Result<(), AppError> {
    if !(1..=100_000_000).contains(&f.price_fen) {
        errors.push(FieldError::new("price_fen", "1 to 100000000"));
    }
    if !(1..=MAX_STOCK).contains(&f.stock) {
        errors.push(FieldError::new("stock", format!("1 to {MAX_STOCK}")));
    }
    if !(1..=MAX_PER_USER).contains(&f.per_user_limit) {
        errors.push(FieldError::new("per_user_limit", format!("1 to {MAX_PER_USER}")));
    }
    check_window(window.0, window.1, now, &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AppError::Validation(errors))
    }
}

pub async fn create(app: &App, input: CreateFlashSale) -> Result<AdminFlashSale, AppError> {
    let now = now_ms();
    let mut errors = Vec::new();
    let starts_at = time_field("starts_at", &input.starts_at, &mut errors);
    let ends_at = time_field("ends_at", &input.ends_at, &mut errors);
    let fields = SaleFields {
        sku_id: input.sku_id,
        price_fen: input.price_fen,
        stock: input.stock,
        per_user_limit: input.per_user_limit,
        starts_at: starts_at.unwrap_or_default(),
        ends_at: ends_at.unwrap_or_default(),
    };
    check(&fields, (starts_at, ends_at), now, errors)?;
    let mut tx = app.db.begin_write().await?;
    let sku = order_store::skus_for_order(&mut tx, &[fields.sku_id]).await?.into_iter().next();
    if sku.is_none() {
        return Err(AppError::not_found("sku"));
    }
    // The sale's units leave the SKU's ordinary stock now, so no unit is sold twice.
    let Some(taken) = order_store::take_stock(&mut tx, fields.sku_id, fields.stock, now, "flash_sale").await? else {
        return Err(AppError::conflict("insufficient_stock", "the SKU does not have that many units"));
    };
    crate::events::record(&mut tx, taken).await?;
    let id = store::insert_sale(&mut tx, &fields, now).await?;
    let sale = store::find_sale(&mut tx, id).await?.ok_or(AppError::not_found("flash_sale"))?;
    tx.commit().bounded().await?;
    app.flash_gate.prime(&app.db, &sale).await?;
    tracing::info!(flash_sale_id = id, sku_id = sale.sku_id, stock = sale.stock, "flash sale created");
    admin_view(app, sale).await
}

pub async fn update(app: &App, id: i64, input: UpdateFlashSale) -> Result<AdminFlashSale, AppError> {
    let now = now_ms();
    let mut tx = app.db.begin_write().await?;
    let sale = store::find_sale(&mut tx, id).await?.ok_or(AppError::not_found("flash_sale"))?;
    if now >= sale.starts_at || sale.ended_early_at.is_some() {
        return Err(AppError::conflict("already_started", "a flash sale can only be changed before it starts"));
    }
    let mut errors = Vec::new();
    let starts_at =
        input.starts_at.as_deref().map_or(Some(sale.starts_at), |v| time_field("starts_at", v, &mut errors));
    let ends_at = input.ends_at.as_deref().map_or(Some(sale.ends_at), |v| time_field("ends_at", v, &mut errors));
    let fields = SaleFields {
        sku_id: sale.sku_id,
        price_fen: input.price_fen.unwrap_or(sale.price_fen),
        stock: input.stock.unwrap_or(sale.stock),
        per_user_limit: input.per_user_limit.unwrap_or(sale.per_user_limit),
        starts_at: starts_at.unwrap_or_default(),
        ends_at: ends_at.unwrap_or_default(),
    };
    check(&fields, (starts_at, ends_at), now, errors)?;
    let more = fields.stock - sale.stock;
    if more > 0 {
        let Some(taken) = order_store::take_stock(&mut tx, sale.sku_id, more, now, "flash_sale").await? else {
            return Err(AppError::conflict("insufficient_stock", "the SKU does not have that many units"));
        };
        crate::events::record(&mut tx, taken).await?;
    }
    if more < 0 {
        order_store::return_stock(&mut tx, sale.sku_id, -more, now).await?;
    }
    if !store::update_unstarted(&mut tx, id, &fields, now).await? {
        return Err(AppError::conflict("already_started", "a flash sale can only be changed before it starts"));
    }
    let sale = store::find_sale(&mut tx, id).await?.ok_or(AppError::not_found("flash_sale"))?;
    tx.commit().bounded().await?;
    app.flash_gate.refresh(&app.db, &sale).await?;
    app.sold_out.clear(Kind::FlashSale, id);
    admin_view(app, sale).await
}

/// Ends a sale now: later attempts are 409 `ended`; purchases already won still become orders.
pub async fn end(app: &App, id: i64) -> Result<AdminFlashSale, AppError> {
    let now = now_ms();
    let mut tx = app.db.begin_write().await?;
    let sale = store::find_sale(&mut tx, id).await?.ok_or(AppError::not_found("flash_sale"))?;
    if !store::end_early(&mut tx, id, now).await? {
        return Err(AppError::conflict("ended", format!("the sale ended at {}", rfc3339(sale.closes_at()))));
    }
    let sale = store::find_sale(&mut tx, id).await?.ok_or(AppError::not_found("flash_sale"))?;
    tx.commit().bounded().await?;
    app.flash_gate.refresh(&app.db, &sale).await?;
    // Answer `ended` rather than a remembered `sold_out` (other instances' flags lapse within the recheck time).
    app.sold_out.clear(Kind::FlashSale, id);
    admin_view(app, sale).await
}

pub async fn admin_get(app: &App, id: i64) -> Result<AdminFlashSale, AppError> {
    let mut conn = app.db.pool.acquire().await?;
    let sale = store::find_sale(&mut conn, id).await?.ok_or(AppError::not_found("flash_sale"))?;
    drop(conn);
    admin_view(app, sale).await
}

async fn admin_view(app: &App, sale: SaleRow) -> Result<AdminFlashSale, AppError> {
    Ok(admin_views(app, vec![sale]).await?.remove(0))
}

/// The back office's view of `sales`: one query for units sold, one for SKU details, one gate round trip.
async fn admin_views(app: &App, sales: Vec<SaleRow>) -> Result<Vec<AdminFlashSale>, AppError> {
    let ids: Vec<i64> = sales.iter().map(|s| s.id).collect();
    let mut conn = app.db.pool.acquire().await?;
    let sold = store::held_units_by_sale(&mut conn, &ids).await?;
    drop(conn);
    let extra: Vec<(Option<i64>, Option<i64>)> =
        sales.iter().map(|s| (s.ended_early_at, s.stock_returned_at)).collect();
    Ok(views(app, sales)
        .await?
        .into_iter()
        .zip(extra)
        .map(|(sale, (ended_early_at, stock_returned_at))| AdminFlashSale {
            sold: sold.get(&sale.id).copied().unwrap_or(0),
            sale,
            ended_early_at: ended_early_at.map(rfc3339),
            stock_returned_at: stock_returned_at.map(rfc3339),
        })
        .collect())
}

/// Sales newest first: all (back office) or those not over (the mini-program: current and upcoming).
pub async fn list(
    app: &App,
    open_only: bool,
    limit: Option<i64>,
    cursor: Option<&str>,
) -> Result<Page<FlashSale>, AppError> {
    let (limit, before) = id_page(limit, cursor)?;
    let rows = store::list_sales(&app.db.pool, open_only.then(now_ms), before, limit).await?;
    let (rows, next_cursor) = cut_page(rows, limit, |r| vec![r.id]);
    Ok(Page { items: views(app, rows).await?, next_cursor })
}

async fn views(app: &App, sales: Vec<SaleRow>) -> Result<Vec<FlashSale>, AppError> {
    if sales.is_empty() {
        return Ok(Vec::new());
    }
    let now = now_ms();

    let remaining = app.flash_gate.remaining(&app.db, &sales).await?;
    let sku_ids: Vec<i64> = sales.iter().map(|s| s.sku_id).collect();
    let mut conn = app.db.pool.acquire().await?;
    let skus = order_store::skus_for_order(&mut conn, &sku_ids).await?;
    drop(conn);
    Ok(sales
        .into_iter()
        .zip(remaining)
        .map(|(sale, remaining)| {
            let sku = skus.iter().find(|s| s.sku_id == sale.sku_id);
            let status = if now >= sale.closes_at() {
                "ended"
            } else if now < sale.starts_at {
                "upcoming"
            } else if remaining == Some(0) {
                "sold_out"
            } else {
                "active"
            };
            FlashSale {
                id: sale.id,
                sku_id: sale.sku_id,
                product_id: sku.map_or(0, |s| s.product_id),
                title: sku.map(|s| s.title.clone()).unwrap_or_default(),
                sku_title: sku.map(|s| s.sku_title.clone()).unwrap_or_default(),
                original_price_fen: sku.map_or(0, |s| s.price_fen),
                price_fen: sale.price_fen,
                stock: sale.stock,
                remaining,
                per_user_limit: sale.per_user_limit,
                starts_at: rfc3339(sale.starts_at),
                ends_at: rfc3339(sale.closes_at()),
                status: status.into(),
            }
        })
        .collect())
}

/// Admin list with the database's sold counts.
pub async fn admin_list(app: &App, limit: Option<i64>, cursor: Option<&str>) -> Result<Page<AdminFlashSale>, AppError> {
    let (limit, before) = id_page(limit, cursor)?;
    let rows = store::list_sales(&app.db.pool, None, before, limit).await?;
    let (rows, next_cursor) = cut_page(rows, limit, |r| vec![r.id]);
    Ok(Page { items: admin_views(app, rows).await?, next_cursor })
}
