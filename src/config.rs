//! Typed, layered configuration: built-in defaults → `wxshop.toml` (optional) → `WXSHOP_*` environment variables.
//!
//! Nested keys come from the environment with a double underscore: `WXSHOP_DB__MAX_CONNECTIONS` sets
//! `db.max_connections`. Invalid configuration stops start-up with a message that names the key.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// Run mode. `production` refuses unsafe defaults (demo data, simulators, weak secrets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Dev,
    Production,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

/// The whole configuration. Field names are the TOML keys; `WXSHOP_<KEY>` overrides each.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address of the public HTTP listener (`WXSHOP_LISTEN`).
    pub listen: SocketAddr,
    /// Address of the ops listener: `/metrics` and `/debug/*` (`WXSHOP_OPS_LISTEN`). Keep it off the internet.
    pub ops_listen: SocketAddr,
    /// Directory for the embedded database and local files (`WXSHOP_DATA_DIR`).
    pub data_dir: PathBuf,
    /// `sqlite://...` or `mysql://...` (MySQL 8 / MariaDB). Unset: `sqlite://<data_dir>/wxshop.db`.
    pub database_url: Option<DsnUrl>,
    /// `redis://...`. Unset: in-process cache and counters (a single instance).
    pub redis_url: Option<DsnUrl>,
    /// Prefix of every Redis key this instance writes, so several deployments (or tests) can share one Redis.
    pub redis_prefix: String,
    pub mode: Mode,
    pub db: DbConfig,
    pub http: HttpConfig,
    pub cache: CacheConfig,
    pub auth: AuthConfig,
    pub wechat: WechatConfig,
    pub admin: AdminConfig,
    pub orders: OrdersConfig,
    pub flash_sale: FlashSaleConfig,
    pub events: EventsConfig,
    pub reporting: ReportingConfig,
    /// WeChat Pay v3 (`pay.*`, env `WXSHOP_PAY__…`).
    pub pay: crate::payments::config::PayConfig,
    /// Object storage for uploads (`storage.*`, env `WXSHOP_STORAGE__…`).
    pub storage: crate::uploads::config::StorageConfig,
    /// The CDN purger (`cdn.*`, env `WXSHOP_CDN__…`).
    pub cdn: crate::uploads::config::CdnConfig,
    /// Feature flags (`flags.*`).
    pub flags: FlagsConfig,
    pub rate_limit: RateLimitConfig,
    pub log: LogConfig,
    /// Base URL of an OpenTelemetry OTLP/HTTP receiver, e.g. `http://127.0.0.1:4318` (`WXSHOP_OTEL_ENDPOINT`);
    /// spans go to `<url>/v1/traces` as protobuf. Unset: no export (log lines still carry trace ids).
    pub otel_endpoint: Option<String>,
    /// Share of new traces exported (0.0 to 1.0); a request whose `traceparent` says "sampled" always is.
    pub otel_sample_ratio: f64,
}

/// Orders: payment deadline, the timeout sweep, the order cache, idempotency keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrdersConfig {
    /// Unpaid orders are cancelled (and their stock returned) this long after creation.
    pub payment_timeout_secs: u64,
    /// How often the timeout sweep looks for expired unpaid orders.
    pub sweep_interval_ms: u64,
    /// Redis (level 2) lifetime of a cached order response, ±10%.
    pub cache_ttl_secs: u64,
    /// In-process (level 1) lifetime of a cached order response.
    pub local_cache_ttl_ms: u64,
    /// In-process (level 1) order cache size, in MiB (cached responses and their bookkeeping).
    pub local_cache_mib: u64,
    /// In-process (level 1) cache of users' first order-list pages, in MiB (responses and bookkeeping).
    pub list_cache_mib: u64,
    /// In-process (level 1) lifetime of a user's cached first order-list page. Pages are invalidated on every
    /// instance on each change to the user's orders; this only bounds a missed invalidation, within the 60 s that
    /// the page lives in Redis.
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

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            ops_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            redis_url: None,
            redis_prefix: "wxshop:".into(),
            mode: Mode::Dev,
            db: DbConfig {
                max_connections: None,
                min_connections: None,
                max_lifetime_secs: 30 * 60,
                idle_timeout_secs: 10 * 60,
                acquire_timeout_ms: 3_000,
                slow_statement_ms: 1_000,
                read_timeout_ms: None,
                write_timeout_ms: None,
                breaker_window_ms: 1_000,
                migrate_on_start: true,
                seed_demo: None,
            },
            http: HttpConfig {
                request_timeout_ms: 15_000,
                body_limit_bytes: 1024 * 1024,
                cors_origins: Vec::new(),
                shutdown_timeout_ms: 20_000,
                header_read_timeout_ms: 10_000,
            },
            cache: CacheConfig { catalog_ttl_secs: 60 },
            auth: AuthConfig {
                jwt_secret: Secret::new(DEV_JWT_SECRET),
                jwt_previous_keys: Vec::new(),
                issuer: "wxshop".into(),
                access_ttl_secs: 15 * 60,
                refresh_idle_ttl_secs: 7 * 24 * 3600,
                refresh_absolute_ttl_secs: 30 * 24 * 3600,
                refresh_grace_secs: 10,
                leeway_secs: MAX_LEEWAY_SECS,
                verified_token_cache: 20_000,
                data_key: Secret::new(DEV_DATA_KEY),
            },
            wechat: WechatConfig {
                app_id: None,
                app_secret: None,
                api_base: "https://api.weixin.qq.com".into(),
                timeout_ms: MAX_WECHAT_TIMEOUT_MS,
                subscribe_template_paid: None,
                subscribe_template_shipped: None,
            },
            admin: AdminConfig { lockout_failures: 10, lockout_window_secs: 15 * 60 },
            orders: OrdersConfig {
                payment_timeout_secs: 30 * 60,
                sweep_interval_ms: 5_000,
                cache_ttl_secs: 300,
                local_cache_ttl_ms: 5_000,
                local_cache_mib: 8,
                list_cache_mib: 24,
                list_local_cache_ttl_ms: 30_000,
                negative_cache_ttl_secs: 5,
                idempotency_ttl_secs: 24 * 3600,
                auto_complete_days: 10,
            },
            flash_sale: FlashSaleConfig {
                sold_out_recheck_ms: 1_000,
                worker_poll_ms: 200,
                claim_idle_ms: 15_000,
                reconcile_interval_secs: 30,
                max_attempts: 5,
                retry_base_ms: 1_000,
            },
            events: EventsConfig {
                kafka_brokers: None,
                topic_prefix: "wxshop.".into(),
                kafka_idempotence: true,
                retention_days: 7,
                relay_poll_ms: 200,
                max_attempts: 5,
            },
            reporting: ReportingConfig { queue_capacity: 1024, process_interval_ms: 500 },
            pay: crate::payments::config::PayConfig::default(),
            storage: crate::uploads::config::StorageConfig::default(),
            cdn: crate::uploads::config::CdnConfig::default(),
            flags: FlagsConfig { poll_ms: 250, stale_after_ms: 10_000, bootstrap_file: None },
            rate_limit: RateLimitConfig {
                window_ms: 1_000,
                purchase_per_user: 5,
                purchase_per_ip: 300,
                claim_per_user: 5,
                claim_per_ip: 300,
                track_per_user: 10,
                track_per_ip: 300,
                trust_forwarded_for: false,
            },

            log: LogConfig { filter: "info".into(), format: None },
            otel_endpoint: None,
            otel_sample_ratio: 1.0,
        }
    }
}

/// The database backend a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    Sqlite,
    MySql,
}

impl Config {
    /// Loads defaults, then `file` (when given, or `wxshop.toml` when it exists), then `WXSHOP_*` variables.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) => {
                if !path.exists() {
                    return Err(ConfigError(format!("config file {} does not exist", path.display())));
                }
                figment = figment.merge(Toml::file(path));
            }
            None => figment = figment.merge(Toml::file("wxshop.toml")),
        }
        figment = figment.merge(
            Env::prefixed("WXSHOP_")
                .split("__")
                // WXSHOP_CONFIG names the file; WXSHOP_TEST_* belong to the test suite.
                // Keys arrive in their original case (`TEST_DATABASE_URL`): compare lowercased.
                .filter(|key| {
                    let key = key.as_str().to_ascii_lowercase();
                    key != "config" && !key.starts_with("test_")
                }),
        );
        let config: Config = figment.extract().map_err(|e| ConfigError(describe_figment_error(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: URL schemes, ranges, production-mode rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(endpoint) = &self.otel_endpoint {
            let url = url::Url::parse(endpoint).ok().filter(|u| matches!(u.scheme(), "http" | "https"));
            if url.is_none() {
                return Err(ConfigError(
                    "invalid config key `otel_endpoint`: expected an http:// or https:// URL".into(),
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.otel_sample_ratio) {
            return Err(ConfigError("invalid config key `otel_sample_ratio`: expected 0.0 to 1.0".into()));
        }
        if let Some(url) = &self.database_url {
            db_kind(url.expose()).map_err(|m| ConfigError(format!("invalid config key `database_url`: {m}")))?;
        }
        if let Some(url) = &self.redis_url {
            let scheme = url.expose().split("://").next().unwrap_or_default();
            if scheme != "redis" && scheme != "rediss" {
                return Err(ConfigError("invalid config key `redis_url`: expected a redis:// or rediss:// URL".into()));
            }
            redis::Client::open(url.expose())
                .map_err(|e| ConfigError(format!("invalid config key `redis_url`: {e}")))?;
        }
        if let (Some(max), Some(min)) = (self.db.max_connections, self.db.min_connections) {
            if min > max {
                return Err(ConfigError(
                    "invalid config key `db.min_connections`: larger than db.max_connections".into(),
                ));
            }
        }
        crate::uploads::config::validate(&self.storage, &self.cdn, self.mode)?;
        if self.db.max_connections == Some(0) {
            return Err(ConfigError("invalid config key `db.max_connections`: must be at least 1".into()));
        }
        if self.http.request_timeout_ms == 0 {
            return Err(ConfigError("invalid config key `http.request_timeout_ms`: must be positive".into()));
        }
        for origin in &self.http.cors_origins {
            let valid = origin == "*"
                || ((origin.starts_with("https://") || origin.starts_with("http://"))
                    && axum::http::HeaderValue::from_str(origin).is_ok()
                    && !origin.ends_with('/'));
            if !valid {
                return Err(ConfigError(format!(
                    "invalid config key `http.cors_origins`: `{origin}` is not an origin like https://shop.example or *"
                )));
            }
        }
        if self.orders.payment_timeout_secs == 0 || self.orders.sweep_interval_ms == 0 {
            return Err(ConfigError(
                "invalid config key `orders.payment_timeout_secs`: timeouts must be positive".into(),
            ));
        }
        if self.orders.idempotency_ttl_secs < 24 * 3600 {
            return Err(ConfigError(
                "invalid config key `orders.idempotency_ttl_secs`: keys are kept at least 24 h".into(),
            ));
        }
        let flash = &self.flash_sale;
        for (key, value) in [
            ("http.header_read_timeout_ms", self.http.header_read_timeout_ms),
            ("db.read_timeout_ms", self.db.read_timeout_ms.unwrap_or(1)),
            ("db.write_timeout_ms", self.db.write_timeout_ms.unwrap_or(1)),
            ("db.breaker_window_ms", self.db.breaker_window_ms),
            ("flash_sale.worker_poll_ms", flash.worker_poll_ms),
            ("flash_sale.claim_idle_ms", flash.claim_idle_ms),
            ("flash_sale.reconcile_interval_secs", flash.reconcile_interval_secs),
            ("flash_sale.max_attempts", flash.max_attempts),
            ("flash_sale.retry_base_ms", flash.retry_base_ms),
            ("events.retention_days", self.events.retention_days),
            ("events.relay_poll_ms", self.events.relay_poll_ms),
            ("events.max_attempts", self.events.max_attempts),
            ("reporting.queue_capacity", self.reporting.queue_capacity),
            ("reporting.process_interval_ms", self.reporting.process_interval_ms),
            ("rate_limit.window_ms", self.rate_limit.window_ms),
        ] {
            if value == 0 {
                return Err(ConfigError(format!("invalid config key `{key}`: must be positive")));
            }
        }
        if self.redis_prefix.contains(['{', '}']) {
            return Err(ConfigError(
                "invalid config key `redis_prefix`: braces are reserved for Redis Cluster hash tags".into(),
            ));
        }
        self.validate_auth()?;
        self.validate_wechat()?;
        #[cfg(not(feature = "kafka"))]
        if self.events.kafka_brokers.is_some() {
            return Err(ConfigError(crate::events::bus::WITHOUT_KAFKA.into()));
        }
        self.pay.load_keys(self.mode)?;

        if self.mode == Mode::Production && self.seed_demo() {
            return Err(ConfigError(
                "invalid config key `db.seed_demo`: demo data is refused in production mode".into(),
            ));
        }
        Ok(())
    }

    fn validate_auth(&self) -> Result<(), ConfigError> {
        let auth = &self.auth;
        let key = |name: &str, why: &str| Err(ConfigError(format!("invalid config key `auth.{name}`: {why}")));
        if auth.jwt_secret.expose().len() < 32 {
            return key("jwt_secret", "must be at least 32 bytes");
        }
        if self.mode == Mode::Production && auth.jwt_secret.expose() == DEV_JWT_SECRET {
            return key("jwt_secret", "the development default is refused in production mode");
        }
        if auth.jwt_previous_keys.iter().any(|k| k.expose().len() < 32) {
            return key("jwt_previous_keys", "every key must be at least 32 bytes");
        }
        if self.data_key().is_err() {
            return key("data_key", "must be the base64 of exactly 32 bytes");
        }
        if self.mode == Mode::Production && auth.data_key.expose() == DEV_DATA_KEY {
            return key("data_key", "the development default is refused in production mode");
        }
        if auth.leeway_secs > MAX_LEEWAY_SECS {
            return key("leeway_secs", "must be at most 30");
        }
        if auth.access_ttl_secs == 0 || auth.refresh_idle_ttl_secs == 0 {
            return key("access_ttl_secs", "token lifetimes must be positive");
        }
        if auth.refresh_absolute_ttl_secs < auth.refresh_idle_ttl_secs {
            return key("refresh_absolute_ttl_secs", "must not be shorter than refresh_idle_ttl_secs");
        }
        Ok(())
    }

    fn validate_wechat(&self) -> Result<(), ConfigError> {
        let wechat = &self.wechat;
        if wechat.timeout_ms == 0 || wechat.timeout_ms > MAX_WECHAT_TIMEOUT_MS {
            return Err(ConfigError("invalid config key `wechat.timeout_ms`: must be between 1 and 3000".into()));
        }
        if wechat.app_id.is_some() != wechat.app_secret.is_some() {
            return Err(ConfigError(
                "invalid config key `wechat.app_secret`: set both wechat.app_id and wechat.app_secret".into(),
            ));
        }
        if self.mode == Mode::Production && wechat.app_id.is_none() {
            return Err(ConfigError(
                "invalid config key `wechat.app_id`: required in production mode (the WeChat simulator is for development only)".into(),
            ));
        }
        url::Url::parse(&wechat.api_base)
            .map_err(|e| ConfigError(format!("invalid config key `wechat.api_base`: {e}")))?;
        Ok(())
    }

    /// The 32-byte data key.
    pub fn data_key(&self) -> Result<Vec<u8>, String> {
        use base64::Engine;
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(self.auth.data_key.expose()).map_err(|e| e.to_string())?;
        if bytes.len() != 32 {
            return Err(format!("expected 32 bytes, got {}", bytes.len()));
        }
        Ok(bytes)
    }

    /// Whether the built-in WeChat simulator stands in for WeChat (dev mode, no app id configured).
    pub fn wechat_simulated(&self) -> bool {
        self.mode == Mode::Dev && self.wechat.app_id.is_none()
    }

    /// The effective database URL (the embedded SQLite file when none is configured).
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.expose().to_owned(),
            None => format!("sqlite://{}?mode=rwc", self.data_dir.join("wxshop.db").display()),
        }
    }

    pub fn db_kind(&self) -> DbKind {
        db_kind(&self.database_url()).expect("validated at load")
    }

    pub fn seed_demo(&self) -> bool {
        self.db.seed_demo.unwrap_or(self.mode == Mode::Dev)
    }

    pub fn log_format(&self) -> LogFormat {
        self.log.format.unwrap_or(match self.mode {
            Mode::Dev => LogFormat::Text,
            Mode::Production => LogFormat::Json,
        })
    }

    /// Where spans are sent: the configured base URL with `/v1/traces` appended (unless it is already there).
    pub fn otel_traces_url(&self) -> Option<String> {
        let base = self.otel_endpoint.as_deref()?.trim_end_matches('/');
        Some(if base.ends_with("/v1/traces") { base.to_owned() } else { format!("{base}/v1/traces") })
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.http.request_timeout_ms)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.http.shutdown_timeout_ms)
    }

    /// The configuration as TOML, secrets redacted: what `wxshop config` prints.
    pub fn to_redacted_toml(&self) -> String {
        let mut value = match toml::Value::try_from(self) {
            Ok(value) => value,
            Err(e) => return format!("# cannot render config: {e}"),
        };
        for (table, key) in SECRET_KEYS {
            let slot = match table {
                Some(t) => value.get_mut(t).and_then(|v| v.get_mut(key)),
                None => value.get_mut(key),
            };
            if let Some(slot) = slot {
                *slot = match slot {
                    toml::Value::Array(items) => {
                        toml::Value::Array(items.iter().map(|_| "[redacted]".into()).collect())
                    }
                    _ => "[redacted]".into(),
                };
            }
        }
        for key in ["database_url", "redis_url"] {
            if let Some(slot) = value.get_mut(key) {
                if let Some(url) = slot.as_str() {
                    *slot = DsnUrl::new(url).redacted().into();
                }
            }
        }
        toml::to_string_pretty(&value).unwrap_or_else(|e| format!("# cannot render config: {e}"))
    }
}

/// Keys whose values `wxshop config` never prints.
const SECRET_KEYS: &[(Option<&str>, &str)] = &[
    (Some("auth"), "jwt_secret"),
    (Some("auth"), "jwt_previous_keys"),
    (Some("auth"), "data_key"),
    (Some("wechat"), "app_secret"),
    (Some("pay"), "api_v3_key"),
    (Some("pay"), "previous_api_v3_key"),
    (Some("storage"), "secret_access_key"),
    (Some("cdn"), "secret_key"),
];

fn db_kind(url: &str) -> Result<DbKind, String> {
    match url.split("://").next().unwrap_or_default() {
        "sqlite" => Ok(DbKind::Sqlite),
        "mysql" | "mariadb" => Ok(DbKind::MySql),
        other => Err(format!("unsupported scheme `{other}` (expected sqlite:// or mysql://)")),
    }
}

/// Figment's messages already name the key and where it came from; keep them on one line.
fn describe_figment_error(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let source = e.metadata.as_ref().map(|m| m.name.to_string()).unwrap_or_default();
            let kind = e.kind.to_string();
            match (key.is_empty(), source.is_empty()) {
                (false, false) => format!("invalid config key `{key}` (from {source}): {kind}"),
                (false, true) => format!("invalid config key `{key}`: {kind}"),
                _ => format!("invalid config: {kind}"),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A secret value: `Debug` prints `[redacted]`, and `wxshop config` redacts it. (It serializes in the clear:
/// the layered loader builds its defaults by serializing `Config::default()`.)
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A configuration error; its message names the offending key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// A connection URL that may carry a password: `Debug` masks the password (`wxshop config` does too).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct DsnUrl(String);

impl DsnUrl {
    pub fn new(url: impl Into<String>) -> Self {
        DsnUrl(url.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut url) if url.password().is_some() => {
                let _ = url.set_password(Some("***"));
                url.to_string()
            }
            Ok(_) => self.0.clone(),
            Err(_) => "[unparseable url]".into(),
        }
    }
}

impl fmt::Debug for DsnUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsn_password_is_masked() {
        let url = DsnUrl::new("mysql://shop:s3cret@db.internal:3306/shop");
        assert_eq!(url.redacted(), "mysql://shop:***@db.internal:3306/shop");
        assert!(!format!("{url:?}").contains("s3cret"));
        let mut cfg = Config { database_url: Some(url), ..Config::default() };
        cfg.wechat.app_secret = Some(Secret::new("wechat-secret-value"));
        cfg.auth.jwt_previous_keys = vec![Secret::new("previous-key-value-previous-key-value")];
        let printed = cfg.to_redacted_toml();
        for secret in ["s3cret", DEV_JWT_SECRET, DEV_DATA_KEY, "wechat-secret-value", "previous-key-value"] {
            assert!(!printed.contains(secret), "{secret} printed:\n{printed}");
        }
        assert!(printed.contains("mysql://shop:***@db.internal:3306/shop"));
    }

    #[test]
    fn storage_and_cdn_secrets_are_redacted() {
        let mut cfg = Config::default();
        cfg.storage.secret_access_key = Some(Secret::new("storage-secret-value"));
        cfg.cdn.secret_key = Some(Secret::new("cdn-secret-value"));
        let printed = cfg.to_redacted_toml();
        assert!(!printed.contains("storage-secret-value") && !printed.contains("cdn-secret-value"), "{printed}");
        assert!(printed.contains("secret_access_key = \"[redacted]\""));
    }

    #[test]
    fn default_database_is_sqlite_in_data_dir() {
        let cfg = Config::default();
        assert_eq!(cfg.db_kind(), DbKind::Sqlite);
        assert!(cfg.database_url().starts_with("sqlite://./data/wxshop.db"));
    }

    #[test]
    fn unknown_scheme_names_the_key() {
        let cfg = Config { database_url: Some(DsnUrl::new("postgres://x/y")), ..Config::default() };
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("database_url"), "{err}");
    }

    fn production() -> Config {
        let mut cfg = Config { mode: Mode::Production, ..Config::default() };
        cfg.auth.jwt_secret = Secret::new("a-production-secret-of-at-least-32-bytes!");
        cfg.auth.data_key = Secret::new("cHJvZHVjdGlvbi1kYXRhLWtleS0zMi1ieXRlcy1sb24=");
        cfg.wechat.app_id = Some("wx0123456789".into());
        cfg.wechat.app_secret = Some(Secret::new("s"));
        cfg.pay = production_pay();
        cfg
    }

    /// A merchant with keys that are not the simulator's (generated once per test process).
    fn production_pay() -> crate::payments::config::PayConfig {
        use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
        let dir = DIR.get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("wxshop-pay-keys-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let mut rng = rand_core_compat();
            let merchant = rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap();
            let platform = rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap();
            std::fs::write(dir.join("merchant.pem"), merchant.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes())
                .unwrap();
            std::fs::write(
                dir.join("platform.pem"),
                platform.to_public_key().to_public_key_pem(LineEnding::LF).unwrap(),
            )
            .unwrap();
            dir
        });
        crate::payments::config::PayConfig {
            mch_id: Some("1900000109".into()),
            merchant_serial: Some("1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C".into()),
            merchant_key_file: Some(dir.join("merchant.pem")),
            api_v3_key: Some(Secret::new("a-real-32-byte-api-v3-key-000001")),
            public_key_id: Some("PUB_KEY_ID_0119000001092026120100000000000001".into()),
            public_key_file: Some(dir.join("platform.pem")),
            notify_url: Some("https://shop.example/api/v1/payments/wechat/notify".into()),
            ..crate::payments::config::PayConfig::default()
        }
    }

    fn rand_core_compat() -> rsa::rand_core::OsRng {
        rsa::rand_core::OsRng
    }

    #[test]
    fn production_refuses_demo_seed() {
        let mut cfg = production();
        assert!(cfg.validate().is_ok(), "production defaults do not seed: {:?}", cfg.validate());
        cfg.db.seed_demo = Some(true);
        assert!(cfg.validate().unwrap_err().to_string().contains("db.seed_demo"));
    }

    #[test]
    fn production_refuses_weak_or_default_secrets() {
        for (mutate, key) in [
            (
                Box::new(|c: &mut Config| c.auth.jwt_secret = Secret::new(DEV_JWT_SECRET)) as Box<dyn Fn(&mut Config)>,
                "auth.jwt_secret",
            ),
            (Box::new(|c: &mut Config| c.auth.jwt_secret = Secret::new("short")), "auth.jwt_secret"),
            (Box::new(|c: &mut Config| c.auth.data_key = Secret::new(DEV_DATA_KEY)), "auth.data_key"),
            (Box::new(|c: &mut Config| c.auth.data_key = Secret::new("dG9vIHNob3J0")), "auth.data_key"),
            (Box::new(|c: &mut Config| c.wechat.app_id = None), "wechat.app_id"),
            (Box::new(|c: &mut Config| c.auth.leeway_secs = 31), "auth.leeway_secs"),
            (Box::new(|c: &mut Config| c.wechat.timeout_ms = 5_000), "wechat.timeout_ms"),
            (Box::new(|c: &mut Config| c.pay.mch_id = None), "pay.mch_id"),
            (Box::new(|c: &mut Config| c.pay.api_v3_key = Some(Secret::new("short"))), "pay.api_v3_key"),
            (
                Box::new(|c: &mut Config| {
                    c.pay.api_v3_key = Some(Secret::new(crate::simulator::pay::keys::API_V3_KEY))
                }),
                "pay.api_v3_key",
            ),
            (
                Box::new(|c: &mut Config| c.pay.merchant_key_file = Some("/nonexistent/key.pem".into())),
                "pay.merchant_key_file",
            ),
            (Box::new(|c: &mut Config| c.pay.notify_url = Some("http://shop.example/n".into())), "pay.notify_url"),
            (Box::new(|c: &mut Config| c.pay.public_key_file = None), "pay.public_key_id"),
        ] {
            let mut cfg = production();
            mutate(&mut cfg);
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
        assert!(Config::default().validate().is_ok(), "dev defaults are valid");
        assert!(!format!("{:?}", production().auth).contains("production-secret"));
    }

    #[test]
    fn otel_endpoint_must_be_http_and_gets_the_traces_path() {
        let mut cfg = Config::default();
        assert_eq!(cfg.otel_traces_url(), None);
        for (endpoint, url) in [
            ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces"),
            ("https://collector.internal/", "https://collector.internal/v1/traces"),
            ("http://c:4318/v1/traces", "http://c:4318/v1/traces"),
        ] {
            cfg.otel_endpoint = Some(endpoint.into());
            assert!(cfg.validate().is_ok(), "{endpoint}");
            assert_eq!(cfg.otel_traces_url().as_deref(), Some(url));
        }
        for bad in ["grpc://c:4317", "127.0.0.1:4318", ""] {
            cfg.otel_endpoint = Some(bad.into());
            assert!(cfg.validate().unwrap_err().to_string().contains("otel_endpoint"), "{bad}");
        }
        cfg.otel_endpoint = None;
        cfg.otel_sample_ratio = 1.5;
        assert!(cfg.validate().unwrap_err().to_string().contains("otel_sample_ratio"));
    }
}
