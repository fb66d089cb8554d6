//! Catalog: categories, products and their SKUs (price in fen, stock), as the mini-program reads them.
//!
//! `routes` holds the handlers, `service` the rules (what is visible, how pages are cut), `store` the SQL,
//! `seed` the demo catalog used by the embedded default.

pub mod admin_routes;
pub mod categories;
pub mod check;
pub mod manage;
pub mod model;
pub mod routes;
pub mod seed;
pub mod service;
pub mod stock;
pub mod store;
