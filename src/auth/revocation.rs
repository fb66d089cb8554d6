//! The deny-list: access tokens (`jti:<id>`), login sessions (`sid:<family>`) and banned users (`user:<id>`) that
//! must stop working before their tokens expire.
//!
//! Scale-out keeps it in Redis, so a logout or a ban on one instance is refused by every instance on the next
//! request. The embedded default keeps it in process and persists it in the `revocation` table, so a restart
//! forgets nothing. Entries live only until every token they concern has expired.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
    Redis(Redis),
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
            return Revocations::Redis(redis);
        }
        let entries = moka::sync::Cache::builder().expire_after(UntilDeadline).build();
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
            Revocations::Redis(redis) => {
                let mut conn = redis.conn();
                redis::cmd("SET")
                    .arg(redis.key(&format!("revoked:{key}")))
                    .arg(until_ms)
                    .arg("PX")
                    .arg(ttl_ms)
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(unavailable)
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
            Revocations::Redis(redis) => {
                let mut conn = redis.conn();
                redis::cmd("DEL")
                    .arg(redis.key(&format!("revoked:{key}")))
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(unavailable)
            }
        }
    }

    /// Whether any of `keys` is denied. One round trip in scale-out. Fails closed: if the deny-list cannot be
    /// read, the request is refused with 503 rather than let a revoked token through.
    pub async fn any_revoked(&self, keys: &[String]) -> Result<bool, AppError> {
        match self {
            Revocations::Local { entries, db, loaded } => {
                if !loaded.load(Ordering::SeqCst) {
                    load(entries, db).await?;
                    loaded.store(true, Ordering::SeqCst);
                }
                let now = now_ms();
                Ok(keys.iter().any(|k| entries.get(k).is_some_and(|until| until > now)))
            }
            Revocations::Redis(redis) => {
                let mut conn = redis.conn();
                let prefixed: Vec<String> = keys.iter().map(|k| redis.key(&format!("revoked:{k}"))).collect();
                let found: Vec<Option<String>> =
                    redis::cmd("MGET").arg(&prefixed).query_async(&mut conn).await.map_err(unavailable)?;
                Ok(found.iter().any(Option::is_some))
            }
        }
    }
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
