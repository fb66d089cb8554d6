//! The buyer's side: a purchase attempt, decided at once (202 queued, or 409 with the reason), and its status
//! while the order is made in the background.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::now_ms;
use crate::error::{AppError, FieldError};
use crate::flash_sale::gate::{self, Attempt, Decision, Gate};
use crate::flash_sale::service::MAX_PER_USER;
use crate::flash_sale::store;
use crate::http::extract::parse_json;
use crate::soldout::Kind;
use crate::state::App;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Purchase {
    pub quantity: i64,
    /// Where the order goes; checked when the order is made (a purchase with someone else's or a deleted
    /// address fails with `address_not_found` and its units go back to the sale).
    pub address_id: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PurchaseAccepted {
    pub purchase_id: String,
    /// Always `queued`: the order is being made; poll the purchase.
    pub status: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PurchaseStatus {
    pub purchase_id: String,
    pub flash_sale_id: i64,
    pub quantity: i64,
    /// `queued`, `created` (see `order_id`) or `failed` (see `reason`).
    pub status: String,
    pub order_id: Option<i64>,
    /// Why it failed: `address_not_found`, `address_invalid` (too long to ship to), `sku_unavailable`,
    /// `sale_closed`, `duplicate_key`, or `order_failed` (the order could not be made in `flash_sale.max_attempts`
    /// attempts; the units went back to the sale).
    pub reason: Option<String>,
}

/// Answered from memory when the sale is known to be sold out: no Redis, no database.
pub fn sold_out_fast(app: &App, sale_id: i64) -> Result<(), AppError> {
    if app.sold_out.is_sold_out(Kind::FlashSale, sale_id) {
        metrics::counter!("flash_sale_attempts_total", "outcome" => "sold_out_fast").increment(1);
        return Err(sold_out());
    }
    Ok(())
}

fn sold_out() -> AppError {
    AppError::conflict("sold_out", "this flash sale is sold out")
}

pub async fn attempt(
    app: &App,
    user_id: i64,
    sale_id: i64,
    key: &str,
    body: &[u8],
) -> Result<PurchaseAccepted, AppError> {
    let request: Purchase = parse_json(body)?;
    if request.address_id <= 0 {
        return Err(AppError::not_found("address"));
    }
    let mut fields = Vec::new();
    if !(1..=MAX_PER_USER).contains(&request.quantity) {
        fields.push(FieldError::new("quantity", format!("1 to {MAX_PER_USER}")));
    }
    if !fields.is_empty() {
        return Err(AppError::Validation(fields));
    }
    let attempt =
        Attempt { sale_id, user_id, quantity: request.quantity, address_id: request.address_id, key, now: now_ms() };
    let mut decision = app.flash_gate.decide(&app.db, &attempt).await?;
    if decision == Decision::Unknown {
        // Redis has not seen this sale (new, or its keys were lost): build them from the database, once.
        let mut conn = app.db.pool.acquire().await?;
        let sale = store::find_sale(&mut conn, sale_id).await?.ok_or(AppError::not_found("flash_sale"))?;
        drop(conn);
        app.flash_gate.prime(&app.db, &sale).await?;
        decision = app.flash_gate.decide(&app.db, &attempt).await?;
    }
    let outcome = match &decision {
        Decision::Won { .. } => "won",
        Decision::Replay { .. } => "replay",
        Decision::SoldOut { .. } => "sold_out",
        Decision::LimitReached => "limit_reached",
        Decision::NotStarted => "not_started",
        Decision::Ended => "ended",
        Decision::Unknown => "unknown",
    };
    metrics::counter!("flash_sale_attempts_total", "outcome" => outcome).increment(1);
    match decision {
        Decision::Won { purchase_id, remaining } => {
            if remaining <= 0 {
                app.sold_out.mark(Kind::FlashSale, sale_id);
            }
            app.flash_wake.notify_one();
            Ok(PurchaseAccepted { purchase_id, status: "queued".into() })
        }
        Decision::Replay { purchase_id, quantity, address_id } => {
            if quantity != request.quantity || address_id != request.address_id {
                return Err(AppError::Validation(vec![FieldError::new(
                    "Idempotency-Key",
                    "this key was used with a different request body",
                )])
                .with_code("idempotency_key_mismatch"));
            }
            Ok(PurchaseAccepted { purchase_id, status: "queued".into() })
        }
        Decision::SoldOut { remaining } => {
            if remaining <= 0 {
                app.sold_out.mark(Kind::FlashSale, sale_id);
            }
            Err(sold_out())
        }
        Decision::LimitReached => {
            Err(AppError::conflict("limit_reached", "you have bought as many as this sale allows per buyer"))
        }
        Decision::NotStarted => Err(AppError::conflict("not_started", "this flash sale has not started yet")),
        Decision::Ended => Err(AppError::conflict("ended", "this flash sale has ended")),
        Decision::Unknown => Err(AppError::not_found("flash_sale")),
    }
}

/// The buyer's purchase; another user's (or an unknown id) is 404 `purchase_not_found`.
pub async fn status(app: &App, user_id: i64, purchase_id: &str) -> Result<PurchaseStatus, AppError> {
    let sale_id = gate::sale_of(purchase_id).ok_or(AppError::not_found("purchase"))?;
    let mut conn = app.db.pool.acquire().await?;
    let row = store::find_purchase(&mut conn, purchase_id, None).await?;
    drop(conn);
    if let Some(row) = row {
        if row.user_id != user_id {
            return Err(AppError::not_found("purchase"));
        }
        let status = match row.status.as_str() {
            "queued" => "queued",
            "failed" => "failed",
            // `released`: the order was made, then cancelled.
            _ => "created",
        };
        return Ok(PurchaseStatus {
            purchase_id: row.id,
            flash_sale_id: row.sale_id,
            quantity: row.quantity,
            status: status.into(),
            order_id: row.order_id,
            reason: row.reason,
        });
    }
    // Scale-out: won, but its order not made yet; the decision is only in Redis so far.
    if let Gate::Redis(gate) = &app.flash_gate {
        if let Some(d) = gate.decided(sale_id, purchase_id).await?.filter(|d| d.user_id == user_id) {
            let held = d.state == "held";
            return Ok(PurchaseStatus {
                purchase_id: purchase_id.to_owned(),
                flash_sale_id: sale_id,
                quantity: d.quantity,
                status: if held { "queued" } else { "failed" }.into(),
                order_id: None,
                reason: (!held).then(|| "duplicate_key".to_owned()),
            });
        }
    }
    Err(AppError::not_found("purchase"))
}
