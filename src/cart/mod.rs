//! The shopping cart: SKUs and quantities per user, shown with current prices and stock.

pub mod routes;
pub mod service;
pub mod store;
