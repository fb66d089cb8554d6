//! What serde cannot check: URL schemes, ranges, cross-key rules and production-mode refusals. Each message
//! names the offending key.

use super::*;

impl Config {
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
}
