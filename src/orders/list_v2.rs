//! The order list, second implementation, behind the flag `orders.list_v2` (the seed's strangler switch: the slow
//! order query gets a new path, released to a percentage of users, the old one kept until the new one has proved
//! itself). This is the seed's own remedy: the page a user sees first (no status filter, no cursor, the default
//! size) is cached aside, rendered, in the two-level cache (in process, then Redis), and every change to one of
//! that user's orders invalidates it on every instance (`orders::changed`). A page read while its user shops is
//! refreshed in the background before it expires ([`Layered::get_or_refresh`]), so such readers never wait for the
//! query. Other pages take the first implementation's query.
//!
//! [`Layered::get_or_refresh`]: crate::cache::layered::Layered::get_or_refresh
//!
//! Migration 0011 rolls the flag out to everyone; an operator can still lower the rollout or kill it, which sends
//! users back to the first implementation at once.

use std::time::Duration;

use axum::body::Bytes;

use crate::domain::PageLimit;
use crate::error::AppError;
use crate::orders::query::{self, page_params, PageParams};
use crate::state::AppState;

/// The flag that selects this implementation, per user (sticky percentage rollout).
pub const FLAG: &str = "orders.list_v2";

/// The page as response bytes (`OrderPage` JSON).
pub async fn list_for_user(
    app: &AppState,
    user_id: i64,
    status: Option<&str>,
    limit: Option<i64>,
    cursor: Option<&str>,
) -> Result<Bytes, AppError> {
    let PageParams { status: parsed_status, limit: page, after } = page_params(status, limit, cursor)?;
    if parsed_status.is_some() || after.is_some() || page != PageLimit::DEFAULT {
        let page = query::list_for_user(app, user_id, status, limit, cursor).await?;
        return Ok(Bytes::from(serde_json::to_vec(&page).map_err(anyhow::Error::from)?));
    }
    let mut key = itoa::Buffer::new();
    // Its life in Redis is an order's (`orders.cache_ttl_secs`): both are dropped by every change to the order, so
    // the life only bounds an invalidation that was missed (a failed owner lookup, Redis failing both passes). Each
    // hot page runs the query once per life; at 60 s that was ~130 queries/s for 10,000 shoppers, and at 5M orders
    // each costs 0.35–0.5 ms of MariaDB's core (bench/RESULTS.md, twelfth pass).
    let ttl = Duration::from_secs(app.config.orders.cache_ttl_secs);
    let owned = app.clone();
    app.order_lists
        .get_or_refresh(key.format(user_id), move || async move {
            let first = query::list_for_user(&owned, user_id, None, None, None).await?;
            // Copied to an exactly sized buffer: the level-1 cache keeps it for the entry's life.
            let json = serde_json::to_vec(&first).map_err(anyhow::Error::from)?;
            Ok((Bytes::copy_from_slice(&json), ttl))
        })
        .await
}
