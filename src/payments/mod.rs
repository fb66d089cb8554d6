//! WeChat Pay API v3, end to end: the client, the shop's payment routes and notification handler, refunds and
//! after-sales, the payment worker and reconciliation.
//!
//! - `sign`, `crypto`, `certificates`: the protocol's signatures and ciphers (checked against the official
//!   vectors) and the keys we trust (WeChat Pay public key and/or platform certificates, by serial).
//! - `config`: `pay.*`, checked and loaded at start-up; `client`: real HTTP to `pay.api_base`.
//! - `service`: prepay, the active query, the one idempotent [`service::apply_transaction`], close before cancel.
//! - `notify`: the notification route's logic; `refunds`: after-sales; `worker`: poller, refunds, shipping info,
//!   auto-completion; `reconcile`: the daily trade bill.

pub mod admin_routes;
pub mod certificates;
pub mod client;
pub mod config;
pub mod crypto;
pub mod model;
pub mod notify;
pub mod reconcile;
pub mod refund_store;
pub mod refunds;
pub mod routes;
pub mod service;
pub mod sign;
pub mod store;
pub mod worker;

use std::sync::Arc;

/// What the shop needs to take payments, held in the app state.
pub struct Payments {
    pub client: client::PayClient,
    /// The mini-program's app id (payments are made in it).
    pub app_id: String,
    /// Where WeChat Pay sends notifications.
    pub notify_url: String,
    /// The keys in use (shared with the client).
    pub keys: Arc<config::PayKeys>,
}
