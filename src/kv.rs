//! The Redis connection of the scale-out mode, shared by everything that must hold across instances.
//!
//! The connection is established lazily and re-established after failures, so the server starts (and reports
//! not ready) while Redis is down. Every key is prefixed with `redis_prefix`, so deployments and tests can share
//! one Redis.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::Config;

#[derive(Clone)]
pub struct Redis {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
}

impl Redis {
    /// Builds the (lazy) connection when `redis_url` is configured.
    pub fn from_config(config: &Config) -> anyhow::Result<Option<Redis>> {
        let Some(url) = &config.redis_url else {
            return Ok(None);
        };
        let client =
            redis::Client::open(url.expose()).map_err(|e| anyhow::anyhow!("invalid config key `redis_url`: {e}"))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)?;
        Ok(Some(Redis { client, conn, prefix: config.redis_prefix.clone() }))
    }

    /// A connection handle (multiplexed; cloning is cheap).
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// A dedicated pub/sub connection (subscriptions need their own).
    pub async fn pubsub(&self) -> redis::RedisResult<redis::aio::PubSub> {
        self.client.get_async_pubsub().await
    }

    /// The full key for `name` under this deployment's prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{}", self.prefix, name)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A round trip to Redis, for readiness.
    pub async fn ping(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn();
        redis::cmd("PING").query_async::<String>(&mut conn).await.map(|_| ())
    }
}
