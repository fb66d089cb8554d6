//! The purchase decision: window, stock, the buyer's count, all checked and changed in one atomic step.
//!
//! Two implementations, chosen at start-up:
//! - **Redis** (scale-out): one Lua script per decision over the sale's keys, which share the hash tag
//!   `{fs:<id>}` (one Redis Cluster slot). A won decision is recorded (`decided`) and handed off on the sale's
//!   stream in the same script, so it cannot be lost between deciding and queueing; orders are made from the
//!   stream by a consumer group (see `handoff`).
//! - **Local** (embedded, one instance): the same checks in process under the sale's lock; a won decision is
//!   written to `flash_purchase` as `queued` before it counts, and that table is the hand-off queue.
//!
//! The database is the truth either way: a purchase `queued` or `created` holds units, `failed` or `released`
//! does not. Redis is rebuilt from it when its keys are gone, and `reconcile` brings them back into agreement.
//!
//! `local.rs` holds the embedded gate, `redis_gate.rs` the scale-out one and its Lua scripts.

use crate::db::Db;
use crate::error::AppError;
use crate::flash_sale::store::{PurchaseRow, SaleRow};
use crate::kv::Redis;

mod local;
mod redis_gate;
mod redis_queue;

pub use self::local::LocalGate;
pub use self::redis_gate::{Decided, RedisGate, SaleKeys};
pub use self::redis_queue::QueuedEntry;

/// Redis keeps a sale's keys this long after it closes (orders made from it can be cancelled for a while).
const KEEP_AFTER_CLOSE_MS: i64 = 7 * 24 * 3600 * 1_000;
/// The consumer group that turns won purchases into orders.
pub const GROUP: &str = "orders";

/// One purchase attempt.
pub struct Attempt<'a> {
    pub sale_id: i64,
    pub user_id: i64,
    pub quantity: i64,
    pub address_id: i64,
    pub key: &'a str,
    pub now: i64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Won {
        purchase_id: String,
        remaining: i64,
    },
    /// The same user and Idempotency-Key won before: the first purchase (to compare the request with).
    Replay {
        purchase_id: String,
        quantity: i64,
        address_id: i64,
    },
    SoldOut {
        remaining: i64,
    },
    LimitReached,
    NotStarted,
    Ended,
    /// The gate does not know this sale (no such sale, or Redis has not been primed with it).
    Unknown,
}

pub enum Gate {
    Local(LocalGate),
    Redis(Box<RedisGate>),
}

/// A new purchase id; it starts with the sale id so a status lookup knows the sale's keys.
pub fn new_purchase_id(sale_id: i64) -> String {
    format!("{sale_id}-{}", uuid::Uuid::new_v4().simple())
}

/// The sale a purchase id belongs to.
pub fn sale_of(purchase_id: &str) -> Option<i64> {
    let (sale, rest) = purchase_id.split_once('-')?;
    if rest.len() != 32 || !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    sale.parse().ok().filter(|id| *id > 0)
}

impl Gate {
    pub fn new(redis: Option<Redis>) -> Gate {
        match redis {
            Some(redis) => Gate::Redis(Box::new(RedisGate::new(redis))),
            None => Gate::Local(LocalGate::default()),
        }
    }

    pub async fn decide(&self, db: &Db, attempt: &Attempt<'_>) -> Result<Decision, AppError> {
        match self {
            Gate::Local(local) => local.decide(db, attempt).await,
            Gate::Redis(redis) => Ok(redis.decide(attempt).await?),
        }
    }

    /// Makes the gate know `sale` (Redis: built from the database when its keys are missing).
    pub async fn prime(&self, db: &Db, sale: &SaleRow) -> Result<bool, AppError> {
        match self {
            Gate::Local(local) => local.reload(db, sale.id).await.map(|_| true),
            Gate::Redis(redis) => redis.init(db, sale).await,
        }
    }

    /// After an admin change to the sale's stock, limit or window.
    pub async fn refresh(&self, db: &Db, sale: &SaleRow) -> Result<(), AppError> {
        match self {
            Gate::Local(local) => local.reload(db, sale.id).await,
            Gate::Redis(redis) => {
                if !redis.sync(sale).await? {
                    redis.init(db, sale).await?;
                }
                Ok(())
            }
        }
    }

    /// The purchase no longer holds its units (order failed or cancelled; the database says so already).
    pub async fn release(&self, db: &Db, purchase: &PurchaseRow) -> Result<(), AppError> {
        match self {
            Gate::Local(local) => local.reload(db, purchase.sale_id).await,
            Gate::Redis(redis) => redis.settle(purchase, false).await.map(|_| ()).map_err(AppError::from),
        }
    }

    /// What is left of each sale, where the gate knows it.
    pub async fn remaining(&self, db: &Db, sales: &[SaleRow]) -> Result<Vec<Option<i64>>, AppError> {
        match self {
            Gate::Local(local) => {
                let mut left = Vec::with_capacity(sales.len());
                for sale in sales {
                    left.push(local.remaining(db, sale.id).await?);
                }
                Ok(left)
            }
            Gate::Redis(redis) => Ok(redis.remaining(sales).await?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purchase_ids_carry_their_sale() {
        let id = new_purchase_id(42);
        assert_eq!(sale_of(&id), Some(42));
        assert_eq!(sale_of("42"), None);
        assert_eq!(sale_of("x-0123456789abcdef0123456789abcdef"), None);
        assert_eq!(sale_of("42-short"), None);
        assert_eq!(sale_of("0-0123456789abcdef0123456789abcdef"), None);
    }
}
