//! Reading orders: one order through the two-level cache (the serialized response, with its owner, so another
//! user's order is a 404 without a database read), and keyset-paginated lists.

use std::time::Duration;

use axum::body::Bytes;

use crate::db::rfc3339;
use crate::domain::{Cursor, PageLimit};
use crate::error::AppError;
use crate::orders::create::item;
use crate::orders::model::{Order, OrderPage, OrderSummary};
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
                    let mut value = owner.to_be_bytes().to_vec();
                    value.extend(serde_json::to_vec(&order).map_err(anyhow::Error::from)?);
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

/// The next page's cursor: the (created_at, id) of the last row, when there may be more.
pub fn next_cursor(rows: &[OrderRow], limit: u32) -> Option<String> {
    (rows.len() > limit as usize)
        .then(|| rows.get(limit as usize - 1))
        .flatten()
        .map(|r| Cursor::new(vec![r.created_at, r.id]).encode())
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
    let next_cursor = next_cursor(&rows, limit);
    let items = rows
        .into_iter()
        .take(limit as usize)
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
