//! CDN purges. Content-addressed URLs never need one (new content, new URL); purges are for content that must
//! disappear (an image taken down). They arrive as `upload.taken_down` events (consumer `cdn_purge` queues the URLs
//! in `cdn_purge`), and the purger (`worker.rs`) sends them to the provider in batches, within its daily quota and
//! call rate, retrying with backoff and following each task until the provider says it is done.
//!
//! Providers (`cdn.provider`): Tencent Cloud CDN `PurgeUrlsCache` (API 3.0, TC3-HMAC-SHA256) and Aliyun CDN
//! `RefreshObjectCaches` (RPC, HMAC-SHA1), real HTTP against `cdn.endpoint`; in dev mode without keys, the built-in
//! simulator (`simulator::cdn`).

pub mod aliyun;
pub mod store;
pub mod tencent;
pub mod worker;

use std::time::Duration;

use crate::config::{Config, Secret};
use crate::uploads::config::CdnProvider;

/// The keys of the simulated CDN accounts (dev mode without `cdn.secret_id`).
pub const SIM_SECRET_ID: &str = "AKIDsimulatorcdn0000000000000000001";
pub const SIM_SECRET_KEY: &str = "simulator-cdn-secret-key";

/// What a provider says about a purge task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    Done,
    Running,
    Failed,
}

/// A failed call: `retryable` ones (5xx, throttling, transport) are tried again later.
#[derive(Debug)]
pub struct CallError {
    pub retryable: bool,
    pub message: String,
}

impl CallError {
    fn transport(error: reqwest::Error) -> CallError {
        CallError { retryable: true, message: format!("transport: {error}") }
    }
}

/// The configured provider's client.
pub enum CdnClient {
    Tencent(tencent::Tencent),
    Aliyun(aliyun::Aliyun),
}

impl CdnClient {
    /// `None` when `cdn.provider = "none"`. `local_base` is this server's own URL (for the simulator).
    pub fn from_config(config: &Config, local_base: &str) -> anyhow::Result<Option<CdnClient>> {
        let cdn = &config.cdn;
        if cdn.provider == CdnProvider::None {
            return Ok(None);
        }
        let simulated = cdn.simulated(config.mode);
        let (id, key) = if simulated {
            (SIM_SECRET_ID.to_owned(), Secret::new(SIM_SECRET_KEY))
        } else {
            (cdn.secret_id.clone().unwrap_or_default(), cdn.secret_key.clone().unwrap_or_else(|| Secret::new("")))
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(3))
            .build()?;
        let sim = |name: &str| format!("{local_base}{}/cdn/{name}", crate::simulator::MOUNT_PATH);
        let client = match cdn.provider {
            CdnProvider::Tencent => {
                let endpoint = match (&cdn.endpoint, simulated) {
                    (_, true) => sim("tencent"),
                    (Some(endpoint), false) => endpoint.clone(),
                    (None, false) => "https://cdn.tencentcloudapi.com".into(),
                };
                CdnClient::Tencent(tencent::Tencent::new(http, &endpoint, id, key)?)
            }
            CdnProvider::Aliyun => {
                let endpoint = match (&cdn.endpoint, simulated) {
                    (_, true) => sim("aliyun"),
                    (Some(endpoint), false) => endpoint.clone(),
                    (None, false) => "https://cdn.aliyuncs.com".into(),
                };
                CdnClient::Aliyun(aliyun::Aliyun::new(http, &endpoint, id, key))
            }
            CdnProvider::None => unreachable!("handled above"),
        };
        if simulated {
            tracing::warn!(provider = ?cdn.provider, "CDN SIMULATOR in use: no cdn.secret_id configured. Development only.");
        }
        Ok(Some(client))
    }

    /// Submits one batch of URLs; returns the provider's task id.
    pub async fn purge(&self, urls: &[String]) -> Result<String, CallError> {
        match self {
            CdnClient::Tencent(client) => client.purge(urls).await,
            CdnClient::Aliyun(client) => client.purge(urls).await,
        }
    }

    pub async fn task(&self, task_id: &str) -> Result<TaskState, CallError> {
        match self {
            CdnClient::Tencent(client) => client.task(task_id).await,
            CdnClient::Aliyun(client) => client.task(task_id).await,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            CdnClient::Tencent(_) => "tencent",
            CdnClient::Aliyun(_) => "aliyun",
        }
    }
}
