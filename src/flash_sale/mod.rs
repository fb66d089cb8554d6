//! Flash sales (秒杀): a few hundred units at a special price for tens of thousands of buyers, never oversold,
//! never over a buyer's limit, on one instance or many.
//!
//! - `gate`: the atomic decision (a Lua script in Redis, or the in-process equivalent) and the durable hand-off.
//! - `purchase`: the buyer's attempt (202 queued or 409 why not) and its status.
//! - `handoff`: the background worker that turns won purchases into orders at the sale's price.
//! - `reconcile`: Redis back into agreement with the database; unsold units back to the SKU after the sale.
//! - `service`: the back office (create, change before start, end early) and the public list.
//!
//! Stock: creating a sale moves its units out of the SKU's ordinary stock; a cancelled or timed-out flash order
//! gives its units back to the sale, and what is left when the sale is over goes back to the SKU.

pub mod admin_routes;
pub mod gate;
pub mod handoff;
pub mod purchase;
pub mod reconcile;
pub mod routes;
pub mod service;
pub mod store;
