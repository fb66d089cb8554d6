//! Turns stored reports into daily aggregates per page (Beijing day of the corrected time): page views, unique
//! visitors (exact: one `traffic_visitor` row per visitor, day and page), clicks, errors, and perf timings in fixed
//! buckets. Instances take turns (each batch's transaction first takes the job's turn, [`crate::db::take_turn`]):
//! every batch upserts the same aggregates, and two instances doing so at once deadlocked on InnoDB's gap locks
//! batch after batch. A batch's rows are claimed unprocessed (`FOR UPDATE SKIP LOCKED` on MySQL, passing over rows
//! the ingest writer has not committed yet), counted and marked processed in one transaction: each event counts
//! once. With Kafka configured, each event also goes to the `<prefix>track` topic through the outbox. Processed rows
//! are deleted after 8 days (the deduplication window: the SDK keeps events offline for up to 7).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use sqlx::{AnyConnection, Row};

use crate::db::{now_ms, Bounded, Dialect};
use crate::error::AppError;
use crate::events::consumers::sales::day_of;
use crate::state::{App, AppState};

/// Upper bounds (ms) of the perf histogram's buckets.
pub const BUCKETS_MS: [i64; 16] =
    [50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 8000, 13000, 20000, 60000, 600000];
/// Reports are kept (and deduplicated) this long.
pub const KEEP_MS: i64 = 8 * 86_400_000;
const BATCH: i64 = 1000;

pub async fn run(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let interval = Duration::from_millis(state.config.reporting.process_interval_ms);
    let mut last_purge = 0;
    loop {
        state.heartbeats.beat("reporting.processor");
        if let Err(error) = pass(&state).await {
            tracing::warn!(%error, "report processing failed; retrying");
        }
        if now_ms() - last_purge > 60_000 {
            last_purge = now_ms();
            if let Err(error) = purge(&state, last_purge).await {
                tracing::warn!(%error, "could not purge old reports");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = state.reporting_wake.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}

fn bucket(value_ms: i64) -> i64 {
    BUCKETS_MS.iter().copied().find(|b| value_ms <= *b).unwrap_or(BUCKETS_MS[BUCKETS_MS.len() - 1])
}

#[derive(Default)]
struct Counts {
    pv: i64,
    uv: i64,
    clicks: i64,
    errors: i64,
}

/// Processes everything unprocessed; returns how many events.
pub async fn pass(app: &App) -> Result<usize, AppError> {
    let mut total = 0;
    loop {
        let done = batch(app).await?;
        total += done;
        if done < BATCH as usize {
            return Ok(total);
        }
    }
}

/// The job's row in `job_turn`.
const TURN: &str = "reporting.processor";

/// One batch, run again on a deadlock (up to eight attempts, with pauses growing to ~0.2 s). Processors no longer
/// meet each other (they take turns), but a batch still locks index gaps the ingest writer inserts into.
async fn batch(app: &App) -> Result<usize, AppError> {
    crate::db::retry_transient_up_to(8, || batch_once(app)).await
}

async fn batch_once(app: &App) -> Result<usize, AppError> {
    let mut tx = app.db.begin_write().await?;
    crate::db::take_turn(&mut tx, app.db.dialect, TURN).await?;
    let sql = format!(
        "SELECT id, source, event_id, type, page, props, occurred_at FROM track_event WHERE processed = 0 \
         ORDER BY id LIMIT ?{}",
        app.db.dialect.skip_locked()
    );
    let rows = sqlx::query(&sql).bind(BATCH).fetch_all(&mut *tx).bounded().await?;
    if rows.is_empty() {
        tx.commit().bounded().await?;
        return Ok(0);
    }
    let forward = !crate::events::bus::uses_log(app);
    // Ordered: every processor writes visitors and aggregates in the same key order, so two of them (instances
    // sharing the work) wait for each other instead of deadlocking on InnoDB's gap locks.
    let mut counts: BTreeMap<(String, String), Counts> = BTreeMap::new();
    let mut visitors: BTreeSet<(String, String, String)> = BTreeSet::new();
    let mut perf: BTreeMap<(String, String, i64), i64> = BTreeMap::new();
    let mut ids = Vec::with_capacity(rows.len());
    for row in &rows {
        ids.push(row.try_get::<i64, _>("id")?);
        let (source, kind, page): (String, String, String) =
            (row.try_get("source")?, row.try_get("type")?, crate::db::get_text(row, "page")?);
        let day = day_of(row.try_get("occurred_at")?);
        let props: serde_json::Value =
            serde_json::from_str(&crate::db::get_text(row, "props")?).unwrap_or(serde_json::Value::Null);
        let key = (day.clone(), page.clone());
        match kind.as_str() {
            "page_view" => {
                counts.entry(key).or_default().pv += 1;
                visitors.insert((day, page.clone(), source.clone()));
            }
            "click" => counts.entry(key).or_default().clicks += 1,
            "error" => counts.entry(key).or_default().errors += 1,
            "perf" => {
                if let Some(ms) = props.get("value_ms").and_then(serde_json::Value::as_f64).filter(|v| *v >= 0.0) {
                    *perf.entry((day, page.clone(), bucket(ms.round() as i64))).or_default() += 1;
                }
            }
            _ => {}
        }
        if forward {
            let event_id: String = row.try_get("event_id")?;
            let data = serde_json::json!({ "source": source, "event_id": event_id, "type": kind, "page": page, "props": props });
            crate::events::record(&mut tx, crate::events::Event::new("track", &source, format!("track.{kind}"), data))
                .await?;
        }
    }
    for (day, page, visitor) in visitors {
        if new_visitor(&mut tx, app.db.dialect, &day, &page, &visitor).await? {
            counts.entry((day, page)).or_default().uv += 1;
        }
    }
    for ((day, page), c) in counts {
        let sql = format!(
            "INSERT INTO traffic_daily (day, page, pv, uv, clicks, errors) VALUES (?, ?, ?, ?, ?, ?){}",
            app.db.dialect.upsert_add("day, page", &["pv", "uv", "clicks", "errors"])
        );
        sqlx::query(&sql)
            .bind(day)
            .bind(page)
            .bind(c.pv)
            .bind(c.uv)
            .bind(c.clicks)
            .bind(c.errors)
            .execute(&mut *tx)
            .bounded()
            .await?;
    }
    for ((day, page, bucket_ms), samples) in perf {
        let sql = format!(
            "INSERT INTO traffic_perf (day, page, bucket_ms, samples) VALUES (?, ?, ?, ?){}",
            app.db.dialect.upsert_add("day, page, bucket_ms", &["samples"])
        );
        sqlx::query(&sql).bind(day).bind(page).bind(bucket_ms).bind(samples).execute(&mut *tx).bounded().await?;
    }
    let placeholders = vec!["?"; ids.len()].join(", ");
    let update = format!("UPDATE track_event SET processed = 1 WHERE id IN ({placeholders})");
    let mut query = sqlx::query(&update);
    for id in &ids {
        query = query.bind(*id);
    }
    query.execute(&mut *tx).bounded().await?;
    tx.commit().bounded().await?;
    metrics::counter!("track_events_processed_total").increment(ids.len() as u64);
    if forward {
        app.events_wake.notify_one();
    }
    Ok(ids.len())
}

async fn new_visitor(
    conn: &mut AnyConnection,
    dialect: Dialect,
    day: &str,
    page: &str,
    visitor: &str,
) -> Result<bool, sqlx::Error> {
    let sql = format!("{} INTO traffic_visitor (day, page, visitor) VALUES (?, ?, ?)", dialect.insert_ignore());
    let done = sqlx::query(&sql)
        .bind(day.to_owned())
        .bind(page.to_owned())
        .bind(visitor.to_owned())
        .execute(conn)
        .bounded()
        .await?;
    Ok(done.rows_affected() == 1)
}

async fn purge(app: &App, now: i64) -> Result<(), sqlx::Error> {
    crate::db::purge_batch(
        &app.db.pool,
        "track_event",
        "id",
        "SELECT id FROM track_event WHERE processed = 1 AND received_at < ? ORDER BY id LIMIT 5000",
        "processed = 1 AND received_at < ?",
        now - KEEP_MS,
    )
    .await?;
    sqlx::query("DELETE FROM track_bad_row WHERE received_at < ?")
        .bind(now - 30 * 86_400_000)
        .execute(&app.db.pool)
        .bounded()
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::bucket;

    #[test]
    fn timings_fall_in_the_first_bucket_that_holds_them() {
        assert_eq!(bucket(0), 50);
        assert_eq!(bucket(50), 50);
        assert_eq!(bucket(51), 100);
        assert_eq!(bucket(10_000_000), 600_000);
    }
}
