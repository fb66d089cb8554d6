//! The one application state every handler receives: pools, clients and configuration.

use std::ops::Deref;
use std::sync::Arc;

use axum::body::Bytes;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::revocation::Revocations;
use crate::auth::tokens::TokenKeys;
use crate::cache::layered::Layered;
use crate::cache::Cache;
use crate::config::Config;
use crate::counters::Counters;
use crate::crypto::SecretBox;
use crate::db::Db;
use crate::flash_sale::gate::Gate;
use crate::kv::Redis;
use crate::soldout::SoldOut;
use crate::wechat::WechatClient;

pub struct App {
    pub config: Arc<Config>,
    pub db: Db,
    /// `None` in the embedded mode: process-local structures stand in for Redis.
    pub redis: Option<Redis>,
    /// Response cache: moka in process, or Redis when configured.
    pub cache: Cache,
    /// Order responses: in process, then Redis in scale-out, invalidated on every instance.
    pub order_cache: Arc<Layered>,
    /// First pages of users' order lists (`orders.list_v2`), invalidated on every change to their orders.
    pub order_lists: Arc<Layered>,
    /// Feature flags: the in-memory snapshot every evaluation reads.
    pub flags: crate::flags::Flags,
    /// Login-failure counters (and later rate limits): in process, or Redis when configured.
    pub counters: Counters,
    /// Access-token keys.
    pub tokens: TokenKeys,
    /// The deny-list of tokens, sessions and banned subjects.
    pub revocations: Revocations,
    /// Seals secrets stored in the database (WeChat session keys).
    pub secret_box: SecretBox,
    /// Derives refresh-token successors (from `auth.data_key`).
    pub refresh_key: Vec<u8>,
    /// Checked when an admin username does not exist, so that costs what a wrong password costs. Computed on
    /// first need, not at start-up (an argon2 hash takes tens of milliseconds).
    pub dummy_password_hash: tokio::sync::OnceCell<String>,
    pub wechat: WechatClient,
    /// The domain event bus's transport and consumer state.
    pub events: crate::events::bus::Bus,
    /// The reporting ingest writer's queue.
    pub ingest: crate::reporting::ingest::Ingest,
    /// Wakes the report processor when reports were stored.
    pub reporting_wake: tokio::sync::Notify,
    /// Wakes the outbox relay when a commit recorded events.
    pub events_wake: tokio::sync::Notify,
    /// WeChat Pay: the client (against WeChat Pay or the simulator) and the keys.
    pub pay: crate::payments::Payments,
    /// The upload bucket: a directory served at `/files` (embedded) or an S3-compatible store.
    pub storage: crate::uploads::storage::Storage,
    /// The CDN purger's provider client (`None` with `cdn.provider = "none"`).
    pub cdn: Option<crate::cdn::CdnClient>,
    /// Flash-sale decisions: a Lua script in Redis, or in process.
    pub flash_gate: Gate,
    /// Wakes the flash-sale hand-off worker when a purchase is won.
    pub flash_wake: tokio::sync::Notify,
    /// What is known to be sold out, for a moment.
    pub sold_out: SoldOut,
    pub metrics: PrometheusHandle,
    /// Background workers' last passes, for `/debug/tasks`.
    pub heartbeats: crate::ops::Heartbeats,
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
