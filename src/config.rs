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
use serde::{Deserialize, Serialize, Serializer};

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
    pub log: LogConfig,
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
                migrate_on_start: true,
                seed_demo: None,
            },
            http: HttpConfig {
                request_timeout_ms: 15_000,
                body_limit_bytes: 1024 * 1024,
                cors_origins: Vec::new(),
                shutdown_timeout_ms: 20_000,
            },
            cache: CacheConfig { catalog_ttl_secs: 60 },
            log: LogConfig { filter: "info".into(), format: None },
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
                .filter(|key| key != "config" && !key.as_str().starts_with("test_")),
        );
        let config: Config = figment.extract().map_err(|e| ConfigError(describe_figment_error(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: URL schemes, ranges, production-mode rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
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
        if self.mode == Mode::Production && self.seed_demo() {
            return Err(ConfigError(
                "invalid config key `db.seed_demo`: demo data is refused in production mode".into(),
            ));
        }
        Ok(())
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

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.http.request_timeout_ms)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.http.shutdown_timeout_ms)
    }

    /// The configuration as TOML, secrets redacted: what `wxshop config` prints.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}"))
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

/// A configuration error; its message names the offending key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// A connection URL that may carry a password: `Debug` and `Serialize` mask the password.
#[derive(Clone, Deserialize, PartialEq, Eq)]
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

impl Serialize for DsnUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
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
        let cfg = Config { database_url: Some(url), ..Config::default() };
        assert!(!cfg.to_redacted_toml().contains("s3cret"));
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

    #[test]
    fn production_refuses_demo_seed() {
        let mut cfg = Config { mode: Mode::Production, ..Config::default() };
        assert!(cfg.validate().is_ok(), "production defaults do not seed");
        cfg.db.seed_demo = Some(true);
        assert!(cfg.validate().unwrap_err().to_string().contains("db.seed_demo"));
    }
}
