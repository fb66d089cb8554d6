//! `storage.*` (where uploads go, how they are signed, their limits) and `cdn.*` (who purges the CDN), checked at
//! start-up. Env `WXSHOP_STORAGE__…`, `WXSHOP_CDN__…`.

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, Mode, Secret};

/// Where uploaded files live and which POST-policy dialect signs for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// A directory under the data dir, served by this binary at `/files/...` (the embedded default).
    Local,
    /// Any S3-compatible store (AWS, MinIO, R2, garage, s3s): SigV4.
    S3,
    /// Tencent COS: `q-sign-*` POST signatures; server-side calls through its S3-compatible API.
    Cos,
    /// Aliyun OSS: OSS V4 POST signatures; server-side calls through its S3-compatible API.
    Oss,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    pub provider: Provider,
    /// The S3 API endpoint, e.g. `http://127.0.0.1:8014` (path-style requests). Unset: AWS's regional endpoint for
    /// `s3`; required for `cos` and `oss`; this server's `/files` for `local`.
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    /// Where clients send the form (`wx.uploadFile`'s `url`). Unset: `<endpoint>/<bucket>`.
    pub upload_url: Option<String>,
    /// The CDN in front of the bucket; public URLs are this + the object key. Unset: `<endpoint>/<bucket>/`.
    pub public_base_url: Option<String>,
    /// Lifetime of an upload credential (at most 600).
    pub upload_ttl_secs: u64,
    pub avatar_max_bytes: u64,
    pub review_photo_max_bytes: u64,
    pub product_image_max_bytes: u64,
    /// Largest width or height accepted.
    pub max_dimension: u32,
    /// Largest width × height accepted, in millions of pixels.
    pub max_megapixels: u32,
    /// Upload credentials per user per minute (0: no limit).
    pub per_user_per_minute: u64,
    /// Upload credentials per user per UTC day (0: no limit).
    pub daily_quota: u64,
    /// A pending upload not completed this long after its credential expired is swept (object deleted).
    pub abandon_after_secs: u64,
    /// How often the sweep of abandoned uploads runs.
    pub sweep_interval_secs: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            provider: Provider::Local,
            endpoint: None,
            bucket: "wxshop".into(),
            region: "us-east-1".into(),
            access_key_id: None,
            secret_access_key: None,
            upload_url: None,
            public_base_url: None,
            upload_ttl_secs: 300,
            avatar_max_bytes: 2 * 1024 * 1024,
            review_photo_max_bytes: 10 * 1024 * 1024,
            product_image_max_bytes: 10 * 1024 * 1024,
            max_dimension: 8192,
            max_megapixels: 40,
            per_user_per_minute: 20,
            daily_quota: 200,
            abandon_after_secs: 3600,
            sweep_interval_secs: 60,
        }
    }
}

/// Who purges the CDN when an image is taken down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CdnProvider {
    /// No CDN (or one that needs no purges): nothing is sent.
    None,
    /// Tencent Cloud CDN `PurgeUrlsCache` (API 3.0, TC3-HMAC-SHA256).
    Tencent,
    /// Aliyun CDN `RefreshObjectCaches` (RPC signature, HMAC-SHA1).
    Aliyun,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdnConfig {
    pub provider: CdnProvider,
    /// The provider's API endpoint. Unset: the real one (`https://cdn.tencentcloudapi.com`,
    /// `https://cdn.aliyuncs.com`); in dev mode without keys, the built-in simulator.
    pub endpoint: Option<String>,
    pub secret_id: Option<String>,
    pub secret_key: Option<Secret>,
    /// URLs per purge call (0: the provider's maximum, 1,000 for both).
    pub batch_size: u64,
    /// URLs purged per UTC day across all instances (both providers allow 10,000).
    pub daily_quota: u64,
    /// Purge calls per second from one instance (Tencent allows 20, Aliyun 50).
    pub max_calls_per_sec: u64,
    /// How often the purger looks for work.
    pub worker_interval_ms: u64,
    /// A failed call is retried with backoff from this, doubling, capped at 5 minutes.
    pub retry_base_ms: u64,
    /// After this many failed calls a URL is parked as failed (and alerted).
    pub max_attempts: u64,
}

impl Default for CdnConfig {
    fn default() -> Self {
        CdnConfig {
            provider: CdnProvider::None,
            endpoint: None,
            secret_id: None,
            secret_key: None,
            batch_size: 0,
            daily_quota: 10_000,
            max_calls_per_sec: 10,
            worker_interval_ms: 1_000,
            retry_base_ms: 1_000,
            max_attempts: 10,
        }
    }
}

impl CdnConfig {
    /// URLs in one call: the configured size within the provider's maximum.
    pub fn batch(&self) -> usize {
        let max = 1_000;
        if self.batch_size == 0 {
            max
        } else {
            (self.batch_size as usize).min(max)
        }
    }

    /// Dev mode without keys: the simulator answers.
    pub fn simulated(&self, mode: Mode) -> bool {
        mode == Mode::Dev && self.provider != CdnProvider::None && self.secret_id.is_none() && self.endpoint.is_none()
    }
}

impl StorageConfig {
    pub fn max_bytes(&self, purpose: crate::uploads::Purpose) -> u64 {
        use crate::uploads::Purpose;
        match purpose {
            Purpose::Avatar => self.avatar_max_bytes,
            Purpose::ReviewPhoto => self.review_photo_max_bytes,
            Purpose::ProductImage => self.product_image_max_bytes,
        }
    }
}

pub fn validate(storage: &StorageConfig, cdn: &CdnConfig, mode: Mode) -> Result<(), ConfigError> {
    let key = |name: &str, why: &str| Err(ConfigError(format!("invalid config key `storage.{name}`: {why}")));
    if !(30..=600).contains(&storage.upload_ttl_secs) {
        return key("upload_ttl_secs", "expected 30 to 600 (an upload credential lives at most 10 minutes)");
    }
    for (name, value) in [
        ("avatar_max_bytes", storage.avatar_max_bytes),
        ("review_photo_max_bytes", storage.review_photo_max_bytes),
        ("product_image_max_bytes", storage.product_image_max_bytes),
    ] {
        // wx.uploadFile sends at most 10 MB; completing reads the whole file into memory.
        if !(1..=10 * 1024 * 1024).contains(&value) {
            return key(name, "expected 1 to 10485760 bytes");
        }
    }
    if storage.bucket.is_empty()
        || !storage.bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return key("bucket", "expected a bucket name (lowercase letters, digits, '-', '.')");
    }
    for (name, value) in [
        ("endpoint", &storage.endpoint),
        ("upload_url", &storage.upload_url),
        ("public_base_url", &storage.public_base_url),
    ] {
        if let Some(value) = value {
            let parsed = url::Url::parse(value).ok().filter(|u| matches!(u.scheme(), "http" | "https"));
            if parsed.is_none() {
                return key(name, "expected an http:// or https:// URL");
            }
        }
    }
    if storage.provider != Provider::Local {
        if storage.access_key_id.is_none() || storage.secret_access_key.is_none() {
            return key("access_key_id", "the provider needs access_key_id and secret_access_key");
        }
        if storage.provider != Provider::S3 && storage.endpoint.is_none() {
            return key("endpoint", "cos and oss need their S3-compatible endpoint");
        }
    }
    // Mini-programs load images over HTTPS only.
    if mode == Mode::Production && storage.public_base_url.as_ref().is_some_and(|url| !url.starts_with("https://")) {
        return key("public_base_url", "production needs an https:// base URL (the CDN's)");
    }
    let cdn_key = |name: &str, why: &str| Err(ConfigError(format!("invalid config key `cdn.{name}`: {why}")));
    if cdn.provider != CdnProvider::None {
        if cdn.secret_id.is_some() != cdn.secret_key.is_some() {
            return cdn_key("secret_id", "set both secret_id and secret_key");
        }
        if mode == Mode::Production && cdn.secret_id.is_none() {
            return cdn_key("secret_id", "production needs the provider's keys");
        }
        if cdn.max_calls_per_sec == 0 || cdn.daily_quota == 0 {
            return cdn_key("max_calls_per_sec", "max_calls_per_sec and daily_quota must be positive");
        }
        if let Some(endpoint) = &cdn.endpoint {
            if url::Url::parse(endpoint).ok().filter(|u| matches!(u.scheme(), "http" | "https")).is_none() {
                return cdn_key("endpoint", "expected an http:// or https:// URL");
            }
        }
    }
    Ok(())
}
