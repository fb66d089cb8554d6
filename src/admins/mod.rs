//! Back-office accounts: argon2id password hashes, roles (`admin`, `operator`, `viewer`), login with a lockout
//! after repeated failures, sessions with their own token audience.

pub mod routes;
pub mod service;
pub mod store;
