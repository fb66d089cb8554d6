//! Creating orders. Prices come from the database, never from the client; the stock of every line is taken in
//! the same transaction as the order is written, all lines or none.
//!
//! `Idempotency-Key` as Stripe does it: the first request with a key claims it; the same key with the same body
//! replays the first response byte for byte; with another body it is a 422 `idempotency_key_mismatch`; while the
//! first is still running, a 409 `request_in_progress`. The response is stored in the order's own transaction,
//! so a claimed key without a stored response means no order was made: such a claim, once older than a request can
//! run, is taken over. Failed requests release their key, so the client may retry with it.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::http::StatusCode;
use serde::Deserialize;
use sqlx::pool::PoolConnection;
use sqlx::Any;
use utoipa::ToSchema;

use crate::addresses::service::Address;
use crate::addresses::store as address_store;
use crate::coupons;
use crate::db::Bounded;

use crate::crypto::sha256_hex;
use crate::db::{now_ms, rfc3339};
use crate::error::{AppError, FieldError};
use crate::http::extract::{from_json_value, parse_json_value};
use crate::orders::key_store;
use crate::orders::model::{Order, OrderItem};
use crate::orders::store::{self, ItemRow, NewOrder};
use crate::orders::OrderStatus;
use crate::state::App;

pub const MAX_LINES: usize = 50;
pub const MAX_QUANTITY: i64 = 999;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineInput {
    pub sku_id: i64,
    pub quantity: i64,
}

/// Either `items` or `"from_cart": true`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrder {
    pub items: Option<Vec<LineInput>>,
    #[serde(default)]
    pub from_cart: bool,
    pub address_id: i64,
    pub remark: Option<String>,
    /// One of the user's unused coupons: checked (validity, minimum spend) and spent with the order.
    pub coupon_id: Option<i64>,
}

/// Runs an order creation under an idempotency key; returns the status and the exact response body.
pub async fn create_idempotent(
    app: &App,
    user_id: i64,
    key: Option<&str>,
    body: &[u8],
) -> Result<(StatusCode, Bytes), AppError> {
    let key = check_idempotency_key(key)?;
    let value = parse_json_value(body)?;
    // serde_json maps are ordered by key: the same JSON in any key order or spacing has one fingerprint.
    let hash = sha256_hex(value.to_string().as_bytes());
    let request: CreateOrder = from_json_value(value)?;

    let ttl_ms = app.config.orders.idempotency_ttl_secs as i64 * 1_000;
    let stale_after_ms = app.config.http.request_timeout_ms as i64 + 5_000;
    let pool = &app.db.pool;
    // The claim and then the order's transaction on one connection: one trip to the pool, not two.
    let mut conn = pool.acquire().bounded().await?;
    let mut now = now_ms();
    if !key_store::claim_key(&mut conn, app.db.dialect, user_id, key, &hash, now, now + ttl_ms).await? {
        key_store::delete_key_if_expired(&mut conn, user_id, key, now).await?;
        let claimed = key_store::claim_key(&mut conn, app.db.dialect, user_id, key, &hash, now, now + ttl_ms).await?;
        if !claimed {
            let Some(existing) = key_store::find_key(&mut conn, user_id, key).await? else {
                return Err(in_progress());
            };
            if existing.request_hash != hash {
                return Err(AppError::Validation(vec![FieldError::new(
                    "Idempotency-Key",
                    "this key was used with a different request body",
                )])
                .with_code("idempotency_key_mismatch"));
            }
            if existing.state == "done" {
                let status =
                    StatusCode::from_u16(existing.response_status.unwrap_or(201) as u16).unwrap_or(StatusCode::CREATED);
                metrics::counter!("idempotent_replays_total").increment(1);
                return Ok((status, Bytes::from(existing.response_body.unwrap_or_default())));
            }
            now = now_ms();
            let abandoned = now - existing.created_at > stale_after_ms && existing.expires_at > now;
            if !(abandoned
                && key_store::retake_key(&mut conn, user_id, key, existing.created_at, now, now + ttl_ms).await?)
            {
                return Err(in_progress());
            }
        }
    }
    // The order's transaction takes the connection and gives it back to the pool when it ends: before the cache
    // work (a slow Redis must not hold it) and before the release below takes one (an embedded database may have a
    // single connection). A retry after a deadlock takes another.
    let mut conn = Some(conn);
    let mut attempt = 1;
    let made = loop {
        let made = async {
            let conn = match conn.take() {
                Some(conn) => conn,
                None => pool.acquire().bounded().await?,
            };
            create_on(app, conn, user_id, &request, Some(key)).await
        };
        match made.await {
            Err(error) if crate::db::again(&error, &mut attempt, crate::db::TRANSACTION_ATTEMPTS).await => {}
            made => break made,
        }
    };
    match made {
        Ok((id, body)) => {
            created(app, id, user_id).await;
            Ok((StatusCode::CREATED, body))
        }
        Err(error) => {
            if let Err(e) = key_store::release_key(pool, user_id, key).await {
                // The database is sick: free the key as soon as it answers, so a retry is not refused as
                // `request_in_progress` until the claim goes stale.
                tracing::warn!(error = %e, "could not release an idempotency key; retrying in the background");
                release_later(app, user_id, key.to_owned(), stale_after_ms);
            }
            Err(error)
        }
    }
}

/// Retries releasing a claimed key (every 250 ms, until the claim would go stale anyway). The failed request's
/// transaction never committed, so its claim is all that is left; a claim that turned `done` (the commit reached
/// the database after all) is kept by `release_key`.
fn release_later(app: &App, user_id: i64, key: String, for_ms: i64) {
    let db = app.db.clone();
    let work = async move {
        let deadline = now_ms() + for_ms;
        while now_ms() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            if key_store::release_key(&db.pool, user_id, &key).await.is_ok() {
                tracing::info!(user_id, "released an idempotency key after the database recovered");
                return;
            }
        }
    };
    tokio::spawn(crate::db::guard::scope(app.db.write_guard(), work));
}

/// The `Idempotency-Key` header: required, 1 to 255 visible ASCII characters.
pub fn check_idempotency_key(key: Option<&str>) -> Result<&str, AppError> {
    let key = key.ok_or_else(|| AppError::invalid_parameter("the Idempotency-Key header is required"))?;
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AppError::invalid_parameter("Idempotency-Key must be 1 to 255 visible ASCII characters"));
    }
    Ok(key)
}

fn in_progress() -> AppError {
    AppError::conflict("request_in_progress", "a request with this Idempotency-Key is still being processed")
}

/// Merges duplicate lines and validates quantities.
fn lines(items: Vec<LineInput>) -> Result<BTreeMap<i64, i64>, AppError> {
    let mut fields = Vec::new();
    if items.is_empty() || items.len() > MAX_LINES {
        fields.push(FieldError::new("items", format!("between 1 and {MAX_LINES} lines")));
    }
    let mut merged = BTreeMap::new();
    for (i, line) in items.iter().enumerate() {
        if !(1..=MAX_QUANTITY).contains(&line.quantity) {
            fields
                .push(FieldError::new(format!("items[{i}].quantity"), format!("must be between 1 and {MAX_QUANTITY}")));
        }
        *merged.entry(line.sku_id).or_insert(0) += line.quantity;
    }
    if fields.is_empty() {
        Ok(merged)
    } else {
        Err(AppError::Validation(fields))
    }
}

/// Makes the order in one transaction and returns its serialized response (stored with the key when given).
pub async fn create(app: &App, user_id: i64, request: &CreateOrder, key: Option<&str>) -> Result<Bytes, AppError> {
    let conn = app.db.pool.acquire().bounded().await?;
    let (id, body) = create_on(app, conn, user_id, request, key).await?;
    created(app, id, user_id).await;
    Ok(body)
}

/// After the commit, with the connection back in the pool (a slow Redis must not hold it): a "no such order" may be
/// cached for the new id (someone probed it), and the owner's first page lacks it; drop both.
async fn created(app: &App, id: i64, user_id: i64) {
    crate::orders::changed_owned_by(app, id, user_id).await;
    metrics::counter!("orders_created_total").increment(1);
}

/// [`create`]'s transaction on a connection the caller acquired: the new order's id and its response.
async fn create_on(
    app: &App,
    conn: PoolConnection<Any>,
    user_id: i64,
    request: &CreateOrder,
    key: Option<&str>,
) -> Result<(i64, Bytes), AppError> {
    let remark = request.remark.clone().unwrap_or_default();
    if let Some(problem) = crate::domain::human_text_problem(&remark, 200, false) {
        return Err(AppError::validation("remark", problem));
    }
    if request.items.is_some() == request.from_cart {
        return Err(AppError::validation("items", "give either `items` or `\"from_cart\": true`"));
    }
    let now = now_ms();
    let mut tx = app.db.begin_write_on(conn).await?;
    let wanted = match &request.items {
        Some(items) => lines(items.iter().map(|l| LineInput { sku_id: l.sku_id, quantity: l.quantity }).collect())?,
        None => {
            let cart = crate::cart::store::items(&mut tx, user_id).await?;
            if cart.is_empty() {
                return Err(AppError::validation("from_cart", "the cart is empty"));
            }
            lines(cart.into_iter().map(|(sku_id, quantity)| LineInput { sku_id, quantity }).collect())?
        }
    };
    let address =
        address_store::find_owned(&mut tx, user_id, request.address_id).await?.ok_or(AppError::not_found("address"))?;

    let sku_ids: Vec<i64> = wanted.keys().copied().collect();
    let skus = store::skus_for_order(&mut tx, &sku_ids).await?;
    let mut items = Vec::with_capacity(skus.len());
    let mut total: i64 = 0;
    for sku_id in &sku_ids {
        let sku = skus.iter().find(|s| s.sku_id == *sku_id);
        let Some(sku) = sku.filter(|s| s.purchasable) else {
            return Err(AppError::conflict("sku_unavailable", format!("sku {sku_id} is not for sale")));
        };
        let quantity = wanted[sku_id];
        if sku.stock < quantity {
            return Err(insufficient_stock(*sku_id, sku.stock, quantity));
        }
        total = sku
            .price_fen
            .checked_mul(quantity)
            .and_then(|line| total.checked_add(line))
            .ok_or_else(|| AppError::validation("items", "the total is too large"))?;
        items.push(ItemRow {
            sku_id: *sku_id,
            product_id: sku.product_id,
            title: sku.title.clone(),
            sku_title: sku.sku_title.clone(),
            price_fen: sku.price_fen,
            quantity,
        });
    }
    let items_total = total;
    let discount = match request.coupon_id {
        Some(coupon_id) => coupons::service::discount_for(&mut tx, user_id, coupon_id, items_total, now).await?,
        None => 0,
    };
    let total = items_total - discount;
    let address = Address::from(address);
    let address_json = crate::addresses::service::snapshot(address.clone())?;
    let pay_deadline = now + app.config.orders.payment_timeout_secs as i64 * 1_000;
    let status = OrderStatus::PendingPayment.as_str();
    let mut new = NewOrder {
        order_no: store::order_number(now),
        user_id,
        status,
        total_fen: total,
        address: &address_json,
        remark: &remark,
        pay_deadline,
        flash_sale_id: None,
        coupon_id: request.coupon_id,
        discount_fen: discount,
    };
    let id = store::insert_order(&mut tx, &mut new, now).await?;
    if let Some(coupon_id) = request.coupon_id {
        // Conditional on `unused`: of concurrent orders with one coupon, exactly one gets here first.
        if !coupons::store::mark_used(&mut tx, coupon_id, user_id, id, now).await? {
            return Err(AppError::conflict("coupon_used", "this coupon has been used"));
        }
    }
    store::insert_items(&mut tx, id, &items).await?;
    store::insert_event(&mut tx, id, None, status, &format!("user:{user_id}"), now).await?;
    let mut events = vec![store::order_created(id, &new, &items)];
    if request.from_cart {
        store::remove_from_cart(&mut tx, user_id, &sku_ids).await?;
    }
    let order = Order {
        id,
        order_no: new.order_no,
        status: status.to_owned(),
        total_fen: total,
        discount_fen: discount,
        coupon_id: request.coupon_id,
        flash_sale_id: None,
        items: items.into_iter().map(item).collect(),
        address,
        remark,
        created_at: rfc3339(now),
        pay_deadline: rfc3339(pay_deadline),
        carrier: None,
        tracking_no: None,
    };
    let body = serde_json::to_string(&order).map_err(anyhow::Error::from)?;
    if let Some(key) = key {
        key_store::complete_key(&mut tx, user_id, key, 201, &body).await?;
    }
    // The stock last, just before the commit: a best seller's SKU row is what every order of a promotion locks, so
    // each holds that lock for its own statement, the events' and the commit, not for the whole order. Ascending
    // SKU order: every order transaction locks these rows in the same order. Should a line fall short now, the
    // transaction rolls back with everything it wrote.
    for line in &order.items {
        let Some(taken) = store::take_stock(&mut tx, line.sku_id, line.quantity, now, "order").await? else {
            let left = skus.iter().find(|s| s.sku_id == line.sku_id).map_or(0, |s| s.stock);
            return Err(insufficient_stock(line.sku_id, left, line.quantity));
        };
        events.push(taken);
    }
    // `order.created` and each line's `sku.stock_changed`, in one statement after the changes they describe.
    crate::events::record_all(&mut tx, events).await?;
    tx.commit().bounded().await?;
    Ok((id, Bytes::from(body)))
}

fn insufficient_stock(sku_id: i64, left: i64, wanted: i64) -> AppError {
    AppError::conflict("insufficient_stock", format!("sku {sku_id} has {} left, {wanted} wanted", left.min(wanted - 1)))
}

pub fn item(row: ItemRow) -> OrderItem {
    OrderItem {
        sku_id: row.sku_id,
        product_id: row.product_id,
        title: row.title,
        sku_title: row.sku_title,
        price_fen: row.price_fen,
        quantity: row.quantity,
    }
}
