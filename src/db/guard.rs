//! Bounded waits on a sick database.
//!
//! Every statement the application runs is awaited through [`Bounded::bounded`]: it gets a deadline of its own
//! (`db.read_timeout_ms` inside a GET or HEAD request, `db.write_timeout_ms` elsewhere: other requests and the
//! background workers), so a frozen database costs a request seconds and gives its connection back, instead of
//! holding it for the whole request timeout. MySQL/MariaDB also enforce the write deadline on the server
//! (`max_statement_time` / `max_execution_time`, `innodb_lock_wait_timeout`), so abandoned statements stop there too.
//!
//! A circuit breaker fails fast while the database is known to be down: a connection-level error (refused,
//! reset) or a burst of timeouts opens it for `db.breaker_window_ms`, during which statements fail at once with
//! 503 instead of each request waiting out the acquire timeout; the first statement after the window tries again.
//!
//! The deadline and the breaker travel with the task ([`scope`]): each request and each worker runs inside one.
//! Outside a scope (start-up, migrations, tests arranging data) statements are awaited as they are.

use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::db::now_ms;

/// How many statement timeouts within one breaker window open the breaker (one slow query does not).
const TIMEOUTS_TO_OPEN: u32 = 3;

/// The deadline of each statement in the current task, and the breaker it reports to.
#[derive(Clone)]
pub struct Guard {
    pub timeout: Duration,
    pub breaker: Arc<Breaker>,
}

tokio::task_local! {
    static GUARD: Guard;
}

/// Runs `work` with every statement in it bounded by `guard` (a named future, so that the request layer can hold
/// it in its own).
pub fn scope<F: Future>(guard: Guard, work: F) -> tokio::task::futures::TaskLocalFuture<Guard, F> {
    GUARD.scope(guard, work)
}

/// Fails statements fast while the database is known to be down.
pub struct Breaker {
    window: Duration,
    open_until_ms: AtomicI64,
    /// Timeouts counted in the window that began at `timeouts_since_ms`.
    timeouts: AtomicU32,
    timeouts_since_ms: AtomicI64,
}

impl Breaker {
    pub fn new(window: Duration) -> Breaker {
        Breaker {
            window,
            open_until_ms: AtomicI64::new(0),
            timeouts: AtomicU32::new(0),
            timeouts_since_ms: AtomicI64::new(0),
        }
    }

    /// Whether statements fail at once right now.
    pub fn is_open(&self) -> bool {
        now_ms() < self.open_until_ms.load(Ordering::Relaxed)
    }

    fn trip(&self, why: &'static str) {
        let until = now_ms() + self.window.as_millis() as i64;
        if self.open_until_ms.swap(until, Ordering::Relaxed) < now_ms() {
            tracing::error!(
                why,
                window_ms = self.window.as_millis() as u64,
                "database circuit breaker open: failing fast"
            );
            metrics::counter!("db_breaker_opened_total").increment(1);
        }
    }

    fn timed_out(&self) {
        let now = now_ms();
        let since = self.timeouts_since_ms.load(Ordering::Relaxed);
        if now - since > self.window.as_millis() as i64 {
            self.timeouts_since_ms.store(now, Ordering::Relaxed);
            self.timeouts.store(1, Ordering::Relaxed);
        } else if self.timeouts.fetch_add(1, Ordering::Relaxed) + 1 >= TIMEOUTS_TO_OPEN {
            self.trip("statements timing out");
        }
    }
}

/// A statement's future, awaited within the task's deadline and breaker.
pub trait Bounded<T>: Future<Output = Result<T, sqlx::Error>> + Sized {
    fn bounded(self) -> impl Future<Output = Result<T, sqlx::Error>> {
        guarded(self)
    }
}

impl<T, F: Future<Output = Result<T, sqlx::Error>>> Bounded<T> for F {}

async fn guarded<T>(statement: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T, sqlx::Error> {
    let Ok(guard) = GUARD.try_with(Guard::clone) else { return statement.await };
    if guard.breaker.is_open() {
        metrics::counter!("db_breaker_rejections_total").increment(1);
        return Err(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "the database is unreachable (circuit breaker open)",
        )));
    }
    match tokio::time::timeout(guard.timeout, statement).await {
        Ok(Err(error)) => {
            if unreachable(&error) {
                guard.breaker.trip("cannot reach the database");
            }
            Err(error)
        }
        Ok(answer) => answer,
        Err(_) => {
            metrics::counter!("db_statement_timeouts_total").increment(1);
            guard.breaker.timed_out();
            Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the database did not answer within {:?}", guard.timeout),
            )))
        }
    }
}

/// Errors that say the database cannot be reached at all (not that a statement was wrong or slow).
fn unreachable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(io) => !matches!(io.kind(), std::io::ErrorKind::TimedOut),
        sqlx::Error::Tls(_) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(ms: u64) -> Guard {
        Guard { timeout: Duration::from_millis(ms), breaker: Arc::new(Breaker::new(Duration::from_millis(300))) }
    }

    #[tokio::test]
    async fn a_hung_statement_times_out_and_a_burst_opens_the_breaker() {
        let g = guard(50);
        let hung = || async { std::future::pending::<Result<(), sqlx::Error>>().await };
        let err = scope(g.clone(), hung().bounded()).await.unwrap_err();
        assert!(err.to_string().contains("did not answer"), "{err}");
        assert!(!g.breaker.is_open(), "one slow statement does not open it");
        scope(g.clone(), hung().bounded()).await.unwrap_err();
        scope(g.clone(), hung().bounded()).await.unwrap_err();
        assert!(g.breaker.is_open());
        let started = std::time::Instant::now();
        let fast = scope(g.clone(), async { Ok::<_, sqlx::Error>(1) }.bounded()).await;
        assert!(fast.is_err() && started.elapsed() < Duration::from_millis(20), "fails at once while open");
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(scope(g, async { Ok::<_, sqlx::Error>(1) }.bounded()).await.unwrap(), 1, "closed again");
    }

    #[tokio::test]
    async fn refused_connections_open_it_at_once_and_no_scope_means_no_bound() {
        let g = guard(1_000);
        let refused = async {
            Err::<(), _>(sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused")))
        };
        scope(g.clone(), refused.bounded()).await.unwrap_err();
        assert!(g.breaker.is_open());
        let slow = async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            Ok::<_, sqlx::Error>(2)
        };
        assert_eq!(slow.bounded().await.unwrap(), 2);
    }
}
