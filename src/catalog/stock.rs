//! Stock changes from the back office: set or adjusted, each recorded with who, when, why and by how much.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::extract::AdminUser;
use crate::catalog::check::{Check, MAX_STOCK};
use crate::catalog::service::product_cache_key;
use crate::catalog::store::{self, NewStockAdjustment};
use crate::db::Bounded;
use crate::db::{now_ms, rfc3339};
use crate::error::AppError;
use crate::state::App;

#[derive(Debug, Serialize, ToSchema)]
pub struct StockAdjustment {
    pub id: i64,
    pub sku_id: i64,
    /// Who (admin account id).
    pub admin_user_id: i64,
    pub delta: i64,
    pub stock_after: i64,
    /// Why.
    pub reason: String,
    /// When.
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StockAdjustmentList {
    pub items: Vec<StockAdjustment>,
}

/// Exactly one of `set` (the new stock) or `delta` (added; negative removes), and why.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeStock {
    pub set: Option<i64>,
    pub delta: Option<i64>,
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StockChanged {
    pub sku_id: i64,
    pub stock: i64,
    pub adjustment: StockAdjustment,
}

/// Sets or adjusts a SKU's stock, recording who, when, why and by how much, atomically with the change.
pub async fn change_stock(
    app: &App,
    admin: &AdminUser,
    sku_id: i64,
    input: ChangeStock,
) -> Result<StockChanged, AppError> {
    let mut check = Check::default();
    check.text("reason", Some(&input.reason), 255, true);
    match (input.set, input.delta) {
        (Some(_), Some(_)) | (None, None) => check.fail("set", "give exactly one of `set` and `delta`"),
        (Some(set), None) => check.range("set", Some(set), 0, MAX_STOCK),
        (None, Some(delta)) => check.range("delta", Some(delta), -MAX_STOCK, MAX_STOCK),
    }
    check.done()?;
    let now = now_ms();
    let mut tx = app.db.begin_write().await?;
    let sku = store::find_sku(&mut tx, sku_id, app.db.dialect, true).await?.ok_or(AppError::not_found("sku"))?;
    let delta = match (input.set, input.delta) {
        (Some(set), _) => set - sku.stock,
        (_, Some(delta)) => delta,
        _ => 0,
    };
    let Some(stock) = store::add_stock(&mut tx, sku_id, delta, now).await? else {
        return Err(AppError::conflict("insufficient_stock", format!("sku {sku_id} has only {} in stock", sku.stock)));
    };
    if stock > MAX_STOCK {
        return Err(AppError::validation("delta", format!("stock would exceed {MAX_STOCK}")));
    }
    let reason = input.reason.trim();
    let adjustment = NewStockAdjustment { sku_id, admin_user_id: admin.id, delta, stock_after: stock, reason };
    let id = store::insert_stock_adjustment(&mut tx, &adjustment, now).await?;
    tx.commit().bounded().await?;
    app.cache.invalidate(&product_cache_key(sku.product_id)).await;
    tracing::info!(admin_id = admin.id, sku_id, delta, stock, "stock changed");
    Ok(StockChanged {
        sku_id,
        stock,
        adjustment: StockAdjustment {
            id,
            sku_id,
            admin_user_id: admin.id,
            delta,
            stock_after: stock,
            reason: reason.to_owned(),
            created_at: rfc3339(now),
        },
    })
}

pub async fn stock_history(app: &App, sku_id: i64) -> Result<StockAdjustmentList, AppError> {
    let items = store::list_stock_adjustments(&app.db.pool, sku_id, 100)
        .await?
        .into_iter()
        .map(|r| StockAdjustment {
            id: r.id,
            sku_id,
            admin_user_id: r.admin_user_id,
            delta: r.delta,
            stock_after: r.stock_after,
            reason: r.reason,
            created_at: rfc3339(r.created_at),
        })
        .collect();
    Ok(StockAdjustmentList { items })
}
