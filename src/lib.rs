//! wxshop: the backend of a WeChat mini-program shop. One binary, embedded (SQLite, in-process) or scale-out
//! (MySQL/MariaDB + Redis), one code path.

pub mod addresses;
pub mod admins;
pub mod auth;
pub mod cache;
pub mod cart;
pub mod catalog;
pub mod cdn;
pub mod cli;
pub mod config;
pub mod counters;
pub mod coupons;
pub mod crypto;
pub mod db;
pub mod demo_data;
pub mod domain;
pub mod error;
pub mod events;
pub mod flags;
pub mod flash_sale;
pub mod http;
pub mod jobs;
pub mod kv;
pub mod ops;
pub mod orders;
pub mod payments;
pub mod rate_limit;
pub mod reporting;
pub mod simulator;
pub mod soldout;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod uploads;
pub mod users;
pub mod wechat;
