//! SQL of Idempotency-Keys: claimed before an order is made, completed with its response in the order's
//! transaction, released when the request fails, purged when expired.

use sqlx::{AnyConnection, AnyPool, Row};

use crate::db::{Bounded, Dialect};

pub struct IdempotencyRow {
    pub request_hash: String,
    pub state: String,
    pub response_status: Option<i64>,
    pub response_body: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// Claims `key` for a request; returns whether this call did (false: someone holds it already).
pub async fn claim_key(
    conn: &mut AnyConnection,
    dialect: Dialect,
    user_id: i64,
    key: &str,
    hash: &str,
    now: i64,
    expires_at: i64,
) -> Result<bool, sqlx::Error> {
    let sql = format!(
        "{} INTO idempotency_key (user_id, idem_key, request_hash, state, created_at, expires_at) \
         VALUES (?, ?, ?, 'in_progress', ?, ?)",
        dialect.insert_ignore()
    );
    let result = sqlx::query(&sql)
        .bind(user_id)
        .bind(key.to_owned())
        .bind(hash.to_owned())
        .bind(now)
        .bind(expires_at)
        .execute(conn)
        .bounded()
        .await?;
    Ok(result.rows_affected() == 1)
}

pub async fn find_key(
    conn: &mut AnyConnection,
    user_id: i64,
    key: &str,
) -> Result<Option<IdempotencyRow>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT request_hash, state, response_status, response_body, created_at, expires_at FROM idempotency_key \
         WHERE user_id = ? AND idem_key = ?",
    )
    .bind(user_id)
    .bind(key.to_owned())
    .fetch_optional(conn)
    .bounded()
    .await?;
    row.map(|r| {
        Ok(IdempotencyRow {
            request_hash: r.try_get("request_hash")?,
            state: r.try_get("state")?,
            response_status: r.try_get("response_status")?,
            response_body: match r.try_get::<Option<String>, _>("response_body") {
                Ok(v) => v,
                Err(_) => {
                    r.try_get::<Option<Vec<u8>>, _>("response_body")?.map(|b| String::from_utf8_lossy(&b).into_owned())
                }
            },
            created_at: r.try_get("created_at")?,
            expires_at: r.try_get("expires_at")?,
        })
    })
    .transpose()
}

/// Takes over a key whose request was abandoned (claimed at `claimed_at`, never completed).
pub async fn retake_key(
    conn: &mut AnyConnection,
    user_id: i64,
    key: &str,
    claimed_at: i64,
    now: i64,
    expires_at: i64,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "UPDATE idempotency_key SET created_at = ?, expires_at = ? WHERE user_id = ? AND idem_key = ? \
         AND state = 'in_progress' AND created_at = ?",
    )
    .bind(now)
    .bind(expires_at)
    .bind(user_id)
    .bind(key.to_owned())
    .bind(claimed_at)
    .execute(conn)
    .bounded()
    .await?;
    Ok(result.rows_affected() == 1)
}

pub async fn complete_key(
    conn: &mut AnyConnection,
    user_id: i64,
    key: &str,
    status: u16,
    body: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE idempotency_key SET state = 'done', response_status = ?, response_body = ? WHERE user_id = ? AND idem_key = ?",
    )
    .bind(i64::from(status))
    .bind(body.to_owned())
    .bind(user_id)
    .bind(key.to_owned())
    .execute(conn)
    .bounded().await?;
    Ok(())
}

pub async fn release_key(pool: &AnyPool, user_id: i64, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM idempotency_key WHERE user_id = ? AND idem_key = ? AND state = 'in_progress'")
        .bind(user_id)
        .bind(key.to_owned())
        .execute(pool)
        .bounded()
        .await?;
    Ok(())
}

pub async fn delete_expired_keys(pool: &AnyPool, now: i64) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM idempotency_key WHERE expires_at <= ?")
        .bind(now)
        .execute(pool)
        .bounded()
        .await?
        .rows_affected())
}

/// Deletes an expired key so it can be claimed afresh.
pub async fn delete_key_if_expired(
    conn: &mut AnyConnection,
    user_id: i64,
    key: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM idempotency_key WHERE user_id = ? AND idem_key = ? AND expires_at <= ?")
        .bind(user_id)
        .bind(key.to_owned())
        .bind(now)
        .execute(conn)
        .bounded()
        .await?;
    Ok(())
}
