//! Feature flags and gray release (seed chapter 1: `featureToggle.isEnabled(...)` with a percentage rollout).
//!
//! The database is the source of truth (`feature_flag`, versioned, every change audited in its transaction); each
//! instance evaluates from an immutable in-memory snapshot (`ArcSwap`), so an evaluation does no I/O. A change is in
//! force everywhere within a second: the writer reloads at once, announces the new version on Redis (scale-out), and
//! every instance also polls the one-row global version (`sync.rs`). When the store cannot be read the last snapshot
//! (or, in scale-out, Redis) keeps serving, marked `STALE` after `flags.stale_after_ms`; each snapshot is also written to a bootstrap file, so
//! an instance starting while the database is down serves the last flags it knew.

pub mod engine;
pub mod ofrep;
pub mod routes;
pub mod service;
pub mod store;
pub mod sync;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::db::now_ms;
use engine::{Context, Evaluation, Flag, Reason};

/// One consistent view of every flag.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The global version it was read at.
    pub version: i64,
    pub flags: HashMap<String, Flag>,
}

/// The evaluator every handler uses.
pub struct Flags {
    current: ArcSwap<Snapshot>,
    /// When the store was last read successfully (epoch ms; 0 = never).
    synced_at_ms: AtomicI64,
    stale_after_ms: i64,
    bootstrap: Option<PathBuf>,
    /// Evaluations counted so far (one in [`SAMPLE`] is recorded as a metric).
    counted: std::sync::atomic::AtomicU64,
    /// Scale-out: whether the Redis subscription for change announcements is up. While it is down the snapshot
    /// does not count as fresh (it turns `STALE` after the threshold), though the poll still installs changes.
    announcements_up: std::sync::atomic::AtomicBool,
}

/// One evaluation in this many is recorded in `flag_evaluations_total` (weighted, so the rate stays right).
const SAMPLE: u64 = 16;

/// The answer for a flag that does not exist (or a snapshot that never loaded): the caller's default.
static MISSING: Evaluation<'static> =
    Evaluation { enabled: false, variant: None, reason: Reason::Error, version: 0, rule_id: None, bucket: None };

impl Flags {
    pub fn new(stale_after_ms: u64, bootstrap: Option<PathBuf>) -> Flags {
        Flags {
            current: ArcSwap::from_pointee(Snapshot::default()),
            synced_at_ms: AtomicI64::new(0),
            stale_after_ms: stale_after_ms as i64,
            bootstrap,
            counted: std::sync::atomic::AtomicU64::new(0),
            announcements_up: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// The current snapshot (cheap: no lock, no allocation).
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// Whether the snapshot is older than the staleness threshold.
    pub fn is_stale(&self) -> bool {
        now_ms() - self.synced_at_ms.load(Ordering::Relaxed) > self.stale_after_ms
    }

    /// Evaluates `key` in `snapshot` for `ctx`. A missing flag is off with reason `ERROR`; a stale snapshot keeps
    /// its value and says `STALE`.
    pub fn evaluate<'s>(&self, snapshot: &'s Snapshot, key: &str, ctx: &Context<'_>) -> Evaluation<'s> {
        let Some(flag) = snapshot.flags.get(key) else { return MISSING };
        let mut evaluation = flag.evaluate(ctx);
        if self.is_stale() {
            evaluation.reason = Reason::Stale;
        }
        evaluation
    }

    /// Whether `key` is on for `ctx` (off when it does not exist).
    pub fn is_enabled(&self, key: &str, ctx: &Context<'_>) -> bool {
        let snapshot = self.snapshot();
        self.evaluate(&snapshot, key, ctx).enabled
    }

    /// Counts an evaluation of `flag` that chose `variant` in `flag_evaluations_total`, sampled.
    pub fn count(&self, flag: &'static str, variant: &'static str) {
        if self.counted.fetch_add(1, Ordering::Relaxed) % SAMPLE == 0 {
            metrics::counter!("flag_evaluations_total", "flag" => flag, "variant" => variant).increment(SAMPLE);
        }
    }

    /// How long since the store was last read successfully.
    pub fn age_ms(&self) -> i64 {
        now_ms() - self.synced_at_ms.load(Ordering::Relaxed)
    }

    /// Installs a freshly read state and saves it for a start without the database.
    pub fn install(&self, version: i64, flags: Vec<Flag>) {
        let flags: HashMap<String, Flag> = flags.into_iter().map(|f| (f.key.clone(), f)).collect();
        if let Some(path) = &self.bootstrap {
            let saved = serde_json::json!({"version": version, "flags": flags.values().collect::<Vec<_>>()});
            let tmp = path.with_extension("tmp");
            let written = std::fs::write(&tmp, saved.to_string()).and_then(|()| std::fs::rename(&tmp, path));
            if let Err(error) = written {
                tracing::warn!(%error, path = %path.display(), "cannot write the flags bootstrap file");
            }
        }
        self.current.store(Arc::new(Snapshot { version, flags }));
        self.mark_synced();
    }

    /// The store was just read: fresh, unless the announcements (Redis) are down.
    pub fn mark_synced(&self) {
        if self.announcements_up.load(Ordering::Relaxed) {
            self.synced_at_ms.store(now_ms(), Ordering::Relaxed);
        }
    }

    /// Records whether the Redis subscription is up (scale-out).
    pub fn set_announcements_up(&self, up: bool) {
        self.announcements_up.store(up, Ordering::Relaxed);
    }

    /// Serves the bootstrap file's flags (marked stale until the store answers). False when there is none.
    pub fn load_bootstrap(&self) -> bool {
        let Some(path) = &self.bootstrap else { return false };
        let Ok(text) = std::fs::read_to_string(path) else { return false };
        let Ok(saved) = serde_json::from_str::<serde_json::Value>(&text) else { return false };
        let version = saved["version"].as_i64().unwrap_or(0);
        let flags: Vec<Flag> = serde_json::from_value(saved["flags"].clone()).unwrap_or_default();
        let flags = flags.into_iter().map(|f| (f.key.clone(), f)).collect();
        self.current.store(Arc::new(Snapshot { version, flags }));
        tracing::warn!(path = %path.display(), version, "serving feature flags from the bootstrap file until the database answers");
        true
    }
}
