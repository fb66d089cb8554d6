//! Orders: creation from items or the cart with stock taken atomically (all or nothing) and Idempotency-Key
//! replay, a state machine with every transition recorded, the two-level order cache, keyset listing, the
//! durable timeout sweep, and the back office's view.
//!
//! `create` makes orders, `query` reads them, `lifecycle` moves them between states, `worker` cancels the unpaid
//! ones past their deadline, `store` holds the SQL, `routes`/`admin_routes` the handlers.

pub mod admin_routes;
pub mod create;
pub mod key_store;
pub mod lifecycle;
pub mod list_v2;
pub mod model;
pub mod query;
pub mod routes;
pub mod store;
pub mod worker;

use serde::Serialize;
use utoipa::ToSchema;

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    PendingPayment,
    Paid,
    Shipped,
    Completed,
    Cancelled,
    Refunding,
    Refunded,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 7] = [
        OrderStatus::PendingPayment,
        OrderStatus::Paid,
        OrderStatus::Shipped,
        OrderStatus::Completed,
        OrderStatus::Cancelled,
        OrderStatus::Refunding,
        OrderStatus::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::PendingPayment => "pending_payment",
            OrderStatus::Paid => "paid",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Completed => "completed",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Refunding => "refunding",
            OrderStatus::Refunded => "refunded",
        }
    }

    pub fn parse(s: &str) -> Option<OrderStatus> {
        OrderStatus::ALL.into_iter().find(|status| status.as_str() == s)
    }

    /// The state machine: `pending_payment → paid → shipped → completed`, `pending_payment → cancelled`,
    /// `paid | shipped → refunding → refunded`, and back from `refunding` to where it was after a partial or
    /// failed refund.
    pub fn can_become(self, to: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!(
            (self, to),
            (PendingPayment, Paid)
                | (PendingPayment, Cancelled)
                | (Paid, Shipped)
                | (Shipped, Completed)
                | (Paid, Refunding)
                | (Shipped, Refunding)
                | (Refunding, Refunded)
                | (Refunding, Paid)
                | (Refunding, Shipped)
        )
    }
}

/// An order changed: its cached response and its owner's cached first page of orders are dropped on every
/// instance. The owner is looked up by primary key; should that fail, the list expires within a minute anyway.
pub async fn changed(app: &crate::state::App, order_id: i64) {
    match store::owner_of(&app.db.pool, order_id).await {
        Ok(Some(user_id)) => changed_owned_by(app, order_id, user_id).await,
        owner => {
            if let Err(error) = owner {
                tracing::warn!(%error, order_id, "cannot find the order's owner to refresh their order list");
            }
            app.order_cache.invalidate(&query::cache_key(order_id)).await;
        }
    }
}

/// [`changed`] where the caller knows the owner (it just created the order): no lookup.
pub async fn changed_owned_by(app: &crate::state::App, order_id: i64, user_id: i64) {
    let (order, list) = (query::cache_key(order_id), user_id.to_string());
    crate::cache::layered::Layered::invalidate_together(&[(&app.order_cache, &order), (&app.order_lists, &list)]).await;
}

#[cfg(test)]
mod tests {
    use super::OrderStatus::{self, *};

    #[test]
    fn only_the_listed_transitions_are_legal() {
        let legal = [
            (PendingPayment, Paid),
            (PendingPayment, Cancelled),
            (Paid, Shipped),
            (Shipped, Completed),
            (Paid, Refunding),
            (Shipped, Refunding),
            (Refunding, Refunded),
            (Refunding, Paid),
            (Refunding, Shipped),
        ];
        for from in OrderStatus::ALL {
            for to in OrderStatus::ALL {
                assert_eq!(from.can_become(to), legal.contains(&(from, to)), "{from:?} -> {to:?}");
            }
            assert_eq!(OrderStatus::parse(from.as_str()), Some(from));
        }
    }
}
