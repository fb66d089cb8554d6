//! Counters over a fixed window (login failures, later rate limits): in process on the embedded default, in Redis
//! in scale-out so every instance counts together.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::kv::Redis;

#[derive(Clone)]
pub enum Counters {
    Local(moka::sync::Cache<String, Arc<Window>>),
    Redis(Redis),
}

/// A local window: its count and when it ends.
pub struct Window {
    count: AtomicU64,
    ends: Instant,
}

struct UntilWindowEnds;

impl moka::Expiry<String, Arc<Window>> for UntilWindowEnds {
    fn expire_after_create(&self, _key: &String, window: &Arc<Window>, now: Instant) -> Option<Duration> {
        Some(window.ends.saturating_duration_since(now))
    }
}

/// A counter's value and how long until its window ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    pub value: u64,
    pub resets_in: Duration,
}

impl Counters {
    pub fn new(redis: Option<Redis>) -> Counters {
        match redis {
            Some(redis) => Counters::Redis(redis),
            None => Counters::Local(
                moka::sync::Cache::builder().max_capacity(1_000_000).expire_after(UntilWindowEnds).build(),
            ),
        }
    }

    /// Adds one to `key`; the window starts with the first increment and lasts `window`.
    pub async fn increment(&self, key: &str, window: Duration) -> redis::RedisResult<Count> {
        match self {
            Counters::Local(local) => {
                let entry = local.get_with(key.to_owned(), || {
                    Arc::new(Window { count: AtomicU64::new(0), ends: Instant::now() + window })
                });
                let value = entry.count.fetch_add(1, Ordering::SeqCst) + 1;
                Ok(Count { value, resets_in: entry.ends.saturating_duration_since(Instant::now()) })
            }
            Counters::Redis(redis) => {
                let key = redis.key(key);
                let mut conn = redis.conn();
                // One round trip, atomic: the expiry is set only by the increment that created the key.
                let (value, _, ttl): (u64, i64, i64) = redis::pipe()
                    .atomic()
                    .cmd("INCR")
                    .arg(&key)
                    .cmd("PEXPIRE")
                    .arg(&key)
                    .arg(window.as_millis() as u64)
                    .arg("NX")
                    .cmd("PTTL")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await?;
                Ok(Count { value, resets_in: Duration::from_millis(ttl.max(0) as u64) })
            }
        }
    }

    /// Adds one to each of `keys` (one round trip in Redis); the counts in the same order.
    pub async fn increment_all(&self, keys: &[String], window: Duration) -> redis::RedisResult<Vec<Count>> {
        match self {
            Counters::Local(_) => {
                let mut counts = Vec::with_capacity(keys.len());
                for key in keys {
                    counts.push(self.increment(key, window).await?);
                }
                Ok(counts)
            }
            Counters::Redis(redis) => {
                let mut pipe = redis::pipe();
                pipe.atomic();
                for key in keys {
                    let key = redis.key(key);
                    pipe.cmd("INCR").arg(&key).cmd("PEXPIRE").arg(&key).arg(window.as_millis() as u64).arg("NX");
                    pipe.cmd("PTTL").arg(&key);
                }
                let replies: Vec<i64> = pipe.query_async(&mut redis.conn()).await?;
                Ok(replies
                    .chunks(3)
                    .map(|r| Count { value: r[0].max(0) as u64, resets_in: Duration::from_millis(r[2].max(0) as u64) })
                    .collect())
            }
        }
    }

    /// The current value of `key` (zero when its window has ended).
    pub async fn get(&self, key: &str) -> redis::RedisResult<Count> {
        match self {
            Counters::Local(local) => Ok(match local.get(key) {
                Some(w) if w.ends > Instant::now() => Count {
                    value: w.count.load(Ordering::SeqCst),
                    resets_in: w.ends.saturating_duration_since(Instant::now()),
                },
                _ => Count { value: 0, resets_in: Duration::ZERO },
            }),
            Counters::Redis(redis) => {
                let key = redis.key(key);
                let mut conn = redis.conn();
                let (value, ttl): (Option<u64>, i64) =
                    redis::pipe().cmd("GET").arg(&key).cmd("PTTL").arg(&key).query_async(&mut conn).await?;
                Ok(Count { value: value.unwrap_or(0), resets_in: Duration::from_millis(ttl.max(0) as u64) })
            }
        }
    }

    pub async fn reset(&self, key: &str) -> redis::RedisResult<()> {
        match self {
            Counters::Local(local) => {
                local.invalidate(key);
                Ok(())
            }
            Counters::Redis(redis) => {
                let mut conn = redis.conn();
                redis::cmd("DEL").arg(redis.key(key)).query_async::<()>(&mut conn).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_window_counts_then_resets() {
        let counters = Counters::new(None);
        for expected in 1..=3 {
            assert_eq!(counters.increment("k", Duration::from_millis(150)).await.unwrap().value, expected);
        }
        assert_eq!(counters.get("k").await.unwrap().value, 3);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(counters.get("k").await.unwrap().value, 0);
        assert_eq!(counters.increment("k", Duration::from_secs(1)).await.unwrap().value, 1);
        counters.reset("k").await.unwrap();
        assert_eq!(counters.get("k").await.unwrap().value, 0);
    }
}
