//! Values that must not leak: secrets, connection URLs with passwords, and the redacted rendering of the whole
//! configuration that `wxshop config` prints.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Config;

impl Config {
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
