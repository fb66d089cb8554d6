//! Reading orders: one order through the two-level cache (the serialized response, with its owner, so another
//! user's order is a 404 without a database read), and keyset-paginated lists.

use std::time::Duration;

use axum::body::Bytes;

use crate::db::rfc3339;
use crate::domain::{cut_page, Cursor, PageLimit};
use crate::error::AppError;
use crate::orders::create::item;
use crate::orders::model::{AdminOrder, AdminOrderPage, AdminOrderSummary, Order, OrderEvent, OrderPage, OrderSummary};
use crate::orders::store::{self, OrderFilter, OrderRow};
use crate::orders::OrderStatus;
use crate::state::App;

/// One order as its owner sees it: the cached response bytes, or 404 `order_not_found` (also for other users').
pub async fn get_for_user(app: &App, user_id: i64, id: i64) -> Result<Bytes, AppError> {
    let cached = app
        .order_cache
        .get_or_load(&id.to_string(), || async {
            let config = &app.config.orders;
            match load(app, id).await? {
                Some((owner, order)) => {
                    // Exactly sized: the level-1 cache keeps this allocation for the entry's life.
                    let json = serde_json::to_vec(&order).map_err(anyhow::Error::from)?;
                    let mut value = Vec::with_capacity(8 + json.len());
                    value.extend_from_slice(&owner.to_be_bytes());
                    value.extend_from_slice(&json);
                    Ok((Bytes::from(value), Duration::from_secs(config.cache_ttl_secs)))
                }
                // Negative caching: ids that do not exist cost one load per TTL, however often they are asked for.
                None => Ok((Bytes::from_static(&[0; 8]), Duration::from_secs(config.negative_cache_ttl_secs))),
            }
        })
        .await?;
    let (owner, body) = cached.split_at(8.min(cached.len()));
    let owner = i64::from_be_bytes(owner.try_into().unwrap_or([0; 8]));
    if owner != user_id || owner == 0 {
        return Err(AppError::not_found("order"));
    }
    Ok(cached.slice(8..8 + body.len()))
}

/// An order and its owner, from the database.
pub async fn load(app: &App, id: i64) -> Result<Option<(i64, Order)>, AppError> {
    let mut conn = app.db.pool.acquire().await?;
    let Some(row) = store::find_order(&mut conn, id).await? else { return Ok(None) };
    let items = store::items_of(&mut conn, id).await?;
    drop(conn);
    Ok(Some((row.user_id, order(row, items)?)))
}

pub fn order(row: OrderRow, items: Vec<store::ItemRow>) -> Result<Order, AppError> {
    let address = serde_json::from_str(&row.address)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("order {} has a malformed address: {e}", row.id)))?;
    Ok(Order {
        id: row.id,
        order_no: row.order_no,
        status: row.status,
        total_fen: row.total_fen,
        discount_fen: row.discount_fen,
        coupon_id: row.coupon_id,
        flash_sale_id: row.flash_sale_id,
        items: items.into_iter().map(item).collect(),

        address,
        remark: row.remark,
        created_at: rfc3339(row.created_at),
        pay_deadline: rfc3339(row.pay_deadline),
        carrier: row.carrier,
        tracking_no: row.tracking_no,
    })
}

/// A listing's parsed `status`, `limit` and `cursor`.
pub struct PageParams {
    pub status: Option<&'static str>,
    pub limit: u32,
    /// The (created_at, id) after which the page starts.
    pub after: Option<(i64, i64)>,
}

/// Parses `status`, `limit` and `cursor` of a listing.
pub fn page_params(status: Option<&str>, limit: Option<i64>, cursor: Option<&str>) -> Result<PageParams, AppError> {
    let status = match status {
        None | Some("") => None,
        Some(s) => {
            Some(OrderStatus::parse(s).ok_or_else(|| AppError::validation("status", "not an order status"))?.as_str())
        }
    };
    let limit = PageLimit::parse(limit)?.get();
    let after =
        cursor.filter(|c| !c.is_empty()).map(|c| Cursor::parse(c, 2)).transpose()?.map(|c| (c.keys()[0], c.keys()[1]));
    Ok(PageParams { status, limit, after })
}

/// A user's orders, newest first.
pub async fn list_for_user(
    app: &App,
    user_id: i64,
    status: Option<&str>,
    limit: Option<i64>,
    cursor: Option<&str>,
) -> Result<OrderPage, AppError> {
    let PageParams { status, limit, after } = page_params(status, limit, cursor)?;
    let filter = OrderFilter { user_id: Some(user_id), status, after, limit: limit + 1, ..OrderFilter::default() };
    let rows = store::list_orders(&app.db.pool, &filter).await?;
    let (rows, next_cursor) = cut_page(rows, limit, |r| vec![r.created_at, r.id]);
    let items = rows
        .into_iter()
        .map(|r| OrderSummary {
            id: r.id,
            order_no: r.order_no,
            status: r.status,
            total_fen: r.total_fen,
            created_at: rfc3339(r.created_at),
        })
        .collect();
    Ok(OrderPage { items, next_cursor })
}

/// The back office's order search; every field optional.
#[derive(Debug, Default)]
pub struct AdminSearch<'a> {
    pub status: Option<&'a str>,
    pub user_id: Option<i64>,
    pub order_no: Option<&'a str>,
    /// Created at or after (RFC 3339).
    pub from: Option<&'a str>,
    /// Created before (RFC 3339).
    pub to: Option<&'a str>,
    pub limit: Option<i64>,
    pub cursor: Option<&'a str>,
}

/// Orders of every user, newest first, by status, user, time range and order number.
pub async fn list_for_admin(app: &App, search: &AdminSearch<'_>) -> Result<AdminOrderPage, AppError> {
    let PageParams { status, limit, after } = page_params(search.status, search.limit, search.cursor)?;
    if search.user_id.is_some_and(|id| id < 1) {
        return Err(AppError::validation("user_id", "must be a positive id"));
    }
    let filter = OrderFilter {
        user_id: search.user_id,
        status,
        order_no: search.order_no.filter(|s| !s.is_empty()),
        created_from: parse_time("from", search.from)?,
        created_to: parse_time("to", search.to)?,
        after,
        limit: limit + 1,
    };
    let rows = store::list_orders(&app.db.pool, &filter).await?;
    let (rows, next_cursor) = cut_page(rows, limit, |r| vec![r.created_at, r.id]);
    let items = rows
        .into_iter()
        .map(|r| AdminOrderSummary {
            id: r.id,
            order_no: r.order_no,
            user_id: r.user_id,
            status: r.status,
            total_fen: r.total_fen,
            created_at: rfc3339(r.created_at),
        })
        .collect();
    Ok(AdminOrderPage { items, next_cursor })
}

/// One order as the back office sees it: with its owner and every state change.
pub async fn admin_view(app: &App, id: i64) -> Result<AdminOrder, AppError> {
    let (user_id, order) = load(app, id).await?.ok_or(AppError::not_found("order"))?;
    let events = store::events_of(&app.db.pool, id)
        .await?
        .into_iter()
        .map(|e| OrderEvent {
            from_status: e.from_status,
            to_status: e.to_status,
            actor: e.actor,
            at: rfc3339(e.created_at),
        })
        .collect();
    Ok(AdminOrder { order, user_id, events })
}

/// An optional RFC 3339 time as epoch milliseconds; a 422 naming `field` when it does not parse.
fn parse_time(field: &str, value: Option<&str>) -> Result<Option<i64>, AppError> {
    value.filter(|v| !v.is_empty()).map(|v| crate::db::parse_rfc3339(field, v)).transpose()
}
