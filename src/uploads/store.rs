//! SQL of `upload`.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

use crate::db::{get_text, Bounded};

#[derive(Debug, Clone)]
pub struct UploadRow {
    pub id: String,
    pub owner_kind: String,
    pub owner_id: i64,
    pub purpose: String,
    pub incoming_key: String,
    pub content_type: String,
    pub max_bytes: i64,
    pub status: String,
    pub reject_code: Option<String>,
    pub reject_message: Option<String>,
    pub object_key: Option<String>,
    pub sha256: Option<String>,
    pub final_type: Option<String>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub size_bytes: Option<i64>,
    pub expires_at: i64,
    pub created_at: i64,
}

const COLUMNS: &str = "id, owner_kind, owner_id, purpose, incoming_key, content_type, max_bytes, status, reject_code, \
    reject_message, object_key, sha256, final_type, width, height, size_bytes, expires_at, created_at";

fn opt_text(row: &AnyRow, column: &str) -> Result<Option<String>, sqlx::Error> {
    let present: Option<Vec<u8>> = match row.try_get::<Option<String>, _>(column) {
        Ok(text) => return Ok(text),
        Err(sqlx::Error::ColumnDecode { .. }) => row.try_get(column)?,
        Err(other) => return Err(other),
    };
    present
        .map(|bytes| {
            String::from_utf8(bytes)
                .map_err(|e| sqlx::Error::ColumnDecode { index: column.into(), source: Box::new(e) })
        })
        .transpose()
}

fn upload_row(r: &AnyRow) -> Result<UploadRow, sqlx::Error> {
    Ok(UploadRow {
        id: get_text(r, "id")?,
        owner_kind: get_text(r, "owner_kind")?,
        owner_id: r.try_get("owner_id")?,
        purpose: get_text(r, "purpose")?,
        incoming_key: get_text(r, "incoming_key")?,
        content_type: get_text(r, "content_type")?,
        max_bytes: r.try_get("max_bytes")?,
        status: get_text(r, "status")?,
        reject_code: opt_text(r, "reject_code")?,
        reject_message: opt_text(r, "reject_message")?,
        object_key: opt_text(r, "object_key")?,
        sha256: opt_text(r, "sha256")?,
        final_type: opt_text(r, "final_type")?,
        width: r
            .try_get::<Option<i64>, _>("width")
            .or_else(|_| r.try_get::<Option<i32>, _>("width").map(|v| v.map(i64::from)))?,
        height: r
            .try_get::<Option<i64>, _>("height")
            .or_else(|_| r.try_get::<Option<i32>, _>("height").map(|v| v.map(i64::from)))?,
        size_bytes: r.try_get("size_bytes")?,
        expires_at: r.try_get("expires_at")?,
        created_at: r.try_get("created_at")?,
    })
}

pub struct NewUpload<'a> {
    pub id: &'a str,
    pub owner_kind: &'a str,
    pub owner_id: i64,
    pub purpose: &'a str,
    pub incoming_key: &'a str,
    pub content_type: &'a str,
    pub max_bytes: i64,
    pub expires_at: i64,
    pub now: i64,
}

pub async fn insert(pool: &AnyPool, u: &NewUpload<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO upload (id, owner_kind, owner_id, purpose, incoming_key, content_type, max_bytes, status, \
         expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
    )
    .bind(u.id.to_owned())
    .bind(u.owner_kind.to_owned())
    .bind(u.owner_id)
    .bind(u.purpose.to_owned())
    .bind(u.incoming_key.to_owned())
    .bind(u.content_type.to_owned())
    .bind(u.max_bytes)
    .bind(u.expires_at)
    .bind(u.now)
    .execute(pool)
    .bounded()
    .await?;
    Ok(())
}

/// Credentials the owner was given since `since` (the daily quota).
pub async fn count_since(pool: &AnyPool, owner_kind: &str, owner_id: i64, since: i64) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT COUNT(*) AS n FROM upload WHERE owner_kind = ? AND owner_id = ? AND created_at >= ?")
        .bind(owner_kind.to_owned())
        .bind(owner_id)
        .bind(since)
        .fetch_one(pool)
        .bounded()
        .await?
        .try_get("n")
}

pub async fn get(pool: &AnyPool, id: &str) -> Result<Option<UploadRow>, sqlx::Error> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM upload WHERE id = ?"))
        .bind(id.to_owned())
        .fetch_optional(pool)
        .bounded()
        .await?;
    row.as_ref().map(upload_row).transpose()
}

pub struct Committed<'a> {
    pub object_key: &'a str,
    pub sha256: &'a str,
    pub final_type: &'a str,
    pub width: i64,
    pub height: i64,
    pub size_bytes: i64,
}

/// pending → committed; false when another completion got there first.
pub async fn commit(pool: &AnyPool, id: &str, c: &Committed<'_>, now: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE upload SET status = 'committed', object_key = ?, sha256 = ?, final_type = ?, width = ?, height = ?, \
         size_bytes = ?, committed_at = ? WHERE id = ? AND status = 'pending'",
    )
    .bind(c.object_key.to_owned())
    .bind(c.sha256.to_owned())
    .bind(c.final_type.to_owned())
    .bind(c.width)
    .bind(c.height)
    .bind(c.size_bytes)
    .bind(now)
    .bind(id.to_owned())
    .execute(pool)
    .bounded()
    .await?;
    Ok(done.rows_affected() == 1)
}

/// pending → rejected (or expired) with a code; false when it was no longer pending.
pub async fn reject(pool: &AnyPool, id: &str, status: &str, code: &str, message: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE upload SET status = ?, reject_code = ?, reject_message = ? WHERE id = ? AND status = 'pending'",
    )
    .bind(status.to_owned())
    .bind(code.to_owned())
    .bind(message.chars().take(250).collect::<String>())
    .bind(id.to_owned())
    .execute(pool)
    .bounded()
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Pending uploads whose credential expired before `before`.
pub async fn abandoned(pool: &AnyPool, before: i64, limit: i64) -> Result<Vec<UploadRow>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM upload WHERE status = 'pending' AND expires_at < ? ORDER BY expires_at LIMIT ?"
    ))
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .bounded()
    .await?;
    rows.iter().map(upload_row).collect()
}

/// Committed uploads of the same content (one object serves them all).
pub async fn committed_with_sha(conn: &mut AnyConnection, sha: &str) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query("SELECT id FROM upload WHERE sha256 = ? AND status = 'committed'")
        .bind(sha.to_owned())
        .fetch_all(&mut *conn)
        .bounded()
        .await?;
    rows.iter().map(|r| get_text(r, "id")).collect()
}

/// Every committed upload of this content → removed (taken down).
pub async fn remove_sha(conn: &mut AnyConnection, sha: &str) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("UPDATE upload SET status = 'removed' WHERE sha256 = ? AND status = 'committed'")
        .bind(sha.to_owned())
        .execute(&mut *conn)
        .bounded()
        .await?;
    Ok(done.rows_affected())
}

/// Takes `url` out of every avatar and product gallery showing it; returns the products changed (their cached
/// responses must go).
pub async fn clear_references(
    conn: &mut AnyConnection,
    url: &str,
    object_key: &str,
    now: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query("UPDATE app_user SET avatar_url = '', updated_at = ? WHERE avatar_url = ?")
        .bind(now)
        .bind(url.to_owned())
        .execute(&mut *conn)
        .bounded()
        .await?;
    // The key is hex, '/' and '.': no LIKE wildcard in it.
    let rows = sqlx::query("SELECT id, image_urls FROM product WHERE image_urls LIKE ?")
        .bind(format!("%{object_key}%"))
        .fetch_all(&mut *conn)
        .bounded()
        .await?;
    let mut changed = Vec::new();
    for row in rows {
        let id: i64 = row.try_get("id")?;
        let images: Vec<String> = serde_json::from_str(&get_text(&row, "image_urls")?).unwrap_or_default();
        let kept: Vec<&String> = images.iter().filter(|u| u.as_str() != url).collect();
        if kept.len() == images.len() {
            continue;
        }
        sqlx::query("UPDATE product SET image_urls = ?, updated_at = ? WHERE id = ?")
            .bind(serde_json::to_string(&kept).expect("strings serialize"))
            .bind(now)
            .bind(id)
            .execute(&mut *conn)
            .bounded()
            .await?;
        changed.push(id);
    }
    Ok(changed)
}
