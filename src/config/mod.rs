//! Typed, layered configuration: built-in defaults → `wxshop.toml` (optional) → `WXSHOP_*` environment variables.
//!
//! Nested keys come from the environment with a double underscore: `WXSHOP_DB__MAX_CONNECTIONS` sets
//! `db.max_connections`. Invalid configuration stops start-up with a message that names the key.

mod defaults;
mod secret;
mod sections;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

pub use secret::{ConfigError, DsnUrl, Secret};
pub use sections::*;

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
}

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
