//! The one application state every handler receives: pools, clients and configuration.

use std::ops::Deref;
use std::sync::Arc;

use axum::body::Bytes;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::cache::Cache;
use crate::config::Config;
use crate::db::Db;
use crate::kv::Redis;

pub struct App {
    pub config: Arc<Config>,
    pub db: Db,
    /// `None` in the embedded mode: process-local structures stand in for Redis.
    pub redis: Option<Redis>,
    /// Response cache: moka in process, or Redis when configured.
    pub cache: Cache,
    pub metrics: PrometheusHandle,
    /// The OpenAPI document, rendered once at start-up.
    pub openapi_json: Bytes,
}

#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}
