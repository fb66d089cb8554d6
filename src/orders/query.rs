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

/// The order cache's key for an order. The letter names the entry's encoding: a new encoding gets a new letter, so
/// instances of two versions sharing one Redis never read each other's entries.
pub fn cache_key(order_id: i64) -> String {
    format!("p{order_id}")
}

/// One order as its owner sees it: the cached order rendered as JSON, or 404 `order_not_found` (also for other
/// users').
///
/// A cache entry is the owner (8 bytes, big-endian; 0 for "no such order") and the order in postcard, a compact
/// binary form (no field names, integers as varints: 265 bytes where the JSON of a two-line order is 704), so
/// level 1 holds two to three times the orders per MiB; each read renders the JSON again.
pub async fn get_for_user(app: &App, user_id: i64, id: i64) -> Result<Vec<u8>, AppError> {
    let cached = app
        .order_cache
        .get_or_load(&cache_key(id), || async {
            let config = &app.config.orders;
            match load(app, id).await? {
                Some((owner, order)) => Ok((encode_entry(owner, &order)?, Duration::from_secs(config.cache_ttl_secs))),
                // Negative caching: ids that do not exist cost one load per TTL, however often they are asked for.
                None => Ok((Bytes::from_static(&[0; 8]), Duration::from_secs(config.negative_cache_ttl_secs))),
            }
        })
        .await?;
    // The owner first: another user's order (or a "no such order" entry) is a 404 without decoding the order.
    match entry_owner(&cached)? {
        Some(owner) if owner == user_id => {
            serde_json::to_vec(&decode_entry(&cached)?).map_err(|e| anyhow::Error::from(e).into())
        }
        _ => Err(AppError::not_found("order")),
    }
}

fn encode_entry(owner: i64, order: &Order) -> Result<Bytes, AppError> {
    let value = owner.to_be_bytes().to_vec();
    let value = postcard::to_extend(order, value).map_err(|e| anyhow::anyhow!("encoding order {}: {e}", order.id))?;
    // Exactly sized: level 1 keeps this allocation for the entry's life.
    Ok(Bytes::from(value.into_boxed_slice()))
}

/// A cache entry's owner and its encoded order; an error for an entry too short to have an owner.
fn split_entry(entry: &[u8]) -> Result<(i64, &[u8]), AppError> {
    let Some((owner, order)) = entry.split_first_chunk::<8>() else {
        return Err(anyhow::anyhow!("order cache entry of {} bytes", entry.len()).into());
    };
    Ok((i64::from_be_bytes(*owner), order))
}

/// The owner of a cache entry; `None` for a "no such order" entry.
fn entry_owner(entry: &[u8]) -> Result<Option<i64>, AppError> {
    Ok(Some(split_entry(entry)?.0).filter(|owner| *owner != 0))
}

/// The order of a cache entry that has one (see [`entry_owner`]).
fn decode_entry(entry: &[u8]) -> Result<Order, AppError> {
    postcard::from_bytes(split_entry(entry)?.1).map_err(|e| anyhow::anyhow!("decoding a cached order: {e}").into())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addresses::service::Address;
    use crate::orders::model::OrderItem;

    fn sample() -> Order {
        let line = |sku_id, title: &str| OrderItem {
            sku_id,
            product_id: sku_id / 10,
            title: title.into(),
            sku_title: "500g 礼盒装".into(),
            price_fen: 12_900,
            quantity: 2,
        };
        Order {
            id: 123_456,
            order_no: "2026120201020312345678".into(),
            status: "shipped".into(),
            total_fen: 24_800,
            discount_fen: 1_000,
            coupon_id: Some(77),
            flash_sale_id: None,
            items: vec![line(1001, "云南小粒咖啡豆"), line(2002, "龙井绿茶 \"明前\"")],
            address: Address {
                id: 9,
                recipient: "张三".into(),
                phone: "13800138000".into(),
                province: "浙江省".into(),
                city: "杭州市".into(),
                district: "西湖区".into(),
                detail: "文三路 1 号".into(),
                is_default: true,
            },
            remark: String::new(),
            created_at: "2026-12-02T01:02:03.456Z".into(),
            pay_deadline: "2026-12-02T01:32:03.456Z".into(),
            carrier: Some("SF".into()),
            tracking_no: None,
        }
    }

    /// What a reader gets from a cache entry is exactly the order's JSON, and the entry is much smaller than it.
    #[test]
    fn a_cached_order_renders_the_same_json_from_fewer_bytes() {
        let order = sample();
        let entry = encode_entry(42, &order).unwrap();
        assert_eq!(entry_owner(&entry).unwrap(), Some(42));
        let decoded = decode_entry(&entry).unwrap();
        let json = serde_json::to_vec(&order).unwrap();
        assert_eq!(serde_json::to_vec(&decoded).unwrap(), json);
        assert!(entry.len() * 10 < json.len() * 7, "entry {} bytes, JSON {} bytes", entry.len(), json.len());
    }

    #[test]
    fn a_no_such_order_entry_and_a_damaged_one_are_told_apart() {
        assert_eq!(entry_owner(&[0; 8]).unwrap(), None);
        assert!(entry_owner(&[0; 3]).is_err());
        assert!(decode_entry(&[0; 3]).is_err(), "too short for an owner: an error, not a panic");
        let entry = encode_entry(42, &sample()).unwrap();
        assert!(decode_entry(&entry[..entry.len() - 5]).is_err(), "a truncated entry is an error, not an order");
    }
}
