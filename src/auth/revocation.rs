//! The deny-list: access tokens (`jti:<id>`), login sessions (`sid:<family>`) and banned users (`user:<id>`) that
//! must stop working before their tokens expire.
//!
//! The truth is the `revocation` table, on both backends: a revocation is acknowledged only once it is committed
//! there, so losing Redis (a restart, a flush, an outage) forgets nothing. Each instance answers checks from an
//! in-process copy of that table, so a check costs no round trip:
//!
//! - Embedded: the copy is loaded at start-up and written through by every revocation (one process).
//! - Scale-out: every revocation and lift is also announced on a Redis pub/sub channel, which each instance's
//!   follower applies to its copy. The follower subscribes first, then loads the table from the *database* (so
//!   nothing falls between the two), reloads it every [`FULL_RELOAD_EVERY`], and trusts the copy only while its
//!   subscription delivers (a heartbeat goes round every second; silence for [`MIRROR_STALE_AFTER`] counts as
//!   lost). Redis holds no copy of the list, so nothing can pass on a Redis copy that was never rebuilt.
//!
//! Whenever the copy is not current (loading, Redis unreachable, subscription lost), a check asks the database
//! (one indexed lookup); only when the database cannot answer either is the request refused (503, fail closed).
//! Entries live only until every token they concern has expired.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use sqlx::Row;

use crate::db::Bounded;
use crate::db::{now_ms, Db};
use crate::error::AppError;
use crate::kv::Redis;

/// The deny-list of one instance. Cheap to clone.
#[derive(Clone)]
pub struct Revocations {
    inner: Arc<Inner>,
}

struct Inner {
    /// Key → deadline (epoch ms); each entry expires at its deadline.
    entries: moka::sync::Cache<String, i64>,
    db: Db,
    /// Whether `entries` holds the whole table (since the current subscription began, in scale-out).
    loaded: AtomicBool,
    /// Scale-out: the announcement channel's connection.
    redis: Option<Redis>,
    /// When the subscription last delivered a message (epoch ms); scale-out only.
    last_heard_ms: AtomicI64,
}

/// The copy is trusted only while its subscription delivered something this recently (heartbeats go out every
/// [`HEARTBEAT_EVERY`]).
pub const MIRROR_STALE_AFTER: Duration = Duration::from_millis(3_000);
const HEARTBEAT_EVERY: Duration = Duration::from_millis(1_000);
/// A missed announcement (its publish failed while this subscription stayed up) is repaired within this.
pub const FULL_RELOAD_EVERY: Duration = Duration::from_secs(10);

/// Where checks are answered right now (for `/debug/tasks` and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// Embedded: the in-process copy.
    Local,
    /// Scale-out: the in-process copy, kept current by announcements.
    Mirror,
    /// The copy is not current: each check asks the database.
    Database,
}

impl Answered {
    pub fn as_str(self) -> &'static str {
        match self {
            Answered::Local => "local",
            Answered::Mirror => "mirror",
            Answered::Database => "database",
        }
    }
}

impl Inner {
    fn current(&self) -> bool {
        self.loaded.load(Ordering::SeqCst)
            && (self.redis.is_none()
                || now_ms() - self.last_heard_ms.load(Ordering::SeqCst) < MIRROR_STALE_AFTER.as_millis() as i64)
    }

    /// Whether the in-process copy denies any of `keys` now.
    fn denies(&self, keys: &[Box<str>]) -> bool {
        let now = now_ms();
        keys.iter().any(|k| self.entries.get(&**k).is_some_and(|until| until > now))
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
    /// The deny-list over `db`; with `redis`, followed across instances. When the database cannot be read at
    /// start, the server still starts (and is not ready); checks ask the database until the copy loads.
    pub async fn new(redis: Option<Redis>, db: &Db) -> Revocations {
        let inner = Arc::new(Inner {
            entries: moka::sync::Cache::builder().expire_after(UntilDeadline).build(),
            db: db.clone(),
            loaded: AtomicBool::new(false),
            redis: redis.clone(),
            last_heard_ms: AtomicI64::new(0),
        });
        match redis {
            Some(redis) => {
                tokio::spawn(crate::db::guard::scope(db.write_guard(), follow(redis, Arc::downgrade(&inner))));
            }
            None => {
                if let Err(error) = reload(&inner).await {
                    tracing::error!(%error, "cannot load the deny-list yet; token checks ask the database");
                }
            }
        }
        Revocations { inner }
    }

    /// Denies `key` until `until_ms` (epoch milliseconds). Durable once this returns: written to the database
    /// first, then applied here and announced to the other instances.
    pub async fn revoke(&self, key: &str, until_ms: i64) -> Result<(), AppError> {
        if until_ms <= now_ms() {
            return Ok(());
        }
        sqlx::query("REPLACE INTO revocation (revoked_key, expires_at) VALUES (?, ?)")
            .bind(key)
            .bind(until_ms)
            .execute(&self.inner.db.pool)
            .bounded()
            .await?;
        self.inner.entries.insert(key.to_owned(), until_ms);
        self.announce(format!("R {until_ms} {key}")).await;
        Ok(())
    }

    /// Lifts a denial early (an unban).
    pub async fn lift(&self, key: &str) -> Result<(), AppError> {
        sqlx::query("DELETE FROM revocation WHERE revoked_key = ?")
            .bind(key)
            .execute(&self.inner.db.pool)
            .bounded()
            .await?;
        self.inner.entries.invalidate(key);
        self.announce(format!("L {key}")).await;
        Ok(())
    }

    /// Tells the other instances (scale-out). The change is already durable: when the announcement cannot be
    /// sent, Redis is failing, other instances' subscriptions go silent and their checks ask the database; an
    /// instance that stayed subscribed catches up at its next full reload.
    async fn announce(&self, message: String) {
        let Some(redis) = &self.inner.redis else { return };
        let sent = redis::cmd("PUBLISH").arg(channel(redis)).arg(message).query_async::<i64>(&mut redis.conn()).await;
        if let Err(error) = sent {
            tracing::warn!(%error, "could not announce a deny-list change; other instances catch up from the database");
            metrics::counter!("redis_errors_total", "operation" => "revocation_announce").increment(1);
        }
    }

    /// Whether any of `keys` is denied: from memory when the copy is current, otherwise from the database. Fails
    /// closed: when neither can answer, the request is refused with 503 rather than let a revoked token through.
    pub async fn any_revoked(&self, keys: &[Box<str>]) -> Result<bool, AppError> {
        let inner = &self.inner;
        if inner.current() {
            return Ok(inner.denies(keys));
        }
        metrics::counter!("revocation_mirror_misses_total").increment(1);
        if inner.redis.is_none() {
            // Embedded: nobody else loads the copy; try once more (it answers this check too).
            if reload(inner).await.is_ok() {
                return Ok(inner.denies(keys));
            }
        }
        denied_in_database(&inner.db, keys).await.map_err(unavailable)
    }

    /// Where checks are answered right now.
    pub fn answered(&self) -> Answered {
        match (self.inner.redis.is_some(), self.inner.current()) {
            (_, false) => Answered::Database,
            (false, true) => Answered::Local,
            (true, true) => Answered::Mirror,
        }
    }
}

fn channel(redis: &Redis) -> String {
    redis.key("revocations")
}

/// Keeps the copy current while it lives: subscribe, load the table, apply announcements, send and hear
/// heartbeats, reload in full now and then; start over after any failure.
async fn follow(redis: Redis, inner: Weak<Inner>) {
    loop {
        if inner.strong_count() == 0 {
            return;
        }
        if let Err(error) = follow_once(&redis, &inner).await {
            tracing::warn!(%error, "deny-list follower lost its subscription; checks ask the database until it is back");
            metrics::counter!("redis_errors_total", "operation" => "revocation_mirror").increment(1);
        }
        if let Some(inner) = inner.upgrade() {
            inner.loaded.store(false, Ordering::SeqCst);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn follow_once(redis: &Redis, weak: &Weak<Inner>) -> anyhow::Result<()> {
    let channel = channel(redis);
    let mut pubsub = tokio::time::timeout(Duration::from_secs(2), redis.pubsub())
        .await
        .map_err(|_| anyhow::anyhow!("subscribing timed out"))??;
    pubsub.subscribe(&channel).await?;
    {
        let Some(inner) = weak.upgrade() else { return Ok(()) };
        inner.heard();
        // Subscribed before loading: a change committed after the load began is announced to us.
        reload(&inner).await?;
    }
    let mut messages = pubsub.on_message();
    let mut heartbeat = tokio::time::interval(HEARTBEAT_EVERY);
    let mut full_reload = tokio::time::interval(FULL_RELOAD_EVERY);
    full_reload.tick().await;
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else { anyhow::bail!("subscription closed") };
                let Some(inner) = weak.upgrade() else { return Ok(()) };
                inner.heard();
                let payload: String = message.get_payload().unwrap_or_default();
                apply(&inner, &payload);
            }
            _ = heartbeat.tick() => {
                if weak.strong_count() == 0 {
                    return Ok(());
                }
                // Any instance's heartbeat proves this subscription still delivers; a failed publish only means
                // that the copy goes stale and checks ask the database.
                let _ = redis::cmd("PUBLISH").arg(&channel).arg("H").query_async::<i64>(&mut redis.conn()).await;
            }
            _ = full_reload.tick() => {
                let Some(inner) = weak.upgrade() else { return Ok(()) };
                reload(&inner).await?;
            }
        }
    }
}

/// One announcement: `R <until_ms> <key>` (revoked), `L <key>` (lifted) or `H` (heartbeat).
fn apply(inner: &Inner, payload: &str) {
    if let Some(key) = payload.strip_prefix("L ") {
        inner.entries.invalidate(key);
    } else if let Some((until, key)) = payload.strip_prefix("R ").and_then(|rest| rest.split_once(' ')) {
        if let Ok(until) = until.parse::<i64>() {
            inner.entries.insert(key.to_owned(), until);
        }
    }
}

/// Makes the copy equal to the table (expired rows are deleted first) and marks it loaded.
async fn reload(inner: &Inner) -> Result<(), sqlx::Error> {
    // Only entries the copy held before reading may be dropped for missing from the table: one added meanwhile
    // (a revocation made on this instance) may be newer than what the read saw.
    let before: HashSet<String> = inner.entries.iter().map(|(key, _)| key.as_ref().clone()).collect();
    let now = now_ms();
    sqlx::query("DELETE FROM revocation WHERE expires_at <= ?").bind(now).execute(&inner.db.pool).bounded().await?;
    let rows =
        sqlx::query("SELECT revoked_key, expires_at FROM revocation").fetch_all(&inner.db.pool).bounded().await?;
    let mut present = HashSet::with_capacity(rows.len());
    for row in rows {
        let key: String = crate::db::get_text(&row, "revoked_key")?;
        inner.entries.insert(key.clone(), row.try_get::<i64, _>("expires_at")?);
        present.insert(key);
    }
    // Lifted while nobody told us.
    for key in before.difference(&present) {
        inner.entries.invalidate(key);
    }
    inner.loaded.store(true, Ordering::SeqCst);
    Ok(())
}

/// Whether the table denies any of `keys` now.
async fn denied_in_database(db: &Db, keys: &[Box<str>]) -> Result<bool, sqlx::Error> {
    if keys.is_empty() {
        return Ok(false);
    }
    let placeholders = vec!["?"; keys.len()].join(", ");
    let sql = format!("SELECT COUNT(*) AS n FROM revocation WHERE expires_at > ? AND revoked_key IN ({placeholders})");
    let mut query = sqlx::query(&sql).bind(now_ms());
    for key in keys {
        query = query.bind(&**key);
    }
    let row = query.fetch_one(&db.pool).bounded().await?;
    Ok(row.try_get::<i64, _>("n")? > 0)
}

fn unavailable(error: sqlx::Error) -> AppError {
    tracing::error!(%error, "deny-list unavailable: neither the in-process copy nor the database can answer");
    metrics::counter!("revocation_unavailable_total").increment(1);
    AppError::Unavailable { code: "auth_unavailable", message: "cannot check token revocation right now".into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inner() -> Inner {
        // A lazy pool that is never used: the database is not needed for announcements.
        let config = crate::config::Config {
            data_dir: std::env::temp_dir().join("wxshop-revocation-unit-test"),
            ..crate::config::Config::default()
        };
        Inner {
            entries: moka::sync::Cache::builder().expire_after(UntilDeadline).build(),
            db: Db::connect_lazy(&config).unwrap(),
            loaded: AtomicBool::new(true),
            redis: None,
            last_heard_ms: AtomicI64::new(now_ms()),
        }
    }

    #[tokio::test]
    async fn announcements_update_the_copy_and_junk_is_ignored() {
        let inner = inner();
        let until = now_ms() + 60_000;
        apply(&inner, &format!("R {until} jti:a b"));
        assert_eq!(inner.entries.get("jti:a b"), Some(until), "keys may contain spaces");
        apply(&inner, "L jti:a b");
        assert_eq!(inner.entries.get("jti:a b"), None, "lifted");
        for junk in ["", "H", "R", "R soon jti:x", "X jti:x", "L"] {
            apply(&inner, junk);
        }
        assert_eq!(inner.entries.iter().count(), 0);
        assert!(inner.current());
    }
}
