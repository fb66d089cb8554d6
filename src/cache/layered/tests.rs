//! The two-level cache's behaviour without Redis: expiry, the second invalidation pass, one loader per key, and
//! the refresh ahead of expiry.

use super::*;

/// The cache-aside race: a load that read the old value before a change finishes after the change's
/// invalidation and caches the old value; the second pass removes it.
#[tokio::test]
async fn a_value_cached_during_invalidation_is_removed_by_the_second_pass() {
    let cache = Layered::new("test", None, Duration::from_secs(60), 1024 * 1024);
    cache.invalidate("k").await;
    // The slow reader writes the old value back right after the first pass.
    let old = cache.get_or_load("k", || async { Ok((Bytes::from_static(b"old"), Duration::from_secs(60))) }).await;
    assert_eq!(old.unwrap(), Bytes::from_static(b"old"));
    tokio::time::sleep(SECOND_INVALIDATION + Duration::from_millis(200)).await;
    let fresh = cache.get_or_load("k", || async { Ok((Bytes::from_static(b"new"), Duration::from_secs(60))) }).await;
    assert_eq!(fresh.unwrap(), Bytes::from_static(b"new"), "the stale entry was dropped by the second pass");
    assert_eq!(cache.loads(), 2);
}

fn value(text: &'static str) -> Result<(Bytes, Duration), AppError> {
    Ok((Bytes::from_static(text.as_bytes()), Duration::from_secs(60)))
}

#[tokio::test]
async fn an_entry_past_its_level_1_lifetime_is_loaded_again() {
    let cache = Layered::new("test", None, Duration::from_millis(100), 1024 * 1024);
    assert_eq!(cache.get_or_load("k", || async { value("one") }).await.unwrap(), "one");
    assert_eq!(cache.get_or_load("k", || async { value("two") }).await.unwrap(), "one", "a hit");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(cache.get_or_load("k", || async { value("two") }).await.unwrap(), "two", "expired: loaded");
    assert_eq!(cache.loads(), 2);
}

/// Entries loaded together expire spread over ±10% of the level-1 lifetime, not all at once.
#[tokio::test]
async fn entries_loaded_together_expire_spread_out() {
    let cache = Layered::new("test", None, Duration::from_millis(1_000), 1024 * 1024);
    for k in 0..200 {
        cache.get_or_load(&k.to_string(), || async { value("v") }).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    for k in 0..200 {
        cache.get_or_load(&k.to_string(), || async { value("v") }).await.unwrap();
    }
    let reloaded = cache.loads() - 200;
    assert!((20..=180).contains(&reloaded), "{reloaded} of 200 reloaded at the nominal lifetime");
    tokio::time::sleep(Duration::from_millis(150)).await;
    for k in 0..200 {
        cache.get_or_load(&k.to_string(), || async { value("v") }).await.unwrap();
    }
    assert_eq!(cache.loads(), 400, "every entry reloaded by 1.1× the lifetime");
}

/// Each entry draws its own refresh point within [`REFRESH_AFTER`]: entries loaded together do not all go back to
/// the database at one instant.
#[tokio::test]
async fn refresh_windows_are_drawn_per_entry() {
    let cache = Layered::new("test", None, Duration::from_secs(10), 1024 * 1024);
    let mut windows = Vec::new();
    for k in 0..500 {
        let key = k.to_string();
        cache.get_or_refresh(&key, || async { value("v") }).await.unwrap();
        let entry = cache.local.peek(&key).expect("the entry is in level 1");
        let life = entry.expires_at - Instant::now();
        // The window is the last (1 - after) of the entry's life, after drawn from 0.5..=0.9.
        let share = f64::from(entry.refresh_window_ms) / life.as_millis() as f64;
        assert!((0.09..=0.51).contains(&share), "window {} ms of a {life:?} life", entry.refresh_window_ms);
        windows.push(entry.refresh_window_ms);
    }
    let (min, max) = (windows.iter().min().unwrap(), windows.iter().max().unwrap());
    assert!(max - min > 3_000, "windows from {min} to {max} ms: not spread over the range");
}

/// An invalidation while a load runs: the loader's (old) value answers its own request but is not kept.
#[tokio::test]
async fn a_value_loaded_across_an_invalidation_is_not_kept() {
    let cache = Layered::new("test", None, Duration::from_secs(60), 1024 * 1024);
    let (release, wait) = tokio::sync::oneshot::channel::<()>();
    let slow = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_load("k", || async {
                    let _ = wait.await;
                    value("old")
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    invalidate_once([(&*cache, "k")].into_iter()).await;
    release.send(()).unwrap();
    assert_eq!(slow.await.unwrap().unwrap(), "old");
    assert_eq!(cache.get_or_load("k", || async { value("new") }).await.unwrap(), "new");
    assert_eq!(cache.loads(), 2);
}

/// A failed load fails its own request only: a request waiting for it loads in its turn.
#[tokio::test]
async fn a_failed_load_hands_the_key_to_the_next_waiter() {
    let cache = Layered::new("test", None, Duration::from_secs(60), 1024 * 1024);
    let (release, wait) = tokio::sync::oneshot::channel::<()>();
    let failing = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_load("k", || async {
                    let _ = wait.await;
                    Err(AppError::not_found("thing"))
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let waiting = {
        let cache = cache.clone();
        tokio::spawn(async move { cache.get_or_load("k", || async { value("loaded") }).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    release.send(()).unwrap();
    assert!(failing.await.unwrap().is_err());
    assert_eq!(waiting.await.unwrap().unwrap(), "loaded");
    assert_eq!(cache.loads(), 2);
}

/// Sleeps until halfway through `key`'s refresh window (past its refresh point, before it expires).
async fn sleep_into_refresh_window(cache: &Layered, key: &str) {
    let entry = cache.local.peek(key).expect("the entry is in level 1");
    let window = Duration::from_millis(u64::from(entry.refresh_window_ms));
    tokio::time::sleep_until((entry.expires_at - window / 2).into()).await;
}

/// A hit late in its entry's life is answered from the entry and reloads it in the background: the next hit sees
/// the reloaded value without a miss, and many hits start one reload only.
#[tokio::test]
async fn a_hot_entry_is_reloaded_in_the_background_before_it_expires() {
    let cache = Layered::new("test", None, Duration::from_millis(1_000), 1024 * 1024);
    assert_eq!(cache.get_or_refresh("k", || async { value("one") }).await.unwrap(), "one");
    assert_eq!(cache.get_or_refresh("k", || async { value("two") }).await.unwrap(), "one", "early: a plain hit");
    assert_eq!(cache.loads(), 1);
    sleep_into_refresh_window(&cache, "k").await;
    for _ in 0..10 {
        assert_eq!(cache.get_or_refresh("k", || async { value("two") }).await.unwrap(), "one", "served meanwhile");
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(cache.loads(), 2, "one background reload for ten hits");
    // A plain read: a miss here would run this loader.
    assert_eq!(cache.get_or_load("k", || async { value("three") }).await.unwrap(), "two", "the reloaded entry");
    let entry = cache.local.peek("k").unwrap();
    assert!(entry.expires_at > Instant::now() + Duration::from_millis(700), "with a whole lifetime ahead");
}

/// An invalidation while a refresh runs: the refresh's (old) value is not kept, neither in the empty slot nor over
/// the newer entry a read loaded meanwhile.
#[tokio::test]
async fn a_refresh_across_an_invalidation_is_not_kept() {
    let cache = Layered::new("test", None, Duration::from_millis(1_000), 1024 * 1024);
    cache.get_or_refresh("k", || async { value("old") }).await.unwrap();
    sleep_into_refresh_window(&cache, "k").await;
    let (release, wait) = tokio::sync::oneshot::channel::<()>();
    let served = cache
        .get_or_refresh("k", || async {
            let _ = wait.await;
            value("stale")
        })
        .await
        .unwrap();
    assert_eq!(served, "old");
    invalidate_once([(&*cache, "k")].into_iter()).await;
    release.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(cache.loads(), 2, "the refresh ran");
    assert_eq!(cache.get_or_load("k", || async { value("new") }).await.unwrap(), "new");

    // Again, with a read loading the new value before the refresh ends.
    sleep_into_refresh_window(&cache, "k").await;
    let (release, wait) = tokio::sync::oneshot::channel::<()>();
    let served = cache
        .get_or_refresh("k", || async {
            let _ = wait.await;
            value("stale")
        })
        .await
        .unwrap();
    assert_eq!(served, "new");
    invalidate_once([(&*cache, "k")].into_iter()).await;
    assert_eq!(cache.get_or_load("k", || async { value("newer") }).await.unwrap(), "newer");
    release.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(cache.loads(), 5, "both refreshes and three loads ran");
    assert_eq!(cache.get_or_load("k", || async { value("other") }).await.unwrap(), "newer", "not overwritten");
}

/// A failed refresh leaves the entry to expire as it would have; it is then loaded on a read.
#[tokio::test]
async fn a_failed_refresh_keeps_the_entry_until_it_expires() {
    let cache = Layered::new("test", None, Duration::from_millis(1_000), 1024 * 1024);
    cache.get_or_refresh("k", || async { value("one") }).await.unwrap();
    sleep_into_refresh_window(&cache, "k").await;
    let served = cache.get_or_refresh("k", || async { Err(AppError::not_found("thing")) }).await.unwrap();
    assert_eq!(served, "one");
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(cache.get_or_refresh("k", || async { value("two") }).await.unwrap(), "one", "no second refresh");
    tokio::time::sleep_until((cache.local.peek("k").unwrap().expires_at + Duration::from_millis(10)).into()).await;
    assert_eq!(cache.get_or_refresh("k", || async { value("two") }).await.unwrap(), "two", "expired: loaded");
    assert_eq!(cache.loads(), 3);
}
