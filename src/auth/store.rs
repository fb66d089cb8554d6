//! SQL of refresh-token families.

use sqlx::{Any, AnyConnection, AnyPool, Executor, Row};

use crate::db::insert_returning_id;
use crate::db::Bounded;

pub struct RefreshRow {
    pub id: i64,
    pub family_id: i64,
    pub idle_expires_at: i64,
    pub rotated_at: Option<i64>,
    pub subject_kind: String,
    pub subject_id: i64,
    pub family_revoked_at: Option<i64>,
    pub family_expires_at: i64,
}

pub async fn insert_family(
    conn: &mut AnyConnection,
    subject_kind: &str,
    subject_id: i64,
    now: i64,
    absolute_expires_at: i64,
) -> Result<i64, sqlx::Error> {
    let query = sqlx::query(
        "INSERT INTO auth_family (subject_kind, subject_id, created_at, absolute_expires_at) VALUES (?, ?, ?, ?)",
    )
    .bind(subject_kind.to_owned())
    .bind(subject_id)
    .bind(now)
    .bind(absolute_expires_at);
    insert_returning_id(conn, query).await
}

pub async fn insert_refresh_token(
    conn: &mut AnyConnection,
    family_id: i64,
    token_hash: &str,
    now: i64,
    idle_expires_at: i64,
) -> Result<i64, sqlx::Error> {
    let query = sqlx::query(
        "INSERT INTO refresh_token (auth_family_id, token_hash, created_at, idle_expires_at) VALUES (?, ?, ?, ?)",
    )
    .bind(family_id)
    .bind(token_hash.to_owned())
    .bind(now)
    .bind(idle_expires_at);
    insert_returning_id(conn, query).await
}

pub async fn find_refresh_token(pool: &AnyPool, token_hash: &str) -> Result<Option<RefreshRow>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT t.id, t.auth_family_id, t.idle_expires_at, t.rotated_at, \
                f.subject_kind, f.subject_id, f.revoked_at, f.absolute_expires_at \
         FROM refresh_token t JOIN auth_family f ON f.id = t.auth_family_id WHERE t.token_hash = ?",
    )
    .bind(token_hash)
    .fetch_optional(pool)
    .bounded()
    .await?;
    row.map(|r| {
        Ok(RefreshRow {
            id: r.try_get("id")?,
            family_id: r.try_get("auth_family_id")?,
            idle_expires_at: r.try_get("idle_expires_at")?,
            rotated_at: r.try_get("rotated_at")?,
            subject_kind: r.try_get("subject_kind")?,
            subject_id: r.try_get("subject_id")?,
            family_revoked_at: r.try_get("revoked_at")?,
            family_expires_at: r.try_get("absolute_expires_at")?,
        })
    })
    .transpose()
}

/// Retires a token if nobody retired it yet. Returns whether this call did (the winner of a race).
pub async fn mark_rotated(conn: &mut AnyConnection, id: i64, now: i64) -> Result<bool, sqlx::Error> {
    let result = sqlx::query("UPDATE refresh_token SET rotated_at = ? WHERE id = ? AND rotated_at IS NULL")
        .bind(now)
        .bind(id)
        .execute(conn)
        .bounded()
        .await?;
    Ok(result.rows_affected() == 1)
}

pub async fn revoke_family<'c, E>(executor: E, family_id: i64, now: i64, reason: &str) -> Result<bool, sqlx::Error>
where
    E: Executor<'c, Database = Any>,
{
    let result =
        sqlx::query("UPDATE auth_family SET revoked_at = ?, revoke_reason = ? WHERE id = ? AND revoked_at IS NULL")
            .bind(now)
            .bind(reason.to_owned())
            .bind(family_id)
            .execute(executor)
            .bounded()
            .await?;
    Ok(result.rows_affected() == 1)
}

/// The subject's families still alive at `now`.
pub async fn live_families(
    pool: &AnyPool,
    subject_kind: &str,
    subject_id: i64,
    now: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id FROM auth_family WHERE subject_kind = ? AND subject_id = ? AND revoked_at IS NULL \
         AND absolute_expires_at > ?",
    )
    .bind(subject_kind.to_owned())
    .bind(subject_id)
    .bind(now)
    .fetch_all(pool)
    .bounded()
    .await?;
    rows.iter().map(|r| r.try_get("id")).collect()
}

pub async fn count_family_tokens(pool: &AnyPool, family_id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT COUNT(*) AS n FROM refresh_token WHERE auth_family_id = ?")
        .bind(family_id)
        .fetch_one(pool)
        .bounded()
        .await?
        .try_get("n")
}
