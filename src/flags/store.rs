//! SQL of `feature_flag`, `feature_flag_audit` and `feature_flag_state`.

use sqlx::{AnyConnection, AnyPool, Row};

use crate::db::{get_text, Bounded, Db};
use crate::flags::engine::Flag;

/// The global version: bumped by every change, polled by every instance.
pub async fn global_version(pool: &AnyPool) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT version FROM feature_flag_state WHERE id = 1")
        .fetch_one(pool)
        .bounded()
        .await?
        .try_get("version")
}

/// Every flag and the global version, read in one transaction so they agree.
pub async fn load_all(db: &Db) -> Result<(i64, Vec<Flag>), sqlx::Error> {
    let mut tx = db.begin_read().await?;
    let version: i64 = sqlx::query("SELECT version FROM feature_flag_state WHERE id = 1")
        .fetch_one(&mut *tx)
        .bounded()
        .await?
        .try_get("version")?;
    let rows =
        sqlx::query("SELECT definition FROM feature_flag ORDER BY flag_key").fetch_all(&mut *tx).bounded().await?;
    tx.commit().bounded().await?;
    let mut flags = Vec::with_capacity(rows.len());
    for row in rows {
        let text = get_text(&row, "definition")?;
        match serde_json::from_str::<Flag>(&text) {
            Ok(flag) => flags.push(flag),
            Err(error) => tracing::error!(%error, "a stored flag does not parse; skipped"),
        }
    }
    Ok((version, flags))
}

/// The flag, locked for the rest of the transaction (MySQL), for a read-modify-write.
pub async fn get_for_update(
    conn: &mut AnyConnection,
    key: &str,
    for_update: &str,
) -> Result<Option<Flag>, sqlx::Error> {
    let row = sqlx::query(&format!("SELECT definition FROM feature_flag WHERE flag_key = ?{for_update}"))
        .bind(key.to_owned())
        .fetch_optional(&mut *conn)
        .bounded()
        .await?;
    match row {
        Some(row) => {
            let text = get_text(&row, "definition")?;
            serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| sqlx::Error::Decode(format!("flag {key} does not parse: {e}").into()))
        }
        None => Ok(None),
    }
}

pub async fn insert(conn: &mut AnyConnection, flag: &Flag, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO feature_flag (flag_key, definition, version, updated_at) VALUES (?, ?, ?, ?)")
        .bind(flag.key.clone())
        .bind(serde_json::to_string(flag).expect("a flag serializes"))
        .bind(flag.version)
        .bind(now)
        .execute(&mut *conn)
        .bounded()
        .await?;
    Ok(())
}

pub async fn update(conn: &mut AnyConnection, flag: &Flag, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE feature_flag SET definition = ?, version = ?, updated_at = ? WHERE flag_key = ?")
        .bind(serde_json::to_string(flag).expect("a flag serializes"))
        .bind(flag.version)
        .bind(now)
        .bind(flag.key.clone())
        .execute(&mut *conn)
        .bounded()
        .await?;
    Ok(())
}

/// Bumps the global version (serializing flag writes) and returns it.
pub async fn bump(conn: &mut AnyConnection) -> Result<i64, sqlx::Error> {
    sqlx::query("UPDATE feature_flag_state SET version = version + 1 WHERE id = 1")
        .execute(&mut *conn)
        .bounded()
        .await?;
    sqlx::query("SELECT version FROM feature_flag_state WHERE id = 1")
        .fetch_one(&mut *conn)
        .bounded()
        .await?
        .try_get("version")
}

pub struct AuditEntry<'a> {
    pub key: &'a str,
    pub version: i64,
    pub actor: &'a str,
    pub action: &'a str,
    pub before: Option<&'a Flag>,
    pub after: &'a Flag,
    pub reason: &'a str,
    pub at: i64,
}

pub async fn audit(conn: &mut AnyConnection, e: &AuditEntry<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO feature_flag_audit (flag_key, version, actor, action, before_json, after_json, reason, at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(e.key.to_owned())
    .bind(e.version)
    .bind(e.actor.to_owned())
    .bind(e.action.to_owned())
    .bind(e.before.map(|f| serde_json::to_string(f).expect("a flag serializes")))
    .bind(serde_json::to_string(e.after).expect("a flag serializes"))
    .bind(e.reason.to_owned())
    .bind(e.at)
    .execute(&mut *conn)
    .bounded()
    .await?;
    Ok(())
}

/// One audit row, as stored.
pub struct AuditRow {
    pub version: i64,
    pub actor: String,
    pub action: String,
    pub before: Option<String>,
    pub after: String,
    pub reason: String,
    pub at: i64,
}

pub async fn history(pool: &AnyPool, key: &str) -> Result<Vec<AuditRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT version, actor, action, before_json, after_json, reason, at FROM feature_flag_audit \
         WHERE flag_key = ? ORDER BY version DESC LIMIT 200",
    )
    .bind(key.to_owned())
    .fetch_all(pool)
    .bounded()
    .await?;
    rows.iter()
        .map(|r| {
            let before = match r.try_get::<Option<String>, _>("before_json") {
                Ok(v) => v,
                Err(_) => {
                    r.try_get::<Option<Vec<u8>>, _>("before_json")?.map(|b| String::from_utf8_lossy(&b).into_owned())
                }
            };
            Ok(AuditRow {
                version: r.try_get("version")?,
                actor: get_text(r, "actor")?,
                action: get_text(r, "action")?,
                before,
                after: get_text(r, "after_json")?,
                reason: get_text(r, "reason")?,
                at: r.try_get("at")?,
            })
        })
        .collect()
}

/// The flag as it was right after `version` (for a revert).
pub async fn at_version(conn: &mut AnyConnection, key: &str, version: i64) -> Result<Option<Flag>, sqlx::Error> {
    let row = sqlx::query("SELECT after_json FROM feature_flag_audit WHERE flag_key = ? AND version = ?")
        .bind(key.to_owned())
        .bind(version)
        .fetch_optional(&mut *conn)
        .bounded()
        .await?;
    match row {
        Some(row) => {
            let text = get_text(&row, "after_json")?;
            serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| sqlx::Error::Decode(format!("flag {key} v{version} does not parse: {e}").into()))
        }
        None => Ok(None),
    }
}
