//! SQL of `admin_user`.

use sqlx::{AnyConnection, AnyPool, Row};

use crate::db::insert_returning_id;
use crate::db::Bounded;

pub struct AdminRow {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub role: String,
    pub status: String,
}

fn admin_row(r: &sqlx::any::AnyRow) -> Result<AdminRow, sqlx::Error> {
    Ok(AdminRow {
        id: r.try_get("id")?,
        username: r.try_get("username")?,
        password_hash: r.try_get("password_hash")?,
        role: r.try_get("role")?,
        status: r.try_get("status")?,
    })
}

pub async fn insert_admin(
    conn: &mut AnyConnection,
    username: &str,
    password_hash: &str,
    role: &str,
    now: i64,
) -> Result<i64, sqlx::Error> {
    let query = sqlx::query(
        "INSERT INTO admin_user (username, password_hash, role, status, created_at, updated_at) \
         VALUES (?, ?, ?, 'active', ?, ?)",
    )
    .bind(username.to_owned())
    .bind(password_hash.to_owned())
    .bind(role.to_owned())
    .bind(now)
    .bind(now);
    insert_returning_id(conn, query).await
}

pub async fn find_by_username(pool: &AnyPool, username: &str) -> Result<Option<AdminRow>, sqlx::Error> {
    let row = sqlx::query("SELECT id, username, password_hash, role, status FROM admin_user WHERE username = ?")
        .bind(username.to_owned())
        .fetch_optional(pool)
        .bounded()
        .await?;
    row.as_ref().map(admin_row).transpose()
}

pub async fn find_by_id(pool: &AnyPool, id: i64) -> Result<Option<AdminRow>, sqlx::Error> {
    let row = sqlx::query("SELECT id, username, password_hash, role, status FROM admin_user WHERE id = ?")
        .bind(id)
        .fetch_optional(pool)
        .bounded()
        .await?;
    row.as_ref().map(admin_row).transpose()
}

pub async fn touch_login(pool: &AnyPool, id: i64, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE admin_user SET last_login_at = ? WHERE id = ?")
        .bind(now)
        .bind(id)
        .execute(pool)
        .bounded()
        .await?;
    Ok(())
}
