//! Beginning transactions so that no caller giving up can leave one open behind the pool's back.
//!
//! sqlx 0.8.6 counts a MySQL/MariaDB transaction only once the server's answer to `BEGIN` has been read. A caller
//! that stops waiting in between (a statement deadline of [`super::guard`], a request its client dropped) leaves the
//! server inside a transaction that sqlx does not know of: no `ROLLBACK` is queued, the release ping finds the
//! connection healthy, and the pool hands it on. Every later "autocommit" statement on it then runs inside that
//! transaction: its writes are answered but not committed (lost if the connection closes first), its row locks are
//! held, and its reads see an old snapshot. Upstream fixed this for SQLite only (sqlx #2054 / #2057; the same
//! pattern for Postgres is sqlx #4393). It failed `a_frozen_database_costs_seconds_and_a_cut_off_key_is_freed` in
//! CI (a retry answered 201 while a count on the pool saw no order); without this module that test fails here every
//! time, and `a_begin_cut_off_by_a_freeze_leaves_no_transaction_open` shows the lost write on a pool of one.
//!
//! So on MySQL the `BEGIN` runs in a task of its own that nobody cancels: the caller waits for it within its
//! deadline, and when it gives up, the task still reads the answer and drops the transaction it got, which queues
//! the `ROLLBACK` that the release flushes. SQLite's driver is cancel-safe already (its worker rolls back a `BEGIN`
//! nobody received) and keeps the direct path.

use std::borrow::Cow;

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, Transaction};

use super::{Bounded, Dialect};

/// Begins a transaction on `conn` (taken: the transaction owns it and gives it back to the pool when done), with
/// `statement` instead of `BEGIN` where given (SQLite's `BEGIN IMMEDIATE`), within the caller's deadline.
pub async fn begin_on(
    conn: PoolConnection<Any>,
    dialect: Dialect,
    statement: Option<&'static str>,
) -> Result<Transaction<'static, Any>, sqlx::Error> {
    start(conn, dialect, statement, None).bounded().await
}

/// Acquires a connection and begins a transaction on it, the two within one deadline of the caller's. On MySQL,
/// `prelude` (a `SET TRANSACTION ...` for the next transaction) runs just before the `BEGIN`, in the same task: a
/// caller giving up between the two would leave the setting to whoever begins next on that connection.
pub async fn begin(
    pool: &AnyPool,
    dialect: Dialect,
    statement: Option<&'static str>,
    prelude: Option<&'static str>,
) -> Result<Transaction<'static, Any>, sqlx::Error> {
    // Acquiring may be cut off safely (a connection whose ping was cut off is closed, not pooled).
    async move { start(pool.acquire().await?, dialect, statement, prelude).await }.bounded().await
}

/// The `BEGIN` itself, unbounded: directly on SQLite, in a task of its own on MySQL (after `prelude`).
async fn start(
    conn: PoolConnection<Any>,
    dialect: Dialect,
    statement: Option<&'static str>,
    prelude: Option<&'static str>,
) -> Result<Transaction<'static, Any>, sqlx::Error> {
    match dialect {
        Dialect::Sqlite => Transaction::begin(conn, statement.map(Cow::Borrowed)).await,
        Dialect::MySql => uncancelled(conn, statement, prelude).await,
    }
}

/// `BEGIN` (after `prelude`) in a task of its own; the caller may stop waiting for it at any point.
async fn uncancelled(
    mut conn: PoolConnection<Any>,
    statement: Option<&'static str>,
    prelude: Option<&'static str>,
) -> Result<Transaction<'static, Any>, sqlx::Error> {
    let task = tokio::spawn(async move {
        if let Some(prelude) = prelude {
            sqlx::Executor::execute(&mut *conn, prelude).await?;
        }
        // `Transaction::begin` is what `Pool::begin` runs on the connection it acquired: the one way to begin on a
        // connection the caller owns and get an owned transaction back.
        Transaction::begin(conn, statement.map(Cow::Borrowed)).await
    });
    task.await.map_err(|e| sqlx::Error::Io(std::io::Error::other(e)))?
}
