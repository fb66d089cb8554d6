//! Refresh ahead of expiry, for keys read all the time (a user's first page while they shop). A hit past its
//! entry's refresh point (a share of its level-1 life drawn per entry from [`REFRESH_AFTER`](super::REFRESH_AFTER))
//! is answered from the entry and starts one background reload of it.
//! Without it, each hot entry's reload fell on a reader: at 5M orders on MariaDB the first pages' reloads (a query
//! whose index no longer fits the buffer pool) put the list's p99 at 14.8 ms against 6.3 at 100k (bench/RESULTS.md).
//!
//! The reload takes level 2 when that has at least half a level-1 lifetime left (another instance refreshed it),
//! else runs the loader and stores its value in level 2. It replaces the level-1 entry only if that is still the one
//! whose refresh it was: an invalidation meanwhile removed it, and whatever replaced it is newer. A reload that
//! read the old value before a change and wrote level 2 after its invalidation is removed by the second
//! invalidation pass, as a foreground load's would be.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use quick_cache::sync::{EntryAction, EntryResult};

use super::{Entry, Layered};
use crate::error::AppError;

impl Layered {
    /// [`get_or_load`](Self::get_or_load); and a hit late in its entry's life reloads the entry in the background,
    /// so `load` may run in a task of its own (hence `Send + 'static`).
    pub async fn get_or_refresh<F, Fut>(self: &Arc<Self>, key: &str, load: F) -> Result<Bytes, AppError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(Bytes, Duration), AppError>> + Send + 'static,
    {
        let now = Instant::now();
        let Some(hit) = self.local_hit(key, now) else {
            return self.get_on_miss(key, load).await;
        };
        if hit.refresh_due(now) && self.start_refresh(key, hit.expires_at) {
            let (cache, key, refreshed) = (self.clone(), key.to_owned(), hit.expires_at);
            tokio::spawn(async move { cache.refresh(&key, refreshed, load).await });
        }
        Ok(hit.value)
    }

    /// Marks the entry expiring at `expires_at` as being refreshed: false if it is gone or replaced, or if another
    /// hit marked it first.
    fn start_refresh(&self, key: &str, expires_at: Instant) -> bool {
        let marked = self.local.entry(key, Some(Duration::ZERO), |_, entry: &mut Entry| {
            let ours = entry.expires_at == expires_at && entry.refresh_window_ms > 0;
            if ours {
                entry.refresh_window_ms = 0;
            }
            EntryAction::Retain(ours)
        });
        // A vacant key's placeholder guard is dropped here: nothing is inserted.
        matches!(marked, EntryResult::Retained(true))
    }

    async fn refresh<F, Fut>(&self, key: &str, refreshed: Instant, load: F)
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(Bytes, Duration), AppError>>,
    {
        let fresh = match self.load(key, load, self.local_ttl / 2).await {
            Ok(fresh) => fresh,
            Err(error) => {
                tracing::warn!(cache = self.name, %error, "a refresh ahead of expiry failed; the entry will be loaded when it expires");
                return;
            }
        };
        self.refreshes.increment(1);
        let _ = self.local.entry(key, Some(Duration::ZERO), |_, entry: &mut Entry| {
            if entry.expires_at == refreshed {
                *entry = fresh;
            }
            EntryAction::Retain(())
        });
    }
}
