//! Black-box API tests. One test binary; each test runs on every backend of `helpers::backends()`.

mod catalog;
mod cli;
mod health;
mod middleware;
mod openapi;
mod shutdown;

mod helpers;
