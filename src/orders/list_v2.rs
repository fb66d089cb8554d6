//! The order list, second implementation, behind the flag `orders.list_v2` (the seed's strangler switch: the slow
//! order query gets a new path, released to a percentage of users, the old one kept until the new one has proved
//! itself). This is the seed's own remedy: the first page of a user's orders (no status filter) is cached aside in
//! the two-level cache (in process, then Redis), and every change to one of that user's orders invalidates it on
//! every instance (`orders::changed`). Later pages and status filters take the first implementation.

use std::time::Duration;

use axum::body::Bytes;
use serde::{Deserialize, Serialize};

use crate::db::rfc3339;
use crate::domain::cut_page;
use crate::error::AppError;
use crate::orders::model::{OrderPage, OrderSummary};
use crate::orders::query::{self, page_params, PageParams};
use crate::orders::store::{self, OrderFilter};
use crate::state::App;

/// The flag that selects this implementation, per user (sticky percentage rollout).
pub const FLAG: &str = "orders.list_v2";
/// Rows kept per user: the largest page, and one more to know whether there is a next page.
const CACHED_ROWS: u32 = 101;
/// Bounds how long a list can be stale should an invalidation ever be missed (a failed owner lookup).
const TTL: Duration = Duration::from_secs(60);

#[derive(Serialize, Deserialize)]
struct Row {
    id: i64,
    order_no: String,
    status: String,
    total_fen: i64,
    created_at: i64,
}

pub async fn list_for_user(
    app: &App,
    user_id: i64,
    status: Option<&str>,
    limit: Option<i64>,
    cursor: Option<&str>,
) -> Result<OrderPage, AppError> {
    let PageParams { status: parsed_status, limit: page, after } = page_params(status, limit, cursor)?;
    if parsed_status.is_some() || after.is_some() {
        return query::list_for_user(app, user_id, status, limit, cursor).await;
    }
    let cached = app
        .order_lists
        .get_or_load(&user_id.to_string(), || async {
            let filter = OrderFilter { user_id: Some(user_id), limit: CACHED_ROWS, ..OrderFilter::default() };
            let rows: Vec<Row> = store::list_orders(&app.db.pool, &filter)
                .await?
                .into_iter()
                .map(|r| Row {
                    id: r.id,
                    order_no: r.order_no,
                    status: r.status,
                    total_fen: r.total_fen,
                    created_at: r.created_at,
                })
                .collect();
            Ok((Bytes::from(serde_json::to_vec(&rows).map_err(anyhow::Error::from)?), TTL))
        })
        .await?;
    let mut rows: Vec<Row> = serde_json::from_slice(&cached).map_err(anyhow::Error::from)?;
    rows.truncate(page as usize + 1);
    let (rows, next_cursor) = cut_page(rows, page, |r| vec![r.created_at, r.id]);
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
