//! Cart rules: quantities 1 to 999 (0 removes), at most 100 lines, lines shown at today's price and stock and
//! flagged when their SKU can no longer be bought.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::cart::store;
use crate::catalog::store as catalog_store;
use crate::db::now_ms;
use crate::error::AppError;
use crate::state::App;

pub const MAX_QUANTITY: i64 = 999;
pub const MAX_LINES: i64 = 100;

#[derive(Debug, Serialize, ToSchema)]
pub struct CartItem {
    pub sku_id: i64,
    pub product_id: i64,
    pub title: String,
    pub sku_title: String,
    pub image_url: Option<String>,
    /// Today's price, not the price when it was added.
    pub price_fen: i64,
    pub quantity: i64,
    pub stock: i64,
    /// Whether the line can be ordered as it is.
    pub available: bool,
    /// Why not: `delisted`, `out_of_stock` or `insufficient_stock`.
    pub unavailable_reason: Option<&'static str>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Cart {
    pub items: Vec<CartItem>,
    /// Sum over the available lines.
    pub total_fen: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetQuantity {
    /// 0 removes the line.
    pub quantity: i64,
}

pub async fn get(app: &App, user_id: i64) -> Result<Cart, AppError> {
    let mut total_fen = 0i64;
    let mut items = Vec::new();
    for line in store::lines(&app.db.pool, user_id).await? {
        let reason = if line.sku_status != "active" || line.product_status != "on_sale" {
            Some("delisted")
        } else if line.stock == 0 {
            Some("out_of_stock")
        } else if line.stock < line.quantity {
            Some("insufficient_stock")
        } else {
            None
        };
        if reason.is_none() {
            total_fen += line.price_fen * line.quantity;
        }
        let image_url = serde_json::from_str::<Vec<String>>(&line.image_urls).ok().and_then(|v| v.into_iter().next());
        items.push(CartItem {
            sku_id: line.sku_id,
            product_id: line.product_id,
            title: line.title,
            sku_title: line.sku_title,
            image_url,
            price_fen: line.price_fen,
            quantity: line.quantity,
            stock: line.stock,
            available: reason.is_none(),
            unavailable_reason: reason,
        });
    }
    Ok(Cart { items, total_fen })
}

pub async fn set_quantity(app: &App, user_id: i64, sku_id: i64, quantity: i64) -> Result<Cart, AppError> {
    if !(0..=MAX_QUANTITY).contains(&quantity) {
        return Err(AppError::validation("quantity", format!("must be between 0 and {MAX_QUANTITY}")));
    }
    if quantity == 0 {
        let mut conn = app.db.pool.acquire().await?;
        store::remove(&mut conn, user_id, sku_id).await?;
        drop(conn);
        return get(app, user_id).await;
    }
    let mut conn = app.db.pool.acquire().await?;
    let sku = catalog_store::find_sku(&mut conn, sku_id, app.db.dialect, false).await?;
    drop(conn);
    match sku {
        None => return Err(AppError::not_found("sku")),
        Some(s) if s.status != "active" => {
            return Err(AppError::conflict("sku_unavailable", format!("sku {sku_id} is no longer sold")))
        }
        Some(_) => {}
    }
    let lines = store::count(&app.db.pool, user_id).await?;
    if lines >= MAX_LINES && !store::contains(&app.db.pool, user_id, sku_id).await? {
        return Err(AppError::conflict("cart_full", format!("a cart holds at most {MAX_LINES} lines")));
    }
    store::set(&app.db.pool, app.db.dialect, user_id, sku_id, quantity, now_ms()).await?;
    get(app, user_id).await
}

pub async fn clear(app: &App, user_id: i64) -> Result<(), AppError> {
    store::clear(&app.db.pool, user_id).await?;
    Ok(())
}
