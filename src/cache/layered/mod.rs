//! A two-level cache for hot, per-entity responses (an order by id):
//!
//! - level 1 in process, short-lived (its lifetime jittered ±10% too), so a hot key costs no network round trip;
//! - level 2 in Redis (scale-out only), shared by every instance, TTL with ±10% jitter against avalanches;
//! - one loader per key and instance under a stampede (the others wait for its value), counted in
//!   [`Layered::loads`];
//! - invalidation deletes both levels and is broadcast on Redis pub/sub, so every instance drops its level-1 copy;
//!   a subscriber that reconnects drops its whole level 1, since it may have missed messages;
//! - invalidation runs twice: at once, and again [`SECOND_INVALIDATION`] later. A reader that loaded the old value
//!   just before the change committed may write it back after the first pass (the cache-aside race); the second
//!   pass removes it, so a stale value lives at most that long instead of a whole TTL.
//!
//! - [`Layered::get_or_refresh`] (the order lists' first pages) also reloads a hot entry in the background once it
//!   is past its refresh point (a share of its level-1 life drawn from [`REFRESH_AFTER`]), so the readers of a hot
//!   key never wait for the database: the value they get was loaded at most one lifetime ago, as with
//!   [`Layered::get_or_load`] (`refresh.rs`).
//!
//! Values are opaque bytes: callers cache the serialized response, including "not found" markers (negative
//! caching against penetration, with their own shorter TTL).
//!
//! Level 1 is a `quick_cache` (S3-FIFO eviction, bounded by weight): its bookkeeping is ~100 bytes per entry where
//! moka's was ~520, which matters because level 1 holds many small entries (orders, first pages). It has no
//! expiry of its own, so each entry carries its deadline and a read past it counts as a miss.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use futures_util::StreamExt;
use rand::Rng;

use crate::cache::jitter;
use crate::error::AppError;
use crate::kv::Redis;

/// Bytes of bookkeeping per level-1 entry (the table slot with the key's and value's headers and the deadline, the
/// index, the ghost queue's share, the allocator's rounding of the key and value), for the weigher.
pub const ENTRY_OVERHEAD: usize = 168;

/// The share of an entry's level-1 life after which [`Layered::get_or_refresh`] reloads it in the background, drawn
/// per entry from this range: entries loaded together are refreshed over a stretch of their life, not at one instant.
/// With a fixed 0.8, the 10k first pages warmed together at 5M orders on MariaDB went back to the database within
/// seconds of each other a minute later, a burst of the uncached query (bench/RESULTS.md, the eleventh pass).
pub const REFRESH_AFTER: std::ops::RangeInclusive<f64> = 0.5..=0.9;

#[derive(Clone)]
struct Entry {
    value: Bytes,
    expires_at: Instant,
    /// The last part of the entry's life, in milliseconds before `expires_at`, in which a hit refreshes it; 0 once
    /// a refresh has been started (one per entry).
    refresh_window_ms: u32,
}

impl Entry {
    /// An entry living `life` from now.
    fn new(value: Bytes, life: Duration) -> Entry {
        let after = rand::rng().random_range(REFRESH_AFTER);
        let window = life.mul_f64(1.0 - after).as_millis().min(u128::from(u32::MAX)) as u32;
        Entry { value, expires_at: Instant::now() + life, refresh_window_ms: window }
    }

    fn fresh(&self, now: Instant) -> bool {
        self.expires_at > now
    }

    /// Within its refresh window, with no refresh started yet.
    fn refresh_due(&self, now: Instant) -> bool {
        self.refresh_window_ms > 0 && self.expires_at <= now + Duration::from_millis(u64::from(self.refresh_window_ms))
    }
}

/// Weighs an entry by the memory it holds, so that level 1 is bounded in bytes, not entries.
#[derive(Clone)]
struct ByBytes;

impl quick_cache::Weighter<String, Entry> for ByBytes {
    fn weight(&self, key: &String, entry: &Entry) -> u64 {
        (key.len() + entry.value.len() + ENTRY_OVERHEAD) as u64
    }
}

/// Delay of the second invalidation pass: longer than any load takes.
pub const SECOND_INVALIDATION: Duration = Duration::from_millis(1_000);

pub struct Layered {
    name: &'static str,
    /// `cache_requests_total` by level and result, registered once (a labelled look-up per request costs).
    counters: [metrics::Counter; 4],
    local: quick_cache::sync::Cache<String, Entry, ByBytes>,
    local_ttl: Duration,
    redis: Option<Redis>,
    loads: AtomicU64,
    /// `cache_loads_total`: loader runs (the database), as [`Layered::loads`] counts them.
    loads_total: metrics::Counter,
    /// `cache_refreshes_total`: background reloads ahead of expiry (from level 2 or the loader).
    refreshes: metrics::Counter,
}

impl Layered {
    /// `capacity_bytes` bounds level 1 by the size of what it holds (keys and values, plus a per-entry overhead),
    /// not by the number of entries: serialized responses vary in size, and memory is what must stay bounded.
    pub fn new(name: &'static str, redis: Option<Redis>, local_ttl: Duration, capacity_bytes: u64) -> Arc<Layered> {
        // The table is sized for entries of ~1 KiB; it grows should smaller ones fill it.
        let estimated_entries = (capacity_bytes / 1024).max(64) as usize;
        let local = quick_cache::sync::Cache::with_weighter(estimated_entries, capacity_bytes, ByBytes);
        let counters = [("local", "hit"), ("local", "miss"), ("redis", "hit"), ("redis", "miss")].map(|(level, result)| {
            metrics::counter!("cache_requests_total", "cache" => name, "level" => level, "result" => result)
        });
        let refreshes = metrics::counter!("cache_refreshes_total", "cache" => name);
        let loads_total = metrics::counter!("cache_loads_total", "cache" => name);
        let loads = AtomicU64::new(0);
        let cache = Arc::new(Layered { name, counters, local, local_ttl, redis, loads, loads_total, refreshes });
        if cache.redis.is_some() {
            tokio::spawn(listen_for_invalidations(Arc::downgrade(&cache)));
        }
        cache
    }

    /// How many times a loader ran (database loads), since start.
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }

    fn channel(&self) -> Option<String> {
        self.redis.as_ref().map(|r| r.key(&format!("cache:{}:invalidate", self.name)))
    }

    /// A level-2 key. The `d` names the value's layout (its deadline first, see [`shared_get`](Self::shared_get)):
    /// instances of a version that stored values without it never read these, nor these instances theirs.
    fn shared_key(&self, key: &str) -> Option<String> {
        self.redis.as_ref().map(|r| r.key(&format!("cache:{}:d:{key}", self.name)))
    }

    /// The cached value of `key`, or `load`'s. `load` returns the value and how long it may be cached.
    pub async fn get_or_load<F, Fut>(&self, key: &str, load: F) -> Result<Bytes, AppError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(Bytes, Duration), AppError>>,
    {
        match self.local_hit(key, Instant::now()) {
            Some(hit) => Ok(hit.value),
            None => self.get_on_miss(key, load).await,
        }
    }

    /// The fresh level-1 entry of `key`, counted as a hit; an expired one is dropped (and the miss counted).
    fn local_hit(&self, key: &str, now: Instant) -> Option<Entry> {
        if let Some(hit) = self.local.get(key) {
            if hit.fresh(now) {
                self.counters[0].increment(1);
                return Some(hit);
            }
            self.local.remove_if(key, |entry| !entry.fresh(now));
        }
        self.counters[1].increment(1);
        None
    }

    /// A level-1 miss: one loader per key and instance, through level 2.
    async fn get_on_miss<F, Fut>(&self, key: &str, load: F) -> Result<Bytes, AppError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(Bytes, Duration), AppError>>,
    {
        // One loader per key: the others wait for its value. Should it fail, its guard is dropped and the next
        // waiter loads; should the key be invalidated meanwhile, its value is served but not kept.
        for _ in 0..3 {
            match self.local.get_value_or_guard_async(key).await {
                Ok(entry) if entry.fresh(Instant::now()) => return Ok(entry.value),
                Ok(_) => {
                    self.local.remove_if(key, |entry| !entry.fresh(Instant::now()));
                }
                Err(guard) => {
                    let entry = self.load(key, load, Duration::ZERO).await?;
                    let value = entry.value.clone();
                    let _ = guard.insert(entry);
                    return Ok(value);
                }
            }
        }
        // Entries expiring as fast as they are made (a level-1 lifetime near zero): load without level 1.
        Ok(self.load(key, load, Duration::ZERO).await?.value)
    }

    /// Level 2, then the loader (whose value goes to level 2).
    /// Level 2 is taken only with at least `min_life` left (a refresh wants more than the expiring entry had).
    async fn load<F, Fut>(&self, key: &str, load: F, min_life: Duration) -> Result<Entry, AppError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(Bytes, Duration), AppError>>,
    {
        if let Some(found) = self.shared_get(key).await {
            if found.expires_at >= Instant::now() + min_life {
                return Ok(found);
            }
        }
        self.loads.fetch_add(1, Ordering::Relaxed);
        self.loads_total.increment(1);
        let (value, ttl) = load().await?;
        let ttl = jitter(ttl);
        self.shared_put(key, &value, ttl).await;
        Ok(Entry::new(value, ttl.min(self.local_lifetime())))
    }

    /// The level-1 lifetime of an entry loaded now, jittered ±10%: entries loaded together (a warm-up, a
    /// promotion's first minute) would otherwise expire together and refresh from the database in one burst.
    /// Measured: 10,000 first pages loaded within 0.2 s refreshed within 0.2 s 30 s later, the order list's p99
    /// on SQLite 3.1 → 4.0 ms over a 40 s run.
    fn local_lifetime(&self) -> Duration {
        jitter(self.local_ttl)
    }

    /// A level-2 value is the entry's deadline (epoch milliseconds, 8 bytes big-endian) and then the value, so one
    /// `GET` answers both (a `GET` + `PTTL` pipeline cost the client more than the server: bench/RESULTS.md). Level 1
    /// keeps the entry until that deadline at the latest.
    async fn shared_get(&self, key: &str) -> Option<Entry> {
        let (redis, shared_key) = (self.redis.as_ref()?, self.shared_key(key)?);
        let mut conn = redis.conn();
        let result: redis::RedisResult<Option<Vec<u8>>> =
            redis::cmd("GET").arg(&shared_key).query_async(&mut conn).await;
        match result {
            Ok(stored) => {
                let found = stored.as_deref().and_then(|stored| self.fresh(stored));
                self.counters[if found.is_some() { 2 } else { 3 }].increment(1);
                found
            }
            Err(error) => {
                redis_error(&error);
                None
            }
        }
    }

    /// The entry of a level-2 value; `None` for one past its deadline, or not in this version's layout (a miss:
    /// the load overwrites it).
    fn fresh(&self, stored: &[u8]) -> Option<Entry> {
        let (deadline, value) = stored.split_first_chunk::<8>()?;
        let left_ms = i64::from_be_bytes(*deadline) - crate::db::now_ms();
        if left_ms <= 0 {
            return None;
        }
        let ttl = Duration::from_millis(left_ms as u64).min(self.local_lifetime());
        // An exactly sized copy: level 1 keeps it for the entry's life (a slice of the reply would keep the reply's
        // allocation and add a shared header).
        Some(Entry::new(Bytes::copy_from_slice(value), ttl))
    }

    async fn shared_put(&self, key: &str, value: &Bytes, ttl: Duration) {
        let (Some(redis), Some(shared_key)) = (self.redis.as_ref(), self.shared_key(key)) else { return };
        let ttl_ms = ttl.as_millis().max(1) as u64;
        let mut stored = Vec::with_capacity(8 + value.len());
        stored.extend_from_slice(&(crate::db::now_ms() + ttl_ms as i64).to_be_bytes());
        stored.extend_from_slice(value);
        let mut conn = redis.conn();
        let result: redis::RedisResult<()> =
            redis::cmd("SET").arg(&shared_key).arg(stored).arg("PX").arg(ttl_ms).query_async(&mut conn).await;
        if let Err(error) = result {
            redis_error(&error);
        }
    }

    /// Drops `key` from both levels here, and from level 1 on every other instance; once now and once again
    /// after [`SECOND_INVALIDATION`] (see the module comment).
    pub async fn invalidate(self: &Arc<Self>, key: &str) {
        Layered::invalidate_together(&[(self, key)]).await;
    }

    /// [`invalidate`](Self::invalidate) of entries of several caches (of one Redis), each pass one round trip for
    /// them all: a new order drops its id's entry and its owner's first page together.
    pub async fn invalidate_together(entries: &[(&Arc<Layered>, &str)]) {
        let pending: Vec<(std::sync::Weak<Layered>, String)> =
            entries.iter().map(|(cache, key)| (Arc::downgrade(cache), (*key).to_owned())).collect();
        invalidate_once(entries.iter().map(|(cache, key)| (&***cache, *key))).await;
        tokio::spawn(async move {
            tokio::time::sleep(SECOND_INVALIDATION).await;
            let alive: Vec<(Arc<Layered>, String)> =
                pending.into_iter().filter_map(|(cache, key)| Some((cache.upgrade()?, key))).collect();
            invalidate_once(alive.iter().map(|(cache, key)| (&**cache, key.as_str()))).await;
        });
    }
}

/// One pass of [`Layered::invalidate_together`]: level 1 here, then one pipeline of a `DEL` of level 2 and a
/// `PUBLISH` to the other instances per entry.
async fn invalidate_once<'a>(entries: impl Iterator<Item = (&'a Layered, &'a str)>) {
    let mut pipe = redis::pipe();
    let mut shared = None;
    for (cache, key) in entries {
        cache.local.remove(key);
        let (Some(redis), Some(shared_key), Some(channel)) =
            (cache.redis.as_ref(), cache.shared_key(key), cache.channel())
        else {
            continue;
        };
        pipe.cmd("DEL").arg(&shared_key).ignore().cmd("PUBLISH").arg(&channel).arg(key).ignore();
        shared.get_or_insert(redis);
    }
    let Some(redis) = shared else { return };
    let mut conn = redis.conn();
    let result: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
    if let Err(error) = result {
        redis_error(&error);
    }
}

/// Keeps a subscription to the invalidation channel while the cache lives; evicts level-1 entries named on it.
async fn listen_for_invalidations(cache: std::sync::Weak<Layered>) {
    loop {
        let Some(strong) = cache.upgrade() else { return };
        let (Some(redis), Some(channel)) = (strong.redis.clone(), strong.channel()) else { return };
        drop(strong);
        match redis.pubsub().await {
            Ok(mut pubsub) => {
                if pubsub.subscribe(&channel).await.is_ok() {
                    // Whatever was published while we were not listening is lost: start level 1 afresh.
                    if let Some(c) = cache.upgrade() {
                        c.local.clear();
                    }
                    let mut messages = pubsub.on_message();
                    while let Some(message) = messages.next().await {
                        let Some(c) = cache.upgrade() else { return };
                        if let Ok(key) = message.get_payload::<String>() {
                            c.local.remove(&key);
                        }
                    }
                }
            }
            Err(error) => redis_error(&error),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn redis_error(error: &redis::RedisError) {
    tracing::warn!(%error, "redis cache operation failed");
    metrics::counter!("redis_errors_total", "operation" => "layered_cache").increment(1);
}

mod refresh;
#[cfg(test)]
mod tests;
