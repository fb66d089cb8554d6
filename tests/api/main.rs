//! Black-box API tests. One test binary; each test runs on every backend of `helpers::backends()`.

mod admin;
mod after_sales;
mod background_faults;
mod catalog;
mod cli;
mod coupons;
mod deploy;
mod events;
#[cfg(feature = "kafka")]
#[cfg(feature = "kafka")]
mod events_exactly_once;
#[cfg(feature = "kafka")]
mod events_kafka;
mod flags;
mod flash_sales;
mod health;
mod identifiers;
mod input_hygiene;
mod login;
mod middleware;
mod openapi;
mod orders;
mod payment_crash;
mod payments;
mod reporting;
mod revocations;
mod secrets;
mod sessions;
mod shopping;
mod shutdown;
mod sick_database;
mod slow_clients;
mod telemetry;
mod tokens;
mod uploads;

mod helpers;
mod servers;
