//! SQL of `app_user`.

use sqlx::{AnyPool, Row};

use crate::db::Bounded;

pub struct UserRow {
    pub id: i64,
    pub nickname: String,
    pub avatar_url: String,
    pub phone: Option<String>,
    pub status: String,
    pub created_at: i64,
}

const COLUMNS: &str = "id, nickname, avatar_url, phone, status, created_at";

fn user_row(r: &sqlx::any::AnyRow) -> Result<UserRow, sqlx::Error> {
    Ok(UserRow {
        id: r.try_get("id")?,
        nickname: r.try_get("nickname")?,
        avatar_url: r.try_get("avatar_url")?,
        phone: r.try_get("phone")?,
        status: r.try_get("status")?,
        created_at: r.try_get("created_at")?,
    })
}

pub struct WechatIdentity<'a> {
    pub app_id: &'a str,
    pub openid: &'a str,
    pub unionid: Option<&'a str>,
    pub sealed_session_key: &'a str,
}

/// Finds or creates the user of a WeChat identity and records the login. Returns the user and whether this call
/// created it: concurrent first logins create one row, and exactly one of them reports it as new.
///
/// The INSERT (with its `user.registered` event) commits on its own, before the UPDATE: in one transaction InnoDB
/// would hold the shared lock a duplicate INSERT takes until the UPDATE asks for an exclusive one, and concurrent
/// logins of one new user deadlock (1213). The row exists after the first commit whatever happens, so nothing needs
/// the UPDATE atomic with it.
pub async fn upsert_wechat_user(
    db: &crate::db::Db,
    identity: &WechatIdentity<'_>,
    now: i64,
) -> Result<(UserRow, bool), sqlx::Error> {
    let pool = &db.pool;
    let insert = format!(
        "{} INTO app_user (app_id, openid, unionid, session_key_enc, status, created_at, updated_at, last_login_at) \
         VALUES (?, ?, ?, ?, 'active', ?, ?, ?)",
        db.dialect.insert_ignore()
    );
    // The insert and its `user.registered` event commit together (no UPDATE in this transaction: see above).
    let mut tx = db.begin_write().await?;
    let inserted = sqlx::query(&insert)
        .bind(identity.app_id.to_owned())
        .bind(identity.openid.to_owned())
        .bind(identity.unionid.map(str::to_owned))
        .bind(identity.sealed_session_key.to_owned())
        .bind(now)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .bounded()
        .await?
        .rows_affected()
        == 1;
    if inserted {
        let row = sqlx::query("SELECT id FROM app_user WHERE app_id = ? AND openid = ?")
            .bind(identity.app_id.to_owned())
            .bind(identity.openid.to_owned())
            .fetch_one(&mut *tx)
            .bounded()
            .await?;
        let id: i64 = row.try_get("id")?;
        let data = serde_json::json!({ "user_id": id, "app_id": identity.app_id });
        crate::events::record(&mut tx, crate::events::Event::new("user", id, "user.registered", data)).await?;
    }
    tx.commit().bounded().await?;
    if !inserted {
        sqlx::query(
            "UPDATE app_user SET session_key_enc = ?, unionid = COALESCE(?, unionid), last_login_at = ?, updated_at = ? \
             WHERE app_id = ? AND openid = ?",
        )
        .bind(identity.sealed_session_key.to_owned())
        .bind(identity.unionid.map(str::to_owned))
        .bind(now)
        .bind(now)
        .bind(identity.app_id.to_owned())
        .bind(identity.openid.to_owned())
        .execute(pool)
        .bounded().await?;
    }
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM app_user WHERE app_id = ? AND openid = ?"))
        .bind(identity.app_id.to_owned())
        .bind(identity.openid.to_owned())
        .fetch_one(pool)
        .bounded()
        .await?;
    Ok((user_row(&row)?, inserted))
}

pub async fn find_user(pool: &AnyPool, id: i64) -> Result<Option<UserRow>, sqlx::Error> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM app_user WHERE id = ?"))
        .bind(id)
        .fetch_optional(pool)
        .bounded()
        .await?;
    row.as_ref().map(user_row).transpose()
}

pub async fn update_profile(
    pool: &AnyPool,
    id: i64,
    nickname: Option<&str>,
    avatar_url: Option<&str>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE app_user SET nickname = COALESCE(?, nickname), avatar_url = COALESCE(?, avatar_url), updated_at = ? \
         WHERE id = ?",
    )
    .bind(nickname.map(str::to_owned))
    .bind(avatar_url.map(str::to_owned))
    .bind(now)
    .bind(id)
    .execute(pool)
    .bounded()
    .await?;
    Ok(())
}

pub async fn set_phone(pool: &AnyPool, id: i64, phone: &str, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE app_user SET phone = ?, updated_at = ? WHERE id = ?")
        .bind(phone.to_owned())
        .bind(now)
        .bind(id)
        .execute(pool)
        .bounded()
        .await?;
    Ok(())
}

/// Sets `active` or `banned`. Returns whether the user exists.
pub async fn set_status(pool: &AnyPool, id: i64, status: &str, now: i64) -> Result<bool, sqlx::Error> {
    let result = sqlx::query("UPDATE app_user SET status = ?, updated_at = ? WHERE id = ?")
        .bind(status.to_owned())
        .bind(now)
        .bind(id)
        .execute(pool)
        .bounded()
        .await?;
    Ok(result.rows_affected() == 1)
}

/// The sealed session key (for server-side use only: decrypting WeChat payloads).
pub async fn sealed_session_key(pool: &AnyPool, id: i64) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query("SELECT session_key_enc FROM app_user WHERE id = ?")
        .bind(id)
        .fetch_optional(pool)
        .bounded()
        .await?;
    row.map(|r| r.try_get("session_key_enc")).transpose()
}
