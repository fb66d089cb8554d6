//! Mini-program users: WeChat login (find or create by app id + openid), profile, phone binding, and the back
//! office's ban. The WeChat `session_key` is kept sealed in the database and never leaves the server.

pub mod admin_routes;
pub mod routes;
pub mod service;
pub mod store;
