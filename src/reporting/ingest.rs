//! The ingest writer: one per instance. Requests queue (bounded) and the writer group-commits whatever is waiting
//! into one transaction (one multi-row `INSERT IGNORE` per request, so each learns its own new and duplicate
//! counts), then answers every request of the group. Nothing is acknowledged before its commit; a group the
//! database aborts as a deadlock victim runs again; a full queue is answered at once, and no request waits more
//! than 3 s.

use std::time::Duration;

use sqlx::{Any, AnyConnection, QueryBuilder};
use tokio::sync::{mpsc, oneshot};

use crate::db::{Bounded, Db};
use crate::error::AppError;
use crate::reporting::model::{BadRow, Row};

/// Requests of one group commit, at most.
const GROUP_REQUESTS: usize = 64;
/// A request waits at most this long for its commit before a 503 (its events may still commit: the client's
/// retry is then counted as duplicates).
const WAIT: Duration = Duration::from_secs(3);

struct Job {
    source: String,
    rows: Vec<Row>,
    bad: Vec<BadRow>,
    received: i64,
    reply: oneshot::Sender<Result<(usize, usize), String>>,
}

pub struct Ingest {
    queue: mpsc::Sender<Job>,
}

/// A 503 (with `Retry-After: 1`, as every 503).
fn unavailable(code: &'static str, message: &str) -> AppError {
    AppError::Unavailable { code, message: message.into() }
}

impl Ingest {
    /// Starts the writer on `db` with room for `capacity` waiting requests.
    pub fn start(db: Db, capacity: usize) -> Ingest {
        let (queue, jobs) = mpsc::channel(capacity.max(1));
        let guard = db.write_guard();
        tokio::spawn(crate::db::guard::scope(guard, writer(db, jobs)));
        Ingest { queue }
    }

    /// Stores one request's events; `(accepted, duplicates)` once committed.
    pub async fn submit(
        &self,
        source: String,
        rows: Vec<Row>,
        bad: Vec<BadRow>,
        received: i64,
    ) -> Result<(usize, usize), AppError> {
        let (reply, answer) = oneshot::channel();
        let job = Job { source, rows, bad, received, reply };
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::counter!("track_ingest_refused_total", "why" => "queue_full").increment(1);
                return Err(unavailable("ingest_busy", "too many reports queued; retry shortly"));
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return Err(unavailable("ingest_unavailable", "reporting is shutting down; retry shortly"))
            }
        }
        match tokio::time::timeout(WAIT, answer).await {
            Ok(Ok(Ok(counts))) => Ok(counts),
            Ok(Ok(Err(error))) => {
                tracing::warn!(error, "a reporting batch could not be stored");
                Err(unavailable("database_unavailable", "the reports could not be stored; retry shortly"))
            }
            Ok(Err(_)) => Err(unavailable("ingest_unavailable", "the ingest writer stopped; retry shortly")),
            Err(_) => {
                metrics::counter!("track_ingest_refused_total", "why" => "timeout").increment(1);
                Err(unavailable("ingest_timeout", "storing the reports took too long; retry shortly"))
            }
        }
    }
}

async fn writer(db: Db, mut jobs: mpsc::Receiver<Job>) {
    while let Some(first) = jobs.recv().await {
        let mut group = vec![first];
        while group.len() < GROUP_REQUESTS {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        metrics::histogram!("track_ingest_group_requests").record(group.len() as f64);
        // The processor's batch locks rows and gaps these inserts need (a duplicate's row, the index's tail), and
        // InnoDB can pick the group as a deadlock victim: the group runs again (`INSERT IGNORE` makes that safe)
        // instead of answering its requests 503.
        let written = crate::db::retry_transient(|| async { write(&db, &group).await.map_err(AppError::from) }).await;
        match written {
            Ok(counts) => {
                for (job, counts) in group.into_iter().zip(counts) {
                    let _ = job.reply.send(Ok(counts));
                }
            }
            Err(error) => {
                for job in group {
                    let _ = job.reply.send(Err(error.to_string()));
                }
            }
        }
    }
}

/// One transaction for the whole group; per request, (new rows, duplicates).
async fn write(db: &Db, group: &[Job]) -> Result<Vec<(usize, usize)>, sqlx::Error> {
    let mut tx = db.begin_write().await?;
    let mut counts = Vec::with_capacity(group.len());
    for job in group {
        let inserted = insert_rows(&mut tx, db, job).await?;
        insert_bad(&mut tx, job).await?;
        counts.push((inserted, job.rows.len() - inserted));
    }
    tx.commit().bounded().await?;
    Ok(counts)
}

async fn insert_rows(conn: &mut AnyConnection, db: &Db, job: &Job) -> Result<usize, sqlx::Error> {
    if job.rows.is_empty() {
        return Ok(0);
    }
    let mut sql = QueryBuilder::<Any>::new(format!(
        "{} INTO track_event (source, event_id, type, page, props, occurred_at, client_time, received_at) ",
        db.dialect.insert_ignore()
    ));
    sql.push_values(&job.rows, |mut b, row| {
        b.push_bind(job.source.clone())
            .push_bind(row.event_id.clone())
            .push_bind(row.kind.as_str())
            .push_bind(row.page.clone())
            .push_bind(row.props.clone())
            .push_bind(row.occurred_at)
            .push_bind(row.client_time)
            .push_bind(job.received);
    });
    Ok(sql.build().execute(conn).bounded().await?.rows_affected() as usize)
}

async fn insert_bad(conn: &mut AnyConnection, job: &Job) -> Result<(), sqlx::Error> {
    if job.bad.is_empty() {
        return Ok(());
    }
    let mut sql = QueryBuilder::<Any>::new("INSERT INTO track_bad_row (source, event_id, reason, raw, received_at) ");
    sql.push_values(&job.bad, |mut b, bad| {
        b.push_bind(job.source.clone())
            .push_bind(bad.event_id.clone())
            .push_bind(bad.reason)
            .push_bind(bad.raw.clone())
            .push_bind(job.received);
    });
    sql.build().execute(conn).bounded().await?;
    Ok(())
}
