//! The database: one `sqlx::AnyPool` over SQLite (embedded) or MySQL/MariaDB (scale-out).
//!
//! Business SQL is written once with `?` placeholders and portable types (BIGINT ids and money in fen, BIGINT
//! epoch-millisecond times, TEXT). Where the dialects must differ, the difference is a small function on
//! [`Dialect`]; the schema has one migration tree per dialect under `migrations/`.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyConnection, AnyPool, ConnectOptions, Executor, Row};

use crate::config::{Config, DbKind};

pub mod guard;
pub use guard::Bounded;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static MYSQL_MIGRATIONS: Migrator = sqlx::migrate!("migrations/mysql");

/// The SQL dialect of the pool, for the few statements that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    MySql,
}

impl Dialect {
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::MySql => "mysql",
        }
    }

    /// Start of an INSERT that skips rows violating a unique key, reporting 0 affected rows for them.
    /// (MySQL's `ON DUPLICATE KEY UPDATE id = id` cannot tell: sqlx sets CLIENT_FOUND_ROWS, so both count 1.)
    pub fn insert_ignore(self) -> &'static str {
        match self {
            Dialect::Sqlite => "INSERT OR IGNORE",
            Dialect::MySql => "INSERT IGNORE",
        }
    }

    /// The tail of an INSERT that updates `columns` from the new row when `conflict` (a unique key) already exists.
    pub fn upsert(self, conflict: &str, columns: &[&str]) -> String {
        match self {
            Dialect::Sqlite => {
                let set: Vec<String> = columns.iter().map(|c| format!("{c} = excluded.{c}")).collect();
                format!(" ON CONFLICT ({conflict}) DO UPDATE SET {}", set.join(", "))
            }
            Dialect::MySql => {
                let set: Vec<String> = columns.iter().map(|c| format!("{c} = VALUES({c})")).collect();
                format!(" ON DUPLICATE KEY UPDATE {}", set.join(", "))
            }
        }
    }

    /// ` ON CONFLICT …` / ` ON DUPLICATE KEY …` that adds the new row's `columns` to the existing row's (counters).
    pub fn upsert_add(self, conflict: &str, columns: &[&str]) -> String {
        match self {
            Dialect::Sqlite => {
                let set: Vec<String> = columns.iter().map(|c| format!("{c} = {c} + excluded.{c}")).collect();
                format!(" ON CONFLICT ({conflict}) DO UPDATE SET {}", set.join(", "))
            }
            Dialect::MySql => {
                let set: Vec<String> = columns.iter().map(|c| format!("{c} = {c} + VALUES({c})")).collect();
                format!(" ON DUPLICATE KEY UPDATE {}", set.join(", "))
            }
        }
    }

    /// Suffix of a locking read that skips rows other transactions hold (a job queue's claim). SQLite has one
    /// writer at a time, so nothing to skip.
    pub fn skip_locked(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::MySql => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// Suffix of a locking read. InnoDB locks the rows (and gaps) read until commit; SQLite has no row locks and
    /// needs none: a write transaction there already excludes every other writer.
    pub fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::MySql => " FOR UPDATE",
        }
    }
}

/// The pool and its dialect. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub dialect: Dialect,
    /// The pool's size limit (for the saturation gauge).
    pub max_connections: u32,
    /// Fails statements fast while the database is down ([`guard`]).
    pub breaker: std::sync::Arc<guard::Breaker>,
    read_timeout: Duration,
    write_timeout: Duration,
}

/// Pool sizes and timeouts, resolved from config with defaults that suit each backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub min_connections: u32,
    pub max_lifetime: Duration,
    pub idle_timeout: Duration,
    pub acquire_timeout: Duration,
    pub slow_statement: Duration,
    /// Statement deadlines ([`guard`]).
    pub read_timeout: Duration,
    pub write_timeout: Duration,
}

impl PoolSettings {
    pub fn from_config(config: &Config) -> Self {
        let db = &config.db;
        // SQLite serialises writers and lives in this process: a handful of connections is plenty.
        // MySQL: enough for bursts on a few cores without exhausting the server's max_connections (151 default)
        // when several instances share it.
        let (default_max, default_min) = match config.db_kind() {
            DbKind::Sqlite => (8, 1),
            DbKind::MySql => (32, 4),
        };
        // A MySQL server can hang (frozen, partitioned): short deadlines. SQLite lives in this process; its
        // writers queue for the file lock up to `busy_timeout` (5 s) and never hang, so its deadlines sit above that.
        let (default_read, default_write) = match config.db_kind() {
            DbKind::Sqlite => (10_000, 15_000),
            DbKind::MySql => (2_000, 5_000),
        };
        let max_connections = db.max_connections.unwrap_or(default_max);
        PoolSettings {
            max_connections,
            min_connections: db.min_connections.unwrap_or(default_min).min(max_connections),
            max_lifetime: Duration::from_secs(db.max_lifetime_secs),
            idle_timeout: Duration::from_secs(db.idle_timeout_secs),
            acquire_timeout: Duration::from_millis(db.acquire_timeout_ms),
            slow_statement: Duration::from_millis(db.slow_statement_ms),
            read_timeout: Duration::from_millis(db.read_timeout_ms.unwrap_or(default_read)),
            write_timeout: Duration::from_millis(db.write_timeout_ms.unwrap_or(default_write)),
        }
    }
}

impl Db {
    /// Builds the pool without connecting: the server starts (and reports not ready) while the database is down.
    pub fn connect_lazy(config: &Config) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        let url = config.database_url();
        let dialect = match config.db_kind() {
            DbKind::Sqlite => {
                ensure_sqlite_dir(&url)?;
                Dialect::Sqlite
            }
            DbKind::MySql => Dialect::MySql,
        };
        let settings = PoolSettings::from_config(config);
        let write_timeout = settings.write_timeout;
        let options = AnyConnectOptions::from_str(&url)
            .context("invalid config key `database_url`")?
            .log_statements(log::LevelFilter::Debug)
            .log_slow_statements(log::LevelFilter::Warn, settings.slow_statement);
        let pool = AnyPoolOptions::new()
            .max_connections(settings.max_connections)
            .min_connections(settings.min_connections)
            .max_lifetime(settings.max_lifetime)
            .idle_timeout(settings.idle_timeout)
            .acquire_timeout(settings.acquire_timeout)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    for statement in session_setup(dialect) {
                        conn.execute(*statement).await?;
                    }
                    if dialect == Dialect::MySql {
                        server_side_timeouts(conn, write_timeout).await?;
                    }
                    Ok(())
                })
            })
            .connect_lazy_with(options);
        Ok(Db {
            pool,
            dialect,
            max_connections: settings.max_connections,
            breaker: std::sync::Arc::new(guard::Breaker::new(Duration::from_millis(config.db.breaker_window_ms))),
            read_timeout: settings.read_timeout,
            write_timeout,
        })
    }

    /// Statement bounds for a request that only reads (GET, HEAD).
    pub fn read_guard(&self) -> guard::Guard {
        guard::Guard { timeout: self.read_timeout, breaker: self.breaker.clone() }
    }

    /// Statement bounds for a request that writes, and for background workers.
    pub fn write_guard(&self) -> guard::Guard {
        guard::Guard { timeout: self.write_timeout, breaker: self.breaker.clone() }
    }

    /// A connection without the server-side statement deadlines, for work that may rightly take minutes
    /// (migrations, the load-test seed's index builds, a command-line scan). Detach it when done
    /// (`conn.detach()`): it must not go back into the pool with those settings.
    pub async fn unbounded_connection(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        if self.dialect == Dialect::MySql {
            for unbounded in [
                "SET SESSION max_statement_time = 0",
                "SET SESSION max_execution_time = 0",
                "SET SESSION innodb_lock_wait_timeout = 50",
            ] {
                let _ = conn.execute(unbounded).await;
            }
        }
        Ok(conn)
    }

    /// Applies the embedded migrations of this dialect.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let migrator = match self.dialect {
            Dialect::Sqlite => &SQLITE_MIGRATIONS,
            Dialect::MySql => &MYSQL_MIGRATIONS,
        };
        // On a connection of its own without the statement deadlines: a migration may rightly take minutes.
        let mut conn = self.unbounded_connection().await.context("connecting to apply migrations")?;
        let migrated = migrator.run(&mut *conn).await.context("applying database migrations");
        // Not back into the pool with those settings.
        drop(conn.detach());
        migrated?;
        Ok(())
    }

    /// Begins a transaction that writes. On SQLite, `BEGIN IMMEDIATE` takes the write lock at once, so concurrent
    /// writers queue on `busy_timeout` instead of failing with SQLITE_BUSY when upgrading a read snapshot.
    /// The wait (for a pooled connection, and on SQLite for the write lock) is recorded in
    /// `db_transaction_begin_duration_seconds`.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Any>, sqlx::Error> {
        let started = std::time::Instant::now();
        let tx = match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").bounded().await,
            Dialect::MySql => self.pool.begin().bounded().await,
        };
        metrics::histogram!("db_transaction_begin_duration_seconds").record(started.elapsed().as_secs_f64());
        tx
    }

    /// A round trip to the database, for readiness.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.pool).bounded().await.map(|_| ())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

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

/// Statements run on every new connection.
fn session_setup(dialect: Dialect) -> &'static [&'static str] {
    match dialect {
        // WAL lets readers run beside the one writer; NORMAL sync is durable across process crashes in WAL mode.
        Dialect::Sqlite => &[
            "PRAGMA journal_mode = WAL",
            "PRAGMA synchronous = NORMAL",
            "PRAGMA foreign_keys = ON",
            "PRAGMA busy_timeout = 5000",
        ],
        // Times are stored as epoch milliseconds; UTC keeps any server-side date function honest.
        Dialect::MySql => &["SET time_zone = '+00:00'", "SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci"],
    }
}

/// The write deadline enforced by the server too, so a statement the client gave up on stops there: MariaDB's
/// `max_statement_time` (seconds, every statement) or MySQL's `max_execution_time` (milliseconds, SELECT only),
/// and row-lock waits (`innodb_lock_wait_timeout`, whole seconds) on both.
async fn server_side_timeouts(conn: &mut AnyConnection, timeout: Duration) -> Result<(), sqlx::Error> {
    let lock_wait = timeout.as_secs().max(1);
    conn.execute(format!("SET SESSION innodb_lock_wait_timeout = {lock_wait}").as_str()).await?;
    let mariadb = format!("SET SESSION max_statement_time = {:.3}", timeout.as_secs_f64());
    if conn.execute(mariadb.as_str()).await.is_err() {
        let mysql = format!("SET SESSION max_execution_time = {}", timeout.as_millis());
        let _ = conn.execute(mysql.as_str()).await;
    }
    Ok(())
}

/// SQLite creates the file but not its directory.
fn ensure_sqlite_dir(url: &str) -> anyhow::Result<()> {
    let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    // Only create directories for URLs that may create the file (`mode=rwc`, or no mode given).
    if url.contains("mode=ro") || (url.contains("mode=rw") && !url.contains("mode=rwc")) {
        return Ok(());
    }
    if let Some(dir) = std::path::Path::new(path).parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating data directory {}", dir.display()))?;
        }
    }
    Ok(())
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

/// Runs a transaction body again when the database aborted it as a deadlock victim or serialization failure
/// (up to three attempts, with a short random pause). The body must do all its work in its own transaction.
pub async fn retry_transient<T, F, Fut>(mut body: F) -> Result<T, crate::error::AppError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, crate::error::AppError>>,
{
    let mut attempt = 1;
    loop {
        match body().await {
            Err(error) if error.is_transient() && attempt < 3 => {
                metrics::counter!("db_transaction_retries_total").increment(1);
                tracing::info!(attempt, "transaction aborted by the database (deadlock); retrying");
                let pause = rand::Rng::random_range(&mut rand::rng(), 5..30);
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Milliseconds since the Unix epoch: how every timestamp is stored.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

/// Epoch milliseconds as RFC 3339 UTC, how every timestamp is sent.
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

/// Parses an RFC 3339 time (`2026-11-24T10:00:00+08:00`) into epoch milliseconds; a 422 naming `field` otherwise.
pub fn parse_rfc3339(field: &str, value: &str) -> Result<i64, crate::error::AppError> {
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| {
            crate::error::AppError::validation(field.to_owned(), "must be an RFC 3339 time, e.g. 2026-11-24T00:00:00Z")
        })
}

pub fn rfc3339(ms: i64) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// Seconds since the epoch as WeChat writes times: `2026-12-01T10:00:00+08:00` (Beijing time).
pub fn rfc3339_beijing(secs: i64) -> String {
    let offset = time::UtcOffset::from_hms(8, 0, 0).expect("a valid offset");
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]+08:00");
    time::OffsetDateTime::from_unix_timestamp(secs)
        .map(|t| t.to_offset(offset))
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beijing_time_is_eight_hours_ahead() {
        assert_eq!(rfc3339_beijing(0), "1970-01-01T08:00:00+08:00");
    }

    #[test]
    fn rfc3339_is_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn pool_defaults_differ_by_backend() {
        let sqlite = PoolSettings::from_config(&Config::default());
        let mysql = PoolSettings::from_config(&Config {
            database_url: Some(crate::config::DsnUrl::new("mysql://root@127.0.0.1/test")),
            ..Config::default()
        });
        assert!(sqlite.max_connections < mysql.max_connections);
        let mut cfg = Config::default();
        cfg.db.max_connections = Some(3);
        cfg.db.min_connections = Some(9);
        assert_eq!(PoolSettings::from_config(&cfg).min_connections, 3);
    }
}
