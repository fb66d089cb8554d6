//! Response cache: serialized responses by key, with a per-entry TTL.
//!
//! Embedded mode keeps entries in process (moka); scale-out keeps them in Redis, shared by every instance, so an
//! invalidation is seen everywhere at once. A Redis failure never fails a request: it counts as a miss and the
//! caller reads the database.

use std::time::Duration;

use axum::body::Bytes;
use moka::Expiry;
use rand::Rng;
use redis::AsyncCommands;

use crate::kv::Redis;

pub mod layered;

#[derive(Clone)]
pub enum Cache {
    Local(moka::future::Cache<String, Entry>),
    Redis(Redis),
}

/// A cached value with its own time to live.
#[derive(Clone)]
pub struct Entry {
    value: Bytes,
    ttl: Duration,
}

struct PerEntryTtl;

impl Expiry<String, Entry> for PerEntryTtl {
    fn expire_after_create(&self, _key: &String, entry: &Entry, _now: std::time::Instant) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// Entries kept in process at most; the least recently used go first.
const LOCAL_CAPACITY: u64 = 50_000;

impl Cache {
    pub fn new(redis: Option<Redis>) -> Cache {
        match redis {
            Some(redis) => Cache::Redis(redis),
            None => Cache::Local(
                moka::future::Cache::builder().max_capacity(LOCAL_CAPACITY).expire_after(PerEntryTtl).build(),
            ),
        }
    }

    fn level(&self) -> &'static str {
        match self {
            Cache::Local(_) => "local",
            Cache::Redis(_) => "redis",
        }
    }

    /// The cached value of `key`. `cache` names the cache in metrics.
    pub async fn get(&self, cache: &'static str, key: &str) -> Option<Bytes> {
        let found = match self {
            Cache::Local(local) => local.get(key).await.map(|e| e.value),
            Cache::Redis(redis) => {
                let mut conn = redis.conn();
                match conn.get::<_, Option<Vec<u8>>>(redis.key(key)).await {
                    Ok(value) => value.map(Bytes::from),
                    Err(error) => {
                        redis_error("get", &error);
                        None
                    }
                }
            }
        };
        let result = if found.is_some() { "hit" } else { "miss" };
        metrics::counter!("cache_requests_total", "cache" => cache, "level" => self.level(), "result" => result)
            .increment(1);
        found
    }

    /// Stores `value` for about `ttl`: ±10% jitter, so entries written together do not expire together.
    pub async fn put(&self, key: &str, value: Bytes, ttl: Duration) {
        let ttl = jitter(ttl);
        match self {
            Cache::Local(local) => local.insert(key.to_owned(), Entry { value, ttl }).await,
            Cache::Redis(redis) => {
                let mut conn = redis.conn();
                let millis = ttl.as_millis().max(1) as u64;
                let result: redis::RedisResult<()> = redis::cmd("SET")
                    .arg(redis.key(key))
                    .arg(value.as_ref())
                    .arg("PX")
                    .arg(millis)
                    .query_async(&mut conn)
                    .await;
                if let Err(error) = result {
                    redis_error("set", &error);
                }
            }
        }
    }

    /// Removes `key`, so the next read loads fresh data.
    pub async fn invalidate(&self, key: &str) {
        match self {
            Cache::Local(local) => local.invalidate(key).await,
            Cache::Redis(redis) => {
                let mut conn = redis.conn();
                if let Err(error) = conn.del::<_, ()>(redis.key(key)).await {
                    redis_error("del", &error);
                }
            }
        }
    }
}

fn redis_error(operation: &'static str, error: &redis::RedisError) {
    tracing::warn!(operation, %error, "redis cache operation failed; falling back to the database");
    metrics::counter!("redis_errors_total", "operation" => operation).increment(1);
}

/// `ttl` ± 10%.
pub fn jitter(ttl: Duration) -> Duration {
    let factor = rand::rng().random_range(0.9..=1.1);
    ttl.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        let base = Duration::from_secs(100);
        let samples: Vec<Duration> = (0..1_000).map(|_| jitter(base)).collect();
        assert!(samples.iter().all(|d| *d >= Duration::from_secs(90) && *d <= Duration::from_secs(110)));
        assert!(samples.iter().any(|d| *d != samples[0]), "jitter varies");
    }

    #[tokio::test]
    async fn local_entries_expire_after_their_ttl() {
        let cache = Cache::new(None);
        cache.put("k", Bytes::from_static(b"v"), Duration::from_millis(100)).await;
        assert_eq!(cache.get("test", "k").await.as_deref(), Some(&b"v"[..]));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(cache.get("test", "k").await, None);
        cache.put("k", Bytes::from_static(b"w"), Duration::from_secs(60)).await;
        cache.invalidate("k").await;
        assert_eq!(cache.get("test", "k").await, None);
    }
}
