//! The deny-list: access tokens (`jti:<id>`), login sessions (`sid:<family>`) and banned users (`user:<id>`) that
//! must stop working before their tokens expire.
//!
//! Scale-out keeps it in Redis, the truth every instance shares. Each instance also mirrors it in process, so
//! checking a token costs no round trip: the mirror subscribes to a pub/sub channel on which every revocation and
//! lift is announced, then loads every entry from Redis (subscribe first, so nothing falls between the two), and
//! answers only while it is known to be current: while its subscription delivers (a heartbeat goes round every
//! second; silence for [`MIRROR_STALE_AFTER`] counts as lost) and after a full load. Otherwise the check asks
//! Redis (one MGET) and fails closed when Redis cannot answer. Another instance sees a revocation when the
//! announcement arrives, normally within a millisecond.
//!
//! The embedded default keeps it in process and persists it in the `revocation` table, so a restart forgets
//! nothing. Entries live only until every token they concern has expired.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use sqlx::Row;

use crate::db::{now_ms, Db};
use crate::error::AppError;
use crate::kv::Redis;

#[derive(Clone)]
pub enum Revocations {
    /// `loaded` is false until the persisted entries were read; until then every check fails closed.
    Local {
        entries: moka::sync::Cache<String, i64>,
        db: Db,
        loaded: Arc<AtomicBool>,
    },
    Redis {
        redis: Redis,
        mirror: Arc<Mirror>,
    },
}

/// The in-process copy of the Redis deny-list (scale-out).
pub struct Mirror {
    entries: moka::sync::Cache<String, i64>,
    /// Whether the entries were loaded in full since the current subscription began.
    loaded: AtomicBool,
    /// When the subscription last delivered a message (epoch ms).
    last_heard_ms: AtomicI64,
}

/// The mirror is trusted only while its subscription delivered something this recently (heartbeats go out every
/// [`HEARTBEAT_EVERY`]).
pub const MIRROR_STALE_AFTER: Duration = Duration::from_millis(3_000);
const HEARTBEAT_EVERY: Duration = Duration::from_millis(1_000);

impl Mirror {
    fn current(&self) -> bool {
        self.loaded.load(Ordering::SeqCst)
            && now_ms() - self.last_heard_ms.load(Ordering::SeqCst) < MIRROR_STALE_AFTER.as_millis() as i64
    }

    fn heard(&self) {
        self.last_heard_ms.store(now_ms(), Ordering::SeqCst);
    }
}

/// Local entries expire at their own deadline (stored as the value, epoch ms).
struct UntilDeadline;

impl moka::Expiry<String, i64> for UntilDeadline {
    fn expire_after_create(&self, _key: &String, until_ms: &i64, _now: std::time::Instant) -> Option<Duration> {
        Some(Duration::from_millis((*until_ms - now_ms()).max(0) as u64))
    }
}

impl Revocations {
    /// Scale-out: Redis. Embedded: in process, reloaded from the database.
    /// When the database cannot be read at start, the server still starts (and is not ready); authenticated
    /// requests are refused until the entries load.
    pub async fn new(redis: Option<Redis>, db: &Db) -> Revocations {
        if let Some(redis) = redis {
            let mirror = Arc::new(Mirror {
                entries: deadline_cache(),
                loaded: AtomicBool::new(false),
                last_heard_ms: AtomicI64::new(0),
            });
            tokio::spawn(follow(redis.clone(), Arc::downgrade(&mirror)));
            return Revocations::Redis { redis, mirror };
        }
        let entries = deadline_cache();
        let loaded = Arc::new(AtomicBool::new(false));
        if let Err(error) = load(&entries, db).await {
            tracing::error!(%error, "cannot load the deny-list yet; authenticated requests are refused until it loads");
        } else {
            loaded.store(true, Ordering::SeqCst);
        }
        Revocations::Local { entries, db: db.clone(), loaded }
    }

    /// Denies `key` until `until_ms` (epoch milliseconds).
    pub async fn revoke(&self, key: &str, until_ms: i64) -> Result<(), AppError> {
        let ttl_ms = until_ms - now_ms();
        if ttl_ms <= 0 {
            return Ok(());
        }
        match self {
            Revocations::Local { entries, db, .. } => {
                // Written through first: acknowledged revocations survive a restart.
                sqlx::query("REPLACE INTO revocation (revoked_key, expires_at) VALUES (?, ?)")
                    .bind(key)
                    .bind(until_ms)
                    .execute(&db.pool)
                    .await?;
                entries.insert(key.to_owned(), until_ms);
                Ok(())
            }
            Revocations::Redis { redis, mirror } => {
                let mut conn = redis.conn();
                redis::pipe()
                    .cmd("SET")
                    .arg(redis.key(&format!("revoked:{key}")))
                    .arg(until_ms)
                    .arg("PX")
                    .arg(ttl_ms)
                    .ignore()
                    .cmd("PUBLISH")
                    .arg(channel(redis))
                    .arg(format!("R {until_ms} {key}"))
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(unavailable)?;
                mirror.entries.insert(key.to_owned(), until_ms);
                Ok(())
            }
        }
    }

    /// Lifts a denial early (an unban).
    pub async fn lift(&self, key: &str) -> Result<(), AppError> {
        match self {
            Revocations::Local { entries, db, .. } => {
                sqlx::query("DELETE FROM revocation WHERE revoked_key = ?").bind(key).execute(&db.pool).await?;
                entries.invalidate(key);
                Ok(())
            }
            Revocations::Redis { redis, mirror } => {
                let mut conn = redis.conn();
                redis::pipe()
                    .cmd("DEL")
                    .arg(redis.key(&format!("revoked:{key}")))
                    .ignore()
                    .cmd("PUBLISH")
                    .arg(channel(redis))
                    .arg(format!("L {key}"))
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(unavailable)?;
                mirror.entries.invalidate(key);
                Ok(())
            }
        }
    }

    /// Whether any of `keys` is denied: from memory, or in scale-out with a stale mirror one round trip. Fails
    /// closed: if the deny-list cannot be read, the request is refused with 503 rather than let a revoked token
    /// through.
    pub async fn any_revoked(&self, keys: &[String]) -> Result<bool, AppError> {
        match self {
            Revocations::Local { entries, db, loaded } => {
                if !loaded.load(Ordering::SeqCst) {
                    load(entries, db).await?;
                    loaded.store(true, Ordering::SeqCst);
                }
                Ok(any_denied(entries, keys))
            }
            Revocations::Redis { mirror, .. } if mirror.current() => Ok(any_denied(&mirror.entries, keys)),
            Revocations::Redis { redis, .. } => {
                metrics::counter!("revocation_mirror_misses_total").increment(1);
                let mut conn = redis.conn();
                let prefixed: Vec<String> = keys.iter().map(|k| redis.key(&format!("revoked:{k}"))).collect();
                let found: Vec<Option<String>> =
                    redis::cmd("MGET").arg(&prefixed).query_async(&mut conn).await.map_err(unavailable)?;
                Ok(found.iter().any(Option::is_some))
            }
        }
    }

    /// Whether checks are answered from the in-process mirror right now (scale-out), for `/debug/tasks` and tests.
    pub fn mirror_current(&self) -> Option<bool> {
        match self {
            Revocations::Local { .. } => None,
            Revocations::Redis { mirror, .. } => Some(mirror.current()),
        }
    }
}

/// An in-process deny-list: key → deadline (epoch ms); each entry expires at its deadline.
fn deadline_cache() -> moka::sync::Cache<String, i64> {
    moka::sync::Cache::builder().expire_after(UntilDeadline).build()
}

/// Whether an in-process copy (embedded list or scale-out mirror) denies any of `keys` now.
fn any_denied(entries: &moka::sync::Cache<String, i64>, keys: &[String]) -> bool {
    let now = now_ms();
    keys.iter().any(|k| entries.get(k).is_some_and(|until| until > now))
}

fn channel(redis: &Redis) -> String {
    redis.key("revocations")
}

/// Keeps the mirror current while it lives: subscribe, load everything, apply announcements, send and hear
/// heartbeats; start over after any failure.
async fn follow(redis: Redis, mirror: Weak<Mirror>) {
    loop {
        if mirror.strong_count() == 0 {
            return;
        }
        if let Err(error) = follow_once(&redis, &mirror).await {
            tracing::warn!(%error, "deny-list mirror lost its subscription; checks ask Redis until it is back");
            metrics::counter!("redis_errors_total", "operation" => "revocation_mirror").increment(1);
        }
        if let Some(m) = mirror.upgrade() {
            m.loaded.store(false, Ordering::SeqCst);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn follow_once(redis: &Redis, mirror: &Weak<Mirror>) -> redis::RedisResult<()> {
    let channel = channel(redis);
    let mut pubsub = tokio::time::timeout(Duration::from_secs(2), redis.pubsub())
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "subscribing timed out")))??;
    pubsub.subscribe(&channel).await?;
    {
        let Some(m) = mirror.upgrade() else { return Ok(()) };
        m.heard();
        load_from_redis(redis, &m).await?;
        m.loaded.store(true, Ordering::SeqCst);
    }
    let mut messages = pubsub.on_message();
    let mut heartbeat = tokio::time::interval(HEARTBEAT_EVERY);
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else {
                    return Err(redis::RedisError::from((redis::ErrorKind::Io, "subscription closed")));
                };
                let Some(m) = mirror.upgrade() else { return Ok(()) };
                m.heard();
                let payload: String = message.get_payload().unwrap_or_default();
                apply(&m, &payload);
            }
            _ = heartbeat.tick() => {
                if mirror.strong_count() == 0 {
                    return Ok(());
                }
                // Any instance's heartbeat proves this subscription still delivers; a failed publish only means
                // that the mirror goes stale and checks ask Redis.
                let _ = redis::cmd("PUBLISH").arg(&channel).arg("H").query_async::<i64>(&mut redis.conn()).await;
            }
        }
    }
}

/// One announcement: `R <until_ms> <key>` (revoked), `L <key>` (lifted) or `H` (heartbeat).
fn apply(mirror: &Mirror, payload: &str) {
    if let Some(key) = payload.strip_prefix("L ") {
        mirror.entries.invalidate(key);
    } else if let Some((until, key)) = payload.strip_prefix("R ").and_then(|rest| rest.split_once(' ')) {
        if let Ok(until) = until.parse::<i64>() {
            mirror.entries.insert(key.to_owned(), until);
        }
    }
}

/// Every entry in Redis, by SCAN and MGET (values are the deadlines).
async fn load_from_redis(redis: &Redis, mirror: &Mirror) -> redis::RedisResult<()> {
    let prefix = redis.key("revoked:");
    let pattern = format!("{}*", glob_escape(&prefix));
    let mut conn = redis.conn();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            let values: Vec<Option<i64>> = redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
            for (key, until) in keys.iter().zip(values) {
                if let (Some(name), Some(until)) = (key.strip_prefix(&prefix), until) {
                    mirror.entries.insert(name.to_owned(), until);
                }
            }
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

async fn load(entries: &moka::sync::Cache<String, i64>, db: &Db) -> Result<(), sqlx::Error> {
    let now = now_ms();
    sqlx::query("DELETE FROM revocation WHERE expires_at <= ?").bind(now).execute(&db.pool).await?;
    let rows = sqlx::query("SELECT revoked_key, expires_at FROM revocation").fetch_all(&db.pool).await?;
    for row in rows {
        entries.insert(row.try_get::<String, _>("revoked_key")?, row.try_get::<i64, _>("expires_at")?);
    }
    Ok(())
}

fn unavailable(error: redis::RedisError) -> AppError {
    tracing::error!(%error, "deny-list unavailable");
    metrics::counter!("redis_errors_total", "operation" => "revocation").increment(1);
    AppError::Unavailable { code: "auth_unavailable", message: "cannot check token revocation right now".into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_update_the_mirror_and_junk_is_ignored() {
        let mirror = Mirror {
            entries: deadline_cache(),
            loaded: AtomicBool::new(true),
            last_heard_ms: AtomicI64::new(now_ms()),
        };
        let until = now_ms() + 60_000;
        apply(&mirror, &format!("R {until} jti:a b"));
        assert_eq!(mirror.entries.get("jti:a b"), Some(until), "keys may contain spaces");
        apply(&mirror, "L jti:a b");
        assert_eq!(mirror.entries.get("jti:a b"), None, "lifted");
        for junk in ["", "H", "R", "R soon jti:x", "X jti:x", "L"] {
            apply(&mirror, junk);
        }
        assert_eq!(mirror.entries.iter().count(), 0);
        assert!(mirror.current());
        mirror.last_heard_ms.store(now_ms() - MIRROR_STALE_AFTER.as_millis() as i64 - 1, Ordering::SeqCst);
        assert!(!mirror.current(), "silent for too long: checks go to Redis");
    }

    #[test]
    fn scan_patterns_escape_the_prefix() {
        assert_eq!(glob_escape("shop[1]*?:revoked:"), "shop\\[1\\]\\*\\?:revoked:");
    }
}
