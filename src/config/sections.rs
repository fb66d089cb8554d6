//! The configuration's sections (`[orders]`, `[auth]`, …): one struct each, with what every key means.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{LogFormat, Secret};

/// Orders: payment deadline, the timeout sweep, the order cache, idempotency keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrdersConfig {
    /// Unpaid orders are cancelled (and their stock returned) this long after creation.
    pub payment_timeout_secs: u64,
    /// How often the timeout sweep looks for expired unpaid orders.
    pub sweep_interval_ms: u64,
    /// Redis (level 2) lifetime of a cached order response and of a user's cached first order-list page, ±10%.
    /// Both are invalidated on every instance by each change to the order; this only bounds a missed invalidation.
    pub cache_ttl_secs: u64,
    /// In-process (level 1) lifetime of a cached order response.
    pub local_cache_ttl_ms: u64,
    /// In-process (level 1) order cache size, in MiB (cached responses and their bookkeeping).
    pub local_cache_mib: u64,
    /// In-process (level 1) cache of users' first order-list pages, in MiB (responses and bookkeeping).
    pub list_cache_mib: u64,
    /// In-process (level 1) lifetime of a user's cached first order-list page. Pages are invalidated on every
    /// instance on each change to the user's orders; this only bounds a missed invalidation, within the page's life
    /// in Redis (`cache_ttl_secs`).
    pub list_local_cache_ttl_ms: u64,
    /// How long "no such order" is cached.
    pub negative_cache_ttl_secs: u64,
    /// How long an Idempotency-Key and its response are kept.
    pub idempotency_ttl_secs: u64,
    /// A shipped order the buyer has not confirmed is completed this many days after shipping.
    pub auto_complete_days: u64,
}

/// Flash sales: the order hand-off worker, reclaiming work of dead instances, reconciliation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlashSaleConfig {
    /// How long a "sold out" is answered from memory before Redis (or the in-process gate) is asked again.
    pub sold_out_recheck_ms: u64,
    /// How often the order hand-off worker looks for new won purchases when idle.
    pub worker_poll_ms: u64,
    /// A won purchase handed to an instance that has not finished it after this long is taken over by another
    /// (the first one died).
    pub claim_idle_ms: u64,
    /// How often the reconciliation job runs on each instance.
    pub reconcile_interval_secs: u64,
    /// A won purchase whose order cannot be made is tried this many times, then parked as `failed`
    /// (reason `order_failed`) and its units go back to the sale.
    pub max_attempts: u64,
    /// The pause before the second attempt; it doubles with each further one (capped at 5 minutes).
    pub retry_base_ms: u64,
}

/// Requests allowed per window on the flash-sale purchase and coupon claim endpoints, per user and per client IP
/// (one shared count across instances in scale-out). 0 turns a limit off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub window_ms: u64,
    pub purchase_per_user: u64,
    pub purchase_per_ip: u64,
    pub claim_per_user: u64,
    pub claim_per_ip: u64,
    /// Event-report batches per window, per user (or anonymous id) and per IP.
    pub track_per_user: u64,
    pub track_per_ip: u64,
    /// Take the client IP from the first `X-Forwarded-For` entry (only behind a proxy that sets it).
    pub trust_forwarded_for: bool,
}

/// The development JWT key: refused in production mode.
pub const DEV_JWT_SECRET: &str = "wxshop-dev-jwt-secret-not-for-production-use";
/// The development data key (base64 of 32 bytes): refused in production mode.
pub const DEV_DATA_KEY: &str = "d3hzaG9wLWRldi1kYXRhLWtleS1ub3QtZm9yLXByb2Q=";
/// The longest clock skew accepted on token times.
pub const MAX_LEEWAY_SECS: u64 = 30;
/// The longest WeChat timeout accepted.
pub const MAX_WECHAT_TIMEOUT_MS: u64 = 3_000;

/// Tokens and secrets at rest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 key signing access tokens; at least 32 bytes in production.
    pub jwt_secret: Secret,
    /// Earlier keys, accepted for verification only while tokens signed with them expire (rotation).
    pub jwt_previous_keys: Vec<Secret>,
    /// `iss` of every token.
    pub issuer: String,
    pub access_ttl_secs: u64,
    /// A refresh token unused this long expires.
    pub refresh_idle_ttl_secs: u64,
    /// A login's refresh tokens all expire this long after the login, however used.
    pub refresh_absolute_ttl_secs: u64,
    /// A retired refresh token presented again within this window gets the same successor (a client retry);
    /// later, it revokes the whole family (reuse).
    pub refresh_grace_secs: u64,
    /// Clock skew tolerated on `exp`/`iat`, at most 30 s.
    pub leeway_secs: u64,
    /// Verified access tokens remembered per instance (keyed by a hash of the token, each until its `exp`), so a
    /// token's signature and claims are checked once, not on every request; the deny-list is still checked every
    /// time. 0 turns this off.
    pub verified_token_cache: u64,
    /// Base64 of 32 bytes: encrypts secrets at rest (WeChat session keys) and derives refresh-token successors.
    pub data_key: Secret,
}

/// The WeChat mini-program this shop serves. Without `app_id`, dev mode runs the built-in simulator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WechatConfig {
    pub app_id: Option<String>,
    pub app_secret: Option<Secret>,
    /// Base URL of the WeChat API (the simulator's, in dev mode without `app_id`).
    pub api_base: String,
    /// Connect and read timeout of each WeChat call, at most 3000.
    pub timeout_ms: u64,
    /// Subscribe-message (订阅消息) template sent when an order is paid; unset: none (the simulator's own in dev).
    pub subscribe_template_paid: Option<String>,
    /// Subscribe-message template sent when an order ships.
    pub subscribe_template_shipped: Option<String>,
}

/// Feature flags: how fast changes spread, when a snapshot counts as stale, where it is saved.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagsConfig {
    /// Every instance reads the one-row global version this often (and reloads when it moved).
    pub poll_ms: u64,
    /// Evaluations say `STALE` when the store has not been read for this long (values stay the last known).
    pub stale_after_ms: u64,
    /// Where each snapshot is saved for a start without the database. Unset: `<data_dir>/flags-snapshot.json`.
    pub bootstrap_file: Option<PathBuf>,
}

/// Client data reporting (数据上报).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportingConfig {
    /// Report requests waiting for the ingest writer, at most; more are answered 503 at once.
    pub queue_capacity: u64,
    /// How often the processor turns new events into the daily aggregates.
    pub process_interval_ms: u64,
}

/// The domain event bus: the outbox relay, its transport, the consumers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// Kafka bootstrap servers (`host:port,…`). Unset: no Kafka; events go to the database's own log and the
    /// in-process consumers. Needs a binary built with the `kafka` feature.
    pub kafka_brokers: Option<String>,
    /// Topics are `<topic_prefix><aggregate>` (`wxshop.order`), dead letters `<topic>.dlq`.
    pub topic_prefix: String,
    /// Kafka's idempotent producer (some hosted Kafkas refuse it).
    pub kafka_idempotence: bool,
    /// Published events (and consumers' inbox rows) are deleted after this many days.
    pub retention_days: u64,
    /// The relay's idle poll (it is also woken by each commit that records events).
    pub relay_poll_ms: u64,
    /// A message the transport refuses, or an event a consumer fails, is tried this often, then parked / dead-lettered.
    pub max_attempts: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Failed logins for one username within the window before logins are refused with 429.
    pub lockout_failures: u64,
    pub lockout_window_secs: u64,
}

/// Connection pool tuning and database behaviour. Unset pool sizes take a default that suits the backend.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbConfig {
    pub max_connections: Option<u32>,
    pub min_connections: Option<u32>,
    /// A connection is closed and replaced after this long, whatever its use.
    pub max_lifetime_secs: u64,
    /// An idle connection above `min_connections` is closed after this long.
    pub idle_timeout_secs: u64,
    /// How long a request waits for a pooled connection before failing with 503.
    pub acquire_timeout_ms: u64,
    /// Statements slower than this are logged at warn with their SQL text.
    pub slow_statement_ms: u64,
    /// Each statement of a GET/HEAD request gives up after this long (503 `database_unavailable`). Unset: 2 s on
    /// MySQL/MariaDB; 10 s on SQLite, whose writers queue for the file lock (up to 5 s) but never hang.
    pub read_timeout_ms: Option<u64>,
    /// Each statement of any other request or of a background worker gives up after this long; MySQL/MariaDB
    /// also stop it on the server and bound row-lock waits by it. Unset: 5 s on MySQL/MariaDB, 15 s on SQLite.
    pub write_timeout_ms: Option<u64>,
    /// After the database refuses connections (or several statements time out at once), statements fail at
    /// once for this long instead of each waiting.
    pub breaker_window_ms: u64,
    /// Apply the embedded migrations when the server starts.
    pub migrate_on_start: bool,
    /// Seed the demo catalog into an empty database at start. Unset: on in dev mode, off in production.
    pub seed_demo: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Requests running longer than this are answered 503 `request_timeout`.
    pub request_timeout_ms: u64,
    /// Larger request bodies are refused with 413 `payload_too_large`.
    pub body_limit_bytes: usize,
    /// Origins allowed by CORS. Empty: no CORS headers. `["*"]`: any origin.
    pub cors_origins: Vec<String>,
    /// On SIGTERM/SIGINT, in-flight requests get this long to finish before the server exits.
    pub shutdown_timeout_ms: u64,
    /// A connection must deliver a request's complete headers within this long, and an idle keep-alive
    /// connection is closed after this long without a new request (a slow or silent client holds nothing).
    pub header_read_timeout_ms: u64,
}

/// Response caching: in process (embedded) or in Redis (scale-out).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// How long catalog responses (categories, product detail) are cached; 0 turns the cache off.
    pub catalog_ttl_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `tracing` filter directives, e.g. `info,wxshop=debug`. `RUST_LOG` wins when set.
    pub filter: String,
    /// Unset: readable text in dev mode, JSON in production.
    pub format: Option<LogFormat>,
}
