//! SQL of the event bus: the outbox, the leader lease, the log read by in-process consumers, the inbox, offsets and
//! dead letters.

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, AnyPool, QueryBuilder, Row};

use crate::db::{get_text, Bounded, Dialect};
use crate::events::envelope::CloudEvent;

/// `published_at` of a parked (dead) row.
pub const DEAD: i64 = -1;

/// Inserts `events` (each with its aggregate type) in one statement, in this order (their `seq` ascending).
pub async fn insert(conn: &mut AnyConnection, events: &[(CloudEvent, &str)]) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let mut rows = Vec::with_capacity(events.len());
    for (event, aggregate) in events {
        let payload = serde_json::to_string(event).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        rows.push((event, *aggregate, payload));
    }
    let mut sql =
        QueryBuilder::<Any>::new("INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload, occurred_at) ");
    sql.push_values(rows, |mut row, (event, aggregate, payload)| {
        row.push_bind(event.id.clone())
            .push_bind(aggregate.to_owned())
            .push_bind(event.partitionkey.clone())
            .push_bind(event.event_type.clone())
            .push_bind(payload)
            .push_bind(event.time_ms());
    });
    sql.build().execute(conn).bounded().await?;
    Ok(())
}

/// A pending outbox row.
pub struct Pending {
    pub seq: i64,
    pub aggregate: String,
    pub aggregate_id: String,
    pub attempts: i64,
    /// Backing off until then after a failed publication.
    pub next_attempt_at: i64,
    pub event: CloudEvent,
}

fn pending_row(r: &AnyRow) -> Result<Pending, sqlx::Error> {
    let payload = get_text(r, "payload")?;
    Ok(Pending {
        seq: r.try_get("seq")?,
        aggregate: r.try_get("aggregatetype")?,
        aggregate_id: r.try_get("aggregateid")?,
        attempts: r.try_get("attempts")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        event: serde_json::from_str(&payload).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
    })
}

/// Up to `limit` unpublished rows in `seq` order. No "last id seen": a row that commits late (a lower `seq`
/// committed after a higher one) is still unpublished and simply comes in a later batch. Rows backing off
/// (`next_attempt_at` in the future) come too: the relay holds their aggregate's later events back.
pub async fn pending(pool: &AnyPool, limit: i64) -> Result<Vec<Pending>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT seq, aggregatetype, aggregateid, attempts, next_attempt_at, payload FROM outbox \
         WHERE published_at IS NULL ORDER BY seq LIMIT ?",
    )
    .bind(limit)
    .fetch_all(pool)
    .bounded()
    .await?;
    rows.iter().map(pending_row).collect()
}

/// Marks rows published (after every delivery was acknowledged). With `log`, also appends them to the bus's own
/// log in the given order (only the lease holder writes it, so offsets follow publication order without gaps).
pub async fn mark_published(conn: &mut AnyConnection, seqs: &[i64], now: i64, log: bool) -> Result<(), sqlx::Error> {
    if !log {
        // One statement per 500 rows.
        for chunk in seqs.chunks(500) {
            let placeholders = vec!["?"; chunk.len()].join(", ");
            let sql =
                format!("UPDATE outbox SET published_at = ? WHERE published_at IS NULL AND seq IN ({placeholders})");
            let mut query = sqlx::query(&sql).bind(now);
            for seq in chunk {
                query = query.bind(*seq);
            }
            query.execute(&mut *conn).bounded().await?;
        }
        return Ok(());
    }
    let row =
        sqlx::query("SELECT COALESCE(MAX(log_offset), 0) AS n FROM outbox").fetch_one(&mut *conn).bounded().await?;
    let first = row.try_get::<i64, _>("n")? + 1;
    for (next, seq) in (first..).zip(seqs) {
        sqlx::query("UPDATE outbox SET published_at = ?, log_offset = ? WHERE seq = ? AND published_at IS NULL")
            .bind(now)
            .bind(next)
            .bind(*seq)
            .execute(&mut *conn)
            .bounded()
            .await?;
    }
    Ok(())
}

/// A failed publication: retried after `retry_at`, or parked (dead) when `dead`.
pub async fn mark_failed(pool: &AnyPool, seq: i64, error: &str, retry_at: i64, dead: bool) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?, \
         published_at = CASE WHEN ? THEN ? ELSE published_at END WHERE seq = ?",
    )
    .bind(retry_at)
    .bind(error.chars().take(500).collect::<String>())
    .bind(dead)
    .bind(DEAD)
    .bind(seq)
    .execute(pool)
    .bounded()
    .await?;
    Ok(())
}

/// Pending rows and the age (ms) of the oldest, for the metrics.
pub async fn backlog(pool: &AnyPool, now: i64) -> Result<(i64, i64), sqlx::Error> {
    let row = sqlx::query("SELECT COUNT(*) AS n, MIN(occurred_at) AS oldest FROM outbox WHERE published_at IS NULL")
        .fetch_one(pool)
        .bounded()
        .await?;
    let oldest: Option<i64> = row.try_get("oldest")?;
    Ok((row.try_get("n")?, oldest.map(|o| (now - o).max(0)).unwrap_or(0)))
}

/// Deletes published rows older than `before` that every in-process consumer has read (at most 1,000 a call).
pub async fn purge(pool: &AnyPool, dialect: Dialect, before: i64) -> Result<u64, sqlx::Error> {
    let _ = dialect;
    let done = crate::db::purge_batch(
        pool,
        "outbox",
        "seq",
        "SELECT seq FROM outbox WHERE published_at > 0 AND published_at < ? AND (log_offset IS NULL \
         OR log_offset <= (SELECT COALESCE(MIN(log_offset), 0) FROM consumer_offset)) ORDER BY seq LIMIT 1000",
        "published_at > 0 AND published_at < ?",
        before,
    )
    .await?;
    sqlx::query("DELETE FROM processed_event WHERE processed_at < ?").bind(before).execute(pool).bounded().await?;
    Ok(done)
}

/// Takes or renews the lease `name` for `holder` until `expires_at`; false when someone else holds it.
pub async fn take_lease(
    pool: &AnyPool,
    dialect: Dialect,
    name: &str,
    holder: &str,
    now: i64,
    expires_at: i64,
) -> Result<bool, sqlx::Error> {
    let sql = format!("{} INTO bus_lease (name, holder, expires_at) VALUES (?, ?, ?)", dialect.insert_ignore());
    let inserted = sqlx::query(&sql)
        .bind(name.to_owned())
        .bind(holder.to_owned())
        .bind(expires_at)
        .execute(pool)
        .bounded()
        .await?;
    if inserted.rows_affected() == 1 {
        return Ok(true);
    }
    let taken = sqlx::query(
        "UPDATE bus_lease SET holder = ?, expires_at = ? WHERE name = ? AND (holder = ? OR expires_at < ?)",
    )
    .bind(holder.to_owned())
    .bind(expires_at)
    .bind(name.to_owned())
    .bind(holder.to_owned())
    .bind(now)
    .execute(pool)
    .bounded()
    .await?;
    Ok(taken.rows_affected() == 1)
}

/// Gives the lease up (a clean shutdown), so another instance takes over at once.
pub async fn release_lease(pool: &AnyPool, name: &str, holder: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM bus_lease WHERE name = ? AND holder = ?")
        .bind(name.to_owned())
        .bind(holder.to_owned())
        .execute(pool)
        .bounded()
        .await?;
    Ok(())
}

/// One published event of the log.
pub struct Logged {
    pub log_offset: i64,
    pub event: CloudEvent,
}

/// The log after `offset`, in order.
pub async fn log_after(pool: &AnyPool, offset: i64, limit: i64) -> Result<Vec<Logged>, sqlx::Error> {
    let rows = sqlx::query("SELECT log_offset, payload FROM outbox WHERE log_offset > ? ORDER BY log_offset LIMIT ?")
        .bind(offset)
        .bind(limit)
        .fetch_all(pool)
        .bounded()
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Logged {
                log_offset: r.try_get("log_offset")?,
                event: serde_json::from_str(&get_text(r, "payload")?).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            })
        })
        .collect()
}

/// The last log offset, for the consumers' lag.
pub async fn log_end(pool: &AnyPool) -> Result<i64, sqlx::Error> {
    let row = sqlx::query("SELECT COALESCE(MAX(log_offset), 0) AS n FROM outbox").fetch_one(pool).bounded().await?;
    row.try_get("n")
}

pub async fn consumer_offset(pool: &AnyPool, consumer: &str) -> Result<i64, sqlx::Error> {
    let row = sqlx::query("SELECT log_offset FROM consumer_offset WHERE consumer = ?")
        .bind(consumer.to_owned())
        .fetch_optional(pool)
        .bounded()
        .await?;
    row.map(|r| r.try_get("log_offset")).transpose().map(Option::unwrap_or_default)
}

/// Stores a consumer's position, inside the transaction that applied the event.
pub async fn set_consumer_offset(
    conn: &mut AnyConnection,
    dialect: Dialect,
    consumer: &str,
    offset: i64,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO consumer_offset (consumer, log_offset) VALUES (?, ?){}",
        dialect.upsert("consumer", &["log_offset"])
    );
    sqlx::query(&sql).bind(consumer.to_owned()).bind(offset).execute(conn).bounded().await?;
    Ok(())
}

/// Records that `consumer` applied `event_id`; false when it already had (a duplicate delivery).
pub async fn first_delivery(
    conn: &mut AnyConnection,
    dialect: Dialect,
    consumer: &str,
    event_id: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let sql =
        format!("{} INTO processed_event (consumer, event_id, processed_at) VALUES (?, ?, ?)", dialect.insert_ignore());
    let done =
        sqlx::query(&sql).bind(consumer.to_owned()).bind(event_id.to_owned()).bind(now).execute(conn).bounded().await?;
    Ok(done.rows_affected() == 1)
}

pub async fn dead_letter(
    pool: &AnyPool,
    consumer: &str,
    event: &CloudEvent,
    error: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO dead_letter (consumer, event_id, type, payload, error, created_at) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(consumer.to_owned())
    .bind(event.id.clone())
    .bind(event.event_type.clone())
    .bind(serde_json::to_string(event).unwrap_or_default())
    .bind(error.chars().take(1000).collect::<String>())
    .bind(now)
    .execute(pool)
    .bounded()
    .await?;
    Ok(())
}
