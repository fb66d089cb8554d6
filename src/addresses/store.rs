//! SQL of `address`.

use sqlx::{AnyConnection, AnyPool, Row};

use crate::db::insert_returning_id;
use crate::db::Bounded;

#[derive(Debug, Clone)]
pub struct AddressRow {
    pub id: i64,
    pub user_id: i64,
    pub recipient: String,
    pub phone: String,
    pub province: String,
    pub city: String,
    pub district: String,
    pub detail: String,
    pub is_default: bool,
}

const COLUMNS: &str = "id, user_id, recipient, phone, province, city, district, detail, is_default";

fn address_row(r: &sqlx::any::AnyRow) -> Result<AddressRow, sqlx::Error> {
    Ok(AddressRow {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        recipient: r.try_get("recipient")?,
        phone: r.try_get("phone")?,
        province: r.try_get("province")?,
        city: r.try_get("city")?,
        district: r.try_get("district")?,
        detail: r.try_get("detail")?,
        is_default: r.try_get::<i64, _>("is_default")? != 0,
    })
}

/// A user's addresses, the default first, then newest first.
pub async fn list(pool: &AnyPool, user_id: i64) -> Result<Vec<AddressRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM address WHERE user_id = ? ORDER BY is_default DESC, id DESC");
    let rows = sqlx::query(&sql).bind(user_id).fetch_all(pool).bounded().await?;
    rows.iter().map(address_row).collect()
}

/// The address `id` if it belongs to `user_id`.
pub async fn find_owned(conn: &mut AnyConnection, user_id: i64, id: i64) -> Result<Option<AddressRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM address WHERE id = ? AND user_id = ?");
    let row = sqlx::query(&sql).bind(id).bind(user_id).fetch_optional(conn).bounded().await?;
    row.as_ref().map(address_row).transpose()
}

pub async fn count(conn: &mut AnyConnection, user_id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT COUNT(*) AS n FROM address WHERE user_id = ?")
        .bind(user_id)
        .fetch_one(conn)
        .bounded()
        .await?
        .try_get("n")
}

pub async fn insert(conn: &mut AnyConnection, a: &AddressRow, now: i64) -> Result<i64, sqlx::Error> {
    let query = sqlx::query(
        "INSERT INTO address (user_id, recipient, phone, province, city, district, detail, is_default, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(a.user_id)
    .bind(a.recipient.clone())
    .bind(a.phone.clone())
    .bind(a.province.clone())
    .bind(a.city.clone())
    .bind(a.district.clone())
    .bind(a.detail.clone())
    .bind(i64::from(a.is_default))
    .bind(now)
    .bind(now);
    insert_returning_id(conn, query).await
}

pub async fn update(conn: &mut AnyConnection, a: &AddressRow, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE address SET recipient = ?, phone = ?, province = ?, city = ?, district = ?, detail = ?, is_default = ?, \
         updated_at = ? WHERE id = ? AND user_id = ?",
    )
    .bind(a.recipient.clone())
    .bind(a.phone.clone())
    .bind(a.province.clone())
    .bind(a.city.clone())
    .bind(a.district.clone())
    .bind(a.detail.clone())
    .bind(i64::from(a.is_default))
    .bind(now)
    .bind(a.id)
    .bind(a.user_id)
    .execute(conn)
    .bounded().await?;
    Ok(())
}

/// Clears the default flag on every address of the user but `keep`.
pub async fn clear_default(conn: &mut AnyConnection, user_id: i64, keep: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE address SET is_default = 0 WHERE user_id = ? AND id <> ? AND is_default = 1")
        .bind(user_id)
        .bind(keep)
        .execute(conn)
        .bounded()
        .await?;
    Ok(())
}

pub async fn delete(conn: &mut AnyConnection, user_id: i64, id: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM address WHERE id = ? AND user_id = ?")
        .bind(id)
        .bind(user_id)
        .execute(conn)
        .bounded()
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Makes the user's newest address the default when none is.
pub async fn ensure_default(conn: &mut AnyConnection, user_id: i64) -> Result<(), sqlx::Error> {
    let has: i64 = sqlx::query("SELECT COUNT(*) AS n FROM address WHERE user_id = ? AND is_default = 1")
        .bind(user_id)
        .fetch_one(&mut *conn)
        .bounded()
        .await?
        .try_get("n")?;
    if has > 0 {
        return Ok(());
    }
    let newest = sqlx::query("SELECT id FROM address WHERE user_id = ? ORDER BY id DESC LIMIT 1")
        .bind(user_id)
        .fetch_optional(&mut *conn)
        .bounded()
        .await?;
    if let Some(row) = newest {
        let id: i64 = row.try_get("id")?;
        sqlx::query("UPDATE address SET is_default = 1 WHERE id = ?").bind(id).execute(&mut *conn).bounded().await?;
    }
    Ok(())
}
