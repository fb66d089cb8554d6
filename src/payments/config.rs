//! `pay.*`: the merchant's WeChat Pay v3 settings, checked at start-up, and the keys they name, loaded once.
//!
//! Without `pay.mch_id`, dev mode uses the built-in simulator and its fixed keys (`simulator::pay::keys`);
//! production mode requires a merchant and refuses every simulator key, a v3 key that is not 32 bytes and a PEM
//! that cannot be read or parsed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, Mode, Secret};
use crate::payments::crypto::{ApiV3Key, MerchantKey, WechatPayKey};
use crate::payments::sign::Merchant;
use crate::simulator::pay::keys as sim;

/// The real API host.
pub const DEFAULT_API_BASE: &str = "https://api.mch.weixin.qq.com";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayConfig {
    /// Base URL of WeChat Pay API v3 (`WXSHOP_PAY__API_BASE`).
    pub api_base: String,
    /// The merchant id (商户号). Unset in dev mode: the built-in simulator.
    #[serde(default, deserialize_with = "digits_as_text")]
    pub mch_id: Option<String>,
    /// Serial number of the merchant API certificate (uppercase hex).
    #[serde(default, deserialize_with = "digits_as_text")]
    pub merchant_serial: Option<String>,
    /// The merchant API private key, PKCS#8 PEM (`apiclient_key.pem`).
    pub merchant_key_file: Option<PathBuf>,
    /// The API v3 key: exactly 32 bytes; decrypts notifications.
    #[serde(default, deserialize_with = "digits_as_secret")]
    pub api_v3_key: Option<Secret>,
    /// The previous API v3 key, still tried while notifications sealed with it may arrive (rotation).
    #[serde(default, deserialize_with = "digits_as_secret")]
    pub previous_api_v3_key: Option<Secret>,
    /// Public-key mode: the WeChat Pay public key's id (`PUB_KEY_ID_…`) and its PEM file.
    pub public_key_id: Option<String>,
    pub public_key_file: Option<PathBuf>,
    /// Certificate mode: a directory of platform certificates (PEM). Both modes may be set during a migration.
    pub platform_certificates_dir: Option<PathBuf>,
    /// The public HTTPS URL of `POST /api/v1/payments/wechat/notify`. Unset in dev mode: this server's own.
    pub notify_url: Option<String>,
    /// Connect and read timeout of each WeChat Pay call.
    pub timeout_ms: u64,
    /// A pending payment without a notification is queried this long after its prepay, then with backoff.
    pub poll_after_secs: u64,
    /// How often the payment worker (poller, closes, refunds, shipping uploads, auto-completion) runs.
    pub worker_interval_ms: u64,
    /// `GET /api/v1/orders/{id}/payment` asks WeChat at most once per order in this window.
    pub query_min_interval_ms: u64,
}

/// Text that may be all digits: an environment variable like `WXSHOP_PAY__MCH_ID=1900000109` arrives as a number.
struct Digits;

impl<'de> serde::de::Visitor<'de> for Digits {
    type Value = Option<String>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string (or digits)")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(v.to_owned()))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }

    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }

    fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(Digits)
    }
}

fn digits_as_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    d.deserialize_option(Digits)
}

fn digits_as_secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    Ok(digits_as_text(d)?.map(Secret::new))
}

impl Default for PayConfig {
    fn default() -> Self {
        PayConfig {
            api_base: DEFAULT_API_BASE.into(),
            mch_id: None,
            merchant_serial: None,
            merchant_key_file: None,
            api_v3_key: None,
            previous_api_v3_key: None,
            public_key_id: None,
            public_key_file: None,
            platform_certificates_dir: None,
            notify_url: None,
            timeout_ms: 5_000,
            poll_after_secs: 60,
            worker_interval_ms: 5_000,
            query_min_interval_ms: 2_000,
        }
    }
}

/// The keys and names the client and the notify handler use (`Debug` shows no key material).
#[derive(Debug)]
pub struct PayKeys {
    /// Who signs our requests: merchant id, API certificate serial, private key.
    pub merchant: Merchant,
    /// Current first.
    pub api_v3_keys: Vec<ApiV3Key>,
    /// Serial or `PUB_KEY_ID_…` → key.
    pub trusted: HashMap<String, WechatPayKey>,
    /// Sent as `Wechatpay-Serial`, so responses are signed with a key we trust (the public key when configured).
    pub accept_serial: String,
    /// Whether these are the simulator's keys.
    pub simulated: bool,
}

fn bad(key: &str, why: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("invalid config key `pay.{key}`: {why}"))
}

fn read(key: &str, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| bad(key, format!("cannot read {}: {e}", path.display())))
}

impl PayConfig {
    /// Whether the simulator stands in for WeChat Pay: dev mode without a merchant.
    pub fn simulated(&self, mode: Mode) -> bool {
        mode == Mode::Dev && self.mch_id.is_none()
    }

    /// Checks the settings and loads the keys they name (files are read here, so a bad one stops start-up).
    pub fn load_keys(&self, mode: Mode) -> Result<PayKeys, ConfigError> {
        for (key, value) in [
            ("timeout_ms", self.timeout_ms),
            ("poll_after_secs", self.poll_after_secs),
            ("worker_interval_ms", self.worker_interval_ms),
        ] {
            if value == 0 {
                return Err(bad(key, "must be positive"));
            }
        }
        url::Url::parse(&self.api_base).map_err(|e| bad("api_base", e))?;
        if let Some(url) = &self.notify_url {
            check_notify_url(url, mode)?;
        }
        let Some(mch_id) = &self.mch_id else {
            if mode == Mode::Production {
                return Err(bad(
                    "mch_id",
                    "required in production mode (the WeChat Pay simulator is for development only)",
                ));
            }
            return Ok(simulator_keys());
        };
        if mch_id.is_empty() || mch_id.len() > 32 || !mch_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("mch_id", "expected the merchant id's digits"));
        }
        let serial = self.merchant_serial.clone().ok_or_else(|| bad("merchant_serial", "required with pay.mch_id"))?;
        if serial.is_empty() || !serial.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("merchant_serial", "expected the certificate serial in hex"));
        }
        let key_file =
            self.merchant_key_file.as_ref().ok_or_else(|| bad("merchant_key_file", "required with pay.mch_id"))?;
        let merchant_key = MerchantKey::from_pkcs8_pem(&read("merchant_key_file", key_file)?)
            .map_err(|e| bad("merchant_key_file", e))?;
        let v3 = self.api_v3_key.as_ref().ok_or_else(|| bad("api_v3_key", "required with pay.mch_id"))?;
        let mut api_v3_keys =
            vec![ApiV3Key::new(v3.expose().as_bytes()).map_err(|_| bad("api_v3_key", "must be exactly 32 bytes"))?];
        if let Some(previous) = &self.previous_api_v3_key {
            api_v3_keys.push(
                ApiV3Key::new(previous.expose().as_bytes())
                    .map_err(|_| bad("previous_api_v3_key", "must be exactly 32 bytes"))?,
            );
        }
        let mut trusted = HashMap::new();
        let mut accept_serial = None;
        match (&self.public_key_id, &self.public_key_file) {
            (Some(id), Some(file)) => {
                if !id.starts_with("PUB_KEY_ID_") {
                    return Err(bad("public_key_id", "expected PUB_KEY_ID_…"));
                }
                let key = WechatPayKey::from_public_key_pem(&read("public_key_file", file)?)
                    .map_err(|e| bad("public_key_file", e))?;
                trusted.insert(id.clone(), key);
                accept_serial = Some(id.clone());
            }
            (None, None) => {}
            _ => return Err(bad("public_key_id", "set both pay.public_key_id and pay.public_key_file")),
        }
        if let Some(dir) = &self.platform_certificates_dir {
            let certificates =
                crate::payments::certificates::load_dir(dir).map_err(|e| bad("platform_certificates_dir", e))?;
            if certificates.is_empty() {
                return Err(bad("platform_certificates_dir", format!("no certificate (*.pem) in {}", dir.display())));
            }
            for (serial, key) in certificates {
                accept_serial.get_or_insert_with(|| serial.clone());
                trusted.insert(serial, key);
            }
        }
        let Some(accept_serial) = accept_serial else {
            return Err(bad(
                "public_key_id",
                "set pay.public_key_id + pay.public_key_file (public-key mode) or pay.platform_certificates_dir",
            ));
        };
        if mode == Mode::Production {
            if self.notify_url.is_none() {
                return Err(bad("notify_url", "required in production mode"));
            }
            let simulator_key = MerchantKey::from_pkcs8_pem(sim::MERCHANT_KEY_PEM).expect("the simulator key parses");
            if merchant_key.public_der() == simulator_key.public_der() {
                return Err(bad("merchant_key_file", "the simulator's key is refused in production mode"));
            }
            if [v3, self.previous_api_v3_key.as_ref().unwrap_or(v3)].iter().any(|k| k.expose() == sim::API_V3_KEY) {
                return Err(bad("api_v3_key", "the simulator's key is refused in production mode"));
            }
            for (serial, key) in &trusted {
                let simulator_keys = simulator_keys();
                if simulator_keys.trusted.values().any(|k| k.public_der() == key.public_der()) {
                    return Err(bad(
                        "public_key_file",
                        format!("{serial} is the simulator's key, refused in production mode"),
                    ));
                }
            }
            if mch_id == sim::MCH_ID {
                return Err(bad("mch_id", "the simulator's merchant is refused in production mode"));
            }
        }
        Ok(PayKeys {
            merchant: Merchant { mch_id: mch_id.clone(), serial, key: merchant_key },
            api_v3_keys,
            trusted,
            accept_serial,
            simulated: false,
        })
    }
}

/// The notify URL: https (http only in dev mode), at most 255 characters, no query string.
fn check_notify_url(url: &str, mode: Mode) -> Result<(), ConfigError> {
    let parsed = url::Url::parse(url).map_err(|e| bad("notify_url", e))?;
    let scheme_ok = parsed.scheme() == "https" || (mode == Mode::Dev && parsed.scheme() == "http");
    if !scheme_ok || url.len() > 255 || parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad("notify_url", "expected a public https:// URL of at most 255 characters without a query"));
    }
    Ok(())
}

/// The simulator's merchant and both of its platform keys (public key and certificate).
pub fn simulator_keys() -> PayKeys {
    let mut trusted = HashMap::new();
    trusted.insert(
        sim::PUBLIC_KEY_ID.to_owned(),
        WechatPayKey::from_public_key_pem(sim::PUBLIC_KEY_PEM).expect("the simulator key parses"),
    );
    for (serial, key) in
        crate::payments::certificates::parse_pem(sim::CERTIFICATE_PEM).expect("the simulator certificate parses")
    {
        trusted.insert(serial, key);
    }
    PayKeys {
        merchant: Merchant {
            mch_id: sim::MCH_ID.into(),
            serial: sim::MERCHANT_SERIAL.into(),
            key: MerchantKey::from_pkcs8_pem(sim::MERCHANT_KEY_PEM).expect("the simulator key parses"),
        },
        api_v3_keys: vec![ApiV3Key::new(sim::API_V3_KEY.as_bytes()).expect("32 bytes")],
        trusted,
        accept_serial: sim::PUBLIC_KEY_ID.into(),
        simulated: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_mode_trusts_every_certificate_in_the_directory_alongside_the_public_key() {
        let dir = std::env::temp_dir().join(format!("wxshop-certs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("platform.pem"), sim::CERTIFICATE_PEM).unwrap();
        std::fs::write(dir.join("merchant.pem"), sim::MERCHANT_KEY_PEM).unwrap();
        std::fs::write(dir.join("README"), "not a certificate").unwrap();
        let mut config = PayConfig {
            mch_id: Some(sim::MCH_ID.into()),
            merchant_serial: Some(sim::MERCHANT_SERIAL.into()),
            merchant_key_file: Some(dir.join("merchant.pem")),
            api_v3_key: Some(Secret::new(sim::API_V3_KEY)),
            platform_certificates_dir: Some(dir.clone()),
            ..PayConfig::default()
        };
        // Certificate mode alone: responses are asked for under the certificate.
        std::fs::rename(dir.join("merchant.pem"), dir.join("merchant.key")).unwrap();
        config.merchant_key_file = Some(dir.join("merchant.key"));
        let keys = config.load_keys(Mode::Dev).unwrap();
        assert_eq!(keys.accept_serial, sim::CERTIFICATE_SERIAL);
        assert_eq!(keys.trusted.len(), 1);
        assert!(!keys.simulated);
        // Both modes (a migration): the public key is asked for, both are trusted.
        std::fs::write(dir.join("pub.key"), sim::PUBLIC_KEY_PEM).unwrap();
        config.public_key_id = Some(sim::PUBLIC_KEY_ID.into());
        config.public_key_file = Some(dir.join("pub.key"));
        let keys = config.load_keys(Mode::Dev).unwrap();
        assert_eq!(keys.accept_serial, sim::PUBLIC_KEY_ID);
        assert!(keys.trusted.contains_key(sim::CERTIFICATE_SERIAL) && keys.trusted.contains_key(sim::PUBLIC_KEY_ID));
        // A directory without certificates is refused.
        config.platform_certificates_dir = Some(dir.join("nowhere"));
        assert!(config.load_keys(Mode::Dev).unwrap_err().to_string().contains("pay.platform_certificates_dir"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
