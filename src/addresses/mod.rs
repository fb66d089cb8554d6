//! Shipping addresses of a user; exactly one of them is the default once there is any.

pub mod routes;
pub mod service;
pub mod store;
