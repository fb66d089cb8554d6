//! SQL of `cdn_purge`: one row per URL, `pending` → `submitted` (with the provider's task id) → `done`, or
//! `failed` after `cdn.max_attempts`. `next_at` is when the row is next due: a call, or a look at its task.

use sqlx::{AnyConnection, AnyPool, Row};

use crate::db::{get_text, Bounded};

/// Queues `url` unless it is already waiting or in flight.
pub async fn enqueue(conn: &mut AnyConnection, url: &str, now: i64) -> Result<bool, sqlx::Error> {
    let queued = sqlx::query("SELECT id FROM cdn_purge WHERE url = ? AND status IN ('pending', 'submitted') LIMIT 1")
        .bind(url.to_owned())
        .fetch_optional(&mut *conn)
        .bounded()
        .await?;
    if queued.is_some() {
        return Ok(false);
    }
    sqlx::query("INSERT INTO cdn_purge (url, status, attempts, next_at, enqueued_at) VALUES (?, 'pending', 0, ?, ?)")
        .bind(url.to_owned())
        .bind(now)
        .bind(now)
        .execute(&mut *conn)
        .bounded()
        .await?;
    Ok(true)
}

#[derive(Debug, Clone)]
pub struct Due {
    pub id: i64,
    pub url: String,
    pub attempts: i64,
}

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// Leases up to `limit` due pending rows to `owner` until `until` (another instance skips them; a dead one's lease
/// runs out) and returns them.
pub async fn lease_due(pool: &AnyPool, now: i64, limit: i64, owner: &str, until: i64) -> Result<Vec<Due>, sqlx::Error> {
    let ids: Vec<i64> =
        sqlx::query("SELECT id FROM cdn_purge WHERE status = 'pending' AND next_at <= ? ORDER BY id LIMIT ?")
            .bind(now)
            .bind(limit)
            .fetch_all(pool)
            .bounded()
            .await?
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let lease_sql = format!(
        "UPDATE cdn_purge SET lease_owner = ?, next_at = ? WHERE status = 'pending' AND next_at <= ? AND id IN ({})",
        placeholders(ids.len())
    );
    let mut lease = sqlx::query(&lease_sql).bind(owner.to_owned()).bind(until).bind(now);
    for id in &ids {
        lease = lease.bind(*id);
    }
    lease.execute(pool).bounded().await?;
    let select_sql = format!(
        "SELECT id, url, attempts FROM cdn_purge WHERE lease_owner = ? AND next_at = ? AND status = 'pending' \
         AND id IN ({}) ORDER BY id",
        placeholders(ids.len())
    );
    let mut select = sqlx::query(&select_sql).bind(owner.to_owned()).bind(until);
    for id in &ids {
        select = select.bind(*id);
    }
    select
        .fetch_all(pool)
        .bounded()
        .await?
        .iter()
        .map(|r| Ok(Due { id: r.try_get("id")?, url: get_text(r, "url")?, attempts: r.try_get("attempts")? }))
        .collect()
}

/// Whether any pending URL is due.
pub async fn has_due(pool: &AnyPool, now: i64) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("SELECT id FROM cdn_purge WHERE status = 'pending' AND next_at <= ? LIMIT 1")
        .bind(now)
        .fetch_optional(pool)
        .bounded()
        .await?;
    Ok(row.is_some())
}

/// URLs sent to the provider since `since` (the daily quota is counted across instances here).
pub async fn submitted_since(pool: &AnyPool, since: i64) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT COUNT(*) AS n FROM cdn_purge WHERE submitted_at >= ?")
        .bind(since)
        .fetch_one(pool)
        .bounded()
        .await?
        .try_get("n")
}

async fn update_ids(pool: &AnyPool, set: &str, binds: Vec<Bind>, ids: &[i64]) -> Result<(), sqlx::Error> {
    let sql = format!("UPDATE cdn_purge SET {set} WHERE id IN ({})", placeholders(ids.len()));
    let mut query = sqlx::query(&sql);
    for bind in binds {
        query = match bind {
            Bind::Int(v) => query.bind(v),
            Bind::Text(v) => query.bind(v),
        };
    }
    for id in ids {
        query = query.bind(*id);
    }
    query.execute(pool).bounded().await?;
    Ok(())
}

enum Bind {
    Int(i64),
    Text(String),
}

pub async fn mark_submitted(
    pool: &AnyPool,
    ids: &[i64],
    task_id: &str,
    now: i64,
    check_at: i64,
) -> Result<(), sqlx::Error> {
    update_ids(
        pool,
        "status = 'submitted', task_id = ?, submitted_at = ?, next_at = ?, attempts = attempts + 1, lease_owner = NULL, \
         last_error = NULL",
        vec![Bind::Text(task_id.to_owned()), Bind::Int(now), Bind::Int(check_at)],
        ids,
    )
    .await
}

/// A failed call: tried again at `next_at`, or parked as `failed` when `give_up`.
pub async fn mark_failed_call(
    pool: &AnyPool,
    ids: &[i64],
    next_at: i64,
    give_up: bool,
    error: &str,
) -> Result<(), sqlx::Error> {
    let status = if give_up { "failed" } else { "pending" };
    update_ids(
        pool,
        "status = ?, next_at = ?, attempts = attempts + 1, lease_owner = NULL, last_error = ?",
        vec![Bind::Text(status.to_owned()), Bind::Int(next_at), Bind::Text(error.chars().take(500).collect())],
        ids,
    )
    .await
}

/// Submitted tasks due for a look.
pub async fn due_tasks(pool: &AnyPool, now: i64, limit: i64) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query(
        "SELECT DISTINCT task_id FROM cdn_purge WHERE status = 'submitted' AND next_at <= ? AND task_id IS NOT NULL \
         LIMIT ?",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(pool)
    .bounded()
    .await?
    .iter()
    .map(|r| get_text(r, "task_id"))
    .collect()
}

/// The task's rows: `done`, back to `pending` (the provider failed them; `failed` once they were sent
/// `max_attempts` times), or looked at again at `next_at`.
pub async fn settle_task(
    pool: &AnyPool,
    task_id: &str,
    status: &str,
    next_at: i64,
    now: i64,
    max_attempts: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE cdn_purge SET status = CASE WHEN ? = 'pending' AND attempts >= ? THEN 'failed' ELSE ? END, \
         next_at = ?, done_at = CASE WHEN ? = 'done' THEN ? ELSE done_at END \
         WHERE task_id = ? AND status = 'submitted'",
    )
    .bind(status.to_owned())
    .bind(max_attempts)
    .bind(status.to_owned())
    .bind(next_at)
    .bind(status.to_owned())
    .bind(now)
    .bind(task_id.to_owned())
    .execute(pool)
    .bounded()
    .await?;
    Ok(())
}

/// Queue depth and the oldest waiting row's enqueue time (for the gauges).
pub async fn backlog(pool: &AnyPool) -> Result<(i64, Option<i64>), sqlx::Error> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n, MIN(enqueued_at) AS oldest FROM cdn_purge WHERE status IN ('pending', 'submitted')",
    )
    .fetch_one(pool)
    .bounded()
    .await?;
    Ok((row.try_get("n")?, row.try_get("oldest")?))
}
