//! Coupon campaigns (抢券) and the coupons users claim from them: a quota that is never exceeded and a per-user
//! limit, under any concurrency and across instances (each claim locks its campaign row: the database decides);
//! coupons are spent by orders exactly once and come back when the order is cancelled.

pub mod admin_routes;
pub mod routes;
pub mod service;
pub mod store;
