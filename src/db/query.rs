//! Statement helpers every store uses: generated ids, TEXT columns, newest-first pages, batched retention
//! deletes, retrying a transaction the database aborted, and a background job's turn across instances.

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, AnyConnection, AnyPool, Row};

use super::{Bounded, Dialect};

/// Runs an INSERT and returns the generated id. sqlx's Any driver reports MySQL's `LAST_INSERT_ID()` but drops
/// SQLite's rowid (sqlx 0.8 `sqlx-sqlite/src/any.rs` `map_result`), so SQLite asks for it on the same connection.
pub async fn insert_returning_id<'q>(
    conn: &mut AnyConnection,
    query: sqlx::query::Query<'q, Any, AnyArguments<'q>>,
) -> Result<i64, sqlx::Error> {
    let result = query.execute(&mut *conn).bounded().await?;
    if let Some(id) = result.last_insert_id() {
        return Ok(id);
    }
    sqlx::query("SELECT last_insert_rowid() AS id").fetch_one(&mut *conn).bounded().await?.try_get("id")
}

/// Reads a TEXT column. Through sqlx's Any driver MySQL reports TEXT as BLOB (the protocol's type for both), so
/// bytes are accepted too, provided they are UTF-8.
pub fn get_text(row: &AnyRow, column: &str) -> Result<String, sqlx::Error> {
    match row.try_get::<String, _>(column) {
        Ok(text) => Ok(text),
        Err(sqlx::Error::ColumnDecode { .. }) => {
            let bytes: Vec<u8> = row.try_get(column)?;
            String::from_utf8(bytes)
                .map_err(|e| sqlx::Error::ColumnDecode { index: column.to_owned(), source: Box::new(e) })
        }
        Err(other) => Err(other),
    }
}

/// Retention: deletes old rows in batches without locking the table. `select` is a plain `SELECT <key> FROM <table>
/// WHERE … ORDER BY <key> LIMIT n` with one `?` (bound to `bound`): a consistent read, no locks. The rows it names are
/// then deleted by key, and only while they still match `still` (a condition with one `?`, bound to `bound`), so the
/// delete locks those rows alone. (`DELETE … WHERE key IN (SELECT … FROM the same table …)` is planned on MySQL as a
/// scan of the whole table under exclusive locks: every insert waits for it, and concurrent order transactions
/// deadlock against it.) Returns how many rows were deleted.
pub async fn purge_batch(
    pool: &AnyPool,
    table: &str,
    key: &str,
    select: &str,
    still: &str,
    bound: i64,
) -> Result<u64, sqlx::Error> {
    let ids: Vec<i64> = sqlx::query_scalar(select).bind(bound).fetch_all(pool).bounded().await?;
    if ids.is_empty() {
        return Ok(0);
    }
    let placeholders = vec!["?"; ids.len()].join(", ");
    let sql = format!("DELETE FROM {table} WHERE {key} IN ({placeholders}) AND {still}");
    let mut query = sqlx::query(&sql);
    for id in &ids {
        query = query.bind(*id);
    }
    Ok(query.bind(bound).execute(pool).bounded().await?.rows_affected())
}

/// Waits, inside the caller's transaction, for `job`'s turn (its row of `job_turn`, seeded by a migration): the row
/// stays locked until the transaction ends, so one instance at a time runs the job and the others queue behind it
/// (each wait bounded by `innodb_lock_wait_timeout`). For work that would otherwise deadlock against itself run
/// from two instances. SQLite needs no statement: a write transaction there already excludes every other writer.
pub async fn take_turn(conn: &mut AnyConnection, dialect: Dialect, job: &str) -> Result<(), sqlx::Error> {
    if dialect == Dialect::Sqlite {
        return Ok(());
    }
    let sql = format!("SELECT name FROM job_turn WHERE name = ?{}", dialect.for_update());
    sqlx::query(&sql).bind(job.to_owned()).fetch_one(conn).bounded().await?;
    Ok(())
}

/// How many times a request runs a transaction the database keeps aborting ([`retry_transient`]).
pub const TRANSACTION_ATTEMPTS: u32 = 3;

/// Runs a transaction body again when the database aborted it as a deadlock victim or serialization failure
/// (up to three attempts, with a short random pause). The body must do all its work in its own transaction.
pub async fn retry_transient<T, F, Fut>(body: F) -> Result<T, crate::error::AppError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, crate::error::AppError>>,
{
    retry_transient_up_to(TRANSACTION_ATTEMPTS, body).await
}

/// [`retry_transient`] with up to `attempts` attempts, the random pause growing with each: for background work
/// that nobody waits on and that two instances run at once.
pub async fn retry_transient_up_to<T, F, Fut>(attempts: u32, mut body: F) -> Result<T, crate::error::AppError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, crate::error::AppError>>,
{
    let mut attempt = 1;
    loop {
        match body().await {
            Err(error) if again(&error, &mut attempt, attempts).await => {}
            other => return other,
        }
    }
}

/// One step of [`retry_transient`] for a loop of the caller's own (a body that borrows, such as one running on a
/// connection the caller holds): after `error` at `attempt` (counting from 1), whether to run again; if so, it has
/// paused and counted the attempt.
pub async fn again(error: &crate::error::AppError, attempt: &mut u32, attempts: u32) -> bool {
    if !error.is_transient() || *attempt >= attempts {
        return false;
    }
    pause_before_retry(*attempt).await;
    *attempt += 1;
    true
}

async fn pause_before_retry(attempt: u32) {
    metrics::counter!("db_transaction_retries_total").increment(1);
    tracing::info!(attempt, "transaction aborted by the database (deadlock); retrying");
    let pause = rand::Rng::random_range(&mut rand::rng(), 5..30) * u64::from(attempt);
    tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
}

/// Rows of `select` (a `SELECT … FROM table` without WHERE) newest first by `id`: with `open`, only rows matching that
/// condition (its one `?` bound to the given time); with `before_id`, only older rows (a keyset cursor); `limit + 1`
/// rows, for [`crate::domain::cut_page`].
pub async fn newest_first(
    pool: &AnyPool,
    select: &str,
    open: Option<(&str, i64)>,
    before_id: Option<i64>,
    limit: u32,
) -> Result<Vec<AnyRow>, sqlx::Error> {
    let mut sql = format!("{select} WHERE 1 = 1");
    if let Some((condition, _)) = open {
        sql.push_str(&format!(" AND {condition}"));
    }
    if before_id.is_some() {
        sql.push_str(" AND id < ?");
    }
    sql.push_str(" ORDER BY id DESC LIMIT ?");
    let mut query = sqlx::query(&sql);
    if let Some((_, now)) = open {
        query = query.bind(now);
    }
    if let Some(id) = before_id {
        query = query.bind(id);
    }
    query.bind(limit as i64 + 1).fetch_all(pool).bounded().await
}
