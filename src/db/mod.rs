//! The database: one `sqlx::AnyPool` over SQLite (embedded) or MySQL/MariaDB (scale-out).
//!
//! Business SQL is written once with `?` placeholders and portable types (BIGINT ids and money in fen, BIGINT
//! epoch-millisecond times, TEXT). Where the dialects must differ, the difference is a small function on
//! [`Dialect`]; the schema has one migration tree per dialect under `migrations/`.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyConnection, AnyPool, ConnectOptions, Executor};

use crate::config::{Config, DbKind};

mod begin;
pub mod guard;
mod query;
mod times;

pub use guard::Bounded;
pub use query::{
    again, get_text, insert_returning_id, newest_first, purge_batch, retry_transient, retry_transient_up_to, take_turn,
    TRANSACTION_ATTEMPTS,
};
pub use times::{now_ms, parse_rfc3339, rfc3339, rfc3339_beijing};

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

/// A pooled connection idle at least this long is pinged before it is handed out.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

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
            // sqlx pings a connection before handing it out (`test_before_acquire`) and again when it comes back
            // (always, in 0.8): two round trips on top of every use, which under load cost as much as the
            // statements. A connection back in the pool less than a second ago answered that release ping, so only
            // one idle for longer is pinged first, as before (a dead one is closed and another taken).
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for < PING_IF_IDLE_FOR {
                        return Ok(true);
                    }
                    sqlx::Connection::ping(conn).await.map(|()| true)
                })
            })
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

    /// Begins a transaction that writes (`db/begin.rs`: no caller giving up leaves one open). On SQLite,
    /// `BEGIN IMMEDIATE` takes the write lock at once, so concurrent writers queue on `busy_timeout` instead of
    /// failing with SQLITE_BUSY when upgrading a read snapshot. The wait (for a pooled connection, and on SQLite for
    /// the write lock) is recorded in `db_transaction_begin_duration_seconds`.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Any>, sqlx::Error> {
        let started = std::time::Instant::now();
        let tx = begin::begin(&self.pool, self.dialect, self.write_statement(), None).await;
        metrics::histogram!("db_transaction_begin_duration_seconds").record(started.elapsed().as_secs_f64());
        tx
    }

    /// [`Db::begin_write`] on a connection the caller acquired (one that just ran statements of its own, such as a
    /// claim that must commit before the transaction starts); the transaction takes it.
    pub async fn begin_write_on(
        &self,
        conn: sqlx::pool::PoolConnection<Any>,
    ) -> Result<sqlx::Transaction<'static, Any>, sqlx::Error> {
        let started = std::time::Instant::now();
        let tx = begin::begin_on(conn, self.dialect, self.write_statement()).await;
        metrics::histogram!("db_transaction_begin_duration_seconds").record(started.elapsed().as_secs_f64());
        tx
    }

    /// [`Db::begin_write`] at READ COMMITTED on MySQL/MariaDB: no gap locks, for work that marks rows at the tail of
    /// indexes that business transactions insert into (the outbox relay).
    pub async fn begin_write_read_committed(&self) -> Result<sqlx::Transaction<'static, Any>, sqlx::Error> {
        let prelude = Some("SET TRANSACTION ISOLATION LEVEL READ COMMITTED");
        begin::begin(&self.pool, self.dialect, self.write_statement(), prelude).await
    }

    /// A transaction that only reads (several statements that must agree).
    pub async fn begin_read(&self) -> Result<sqlx::Transaction<'static, Any>, sqlx::Error> {
        begin::begin(&self.pool, self.dialect, None, None).await
    }

    fn write_statement(&self) -> Option<&'static str> {
        match self.dialect {
            Dialect::Sqlite => Some("BEGIN IMMEDIATE"),
            Dialect::MySql => None,
        }
    }

    /// A round trip to the database, for readiness.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.pool).bounded().await.map(|_| ())
    }

    pub async fn close(&self) {
        self.pool.close().await;
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

#[cfg(test)]
mod tests {
    use super::*;

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
