//! The ops listener (`ops_listen`, default `127.0.0.1:9090`): Prometheus `/metrics`, `/debug/tasks`, the CPU
//! profiler `/debug/pprof/profile` and the heap profiler `/debug/pprof/heap`, served on their own port so they are never exposed with the public API.
//!
//! Gauges that describe the process now (database pool, tokio runtime, memory) are sampled when `/metrics` is
//! scraped; counters and histograms are recorded where things happen.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::db::now_ms;
use crate::state::AppState;

/// Requests being served on the public listener right now.
pub static IN_FLIGHT: AtomicI64 = AtomicI64::new(0);

/// The ops listener's routes (documented for consistency, but not part of the public OpenAPI document).
pub fn router(state: AppState) -> Router {
    let (router, _) = OpenApiRouter::new()
        .routes(routes!(metrics))
        .routes(routes!(debug_tasks))
        .routes(routes!(cpu_profile))
        .routes(routes!(heap_profile))
        .split_for_parts();
    router.with_state(state)
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, content_type = "text/plain; version=0.0.4", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    sample_gauges(&state);
    let body = state.metrics.render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

fn sample_gauges(state: &AppState) {
    let pool = &state.db.pool;
    let size = pool.size() as f64;
    let idle = pool.num_idle() as f64;
    metrics::gauge!("db_pool_connections", "state" => "idle").set(idle);
    metrics::gauge!("db_pool_connections", "state" => "in_use").set(size - idle);
    metrics::gauge!("db_pool_max_connections").set(state.db.max_connections as f64);
    let runtime = tokio::runtime::Handle::current().metrics();
    metrics::gauge!("tokio_workers").set(runtime.num_workers() as f64);
    metrics::gauge!("tokio_alive_tasks").set(runtime.num_alive_tasks() as f64);
    metrics::gauge!("tokio_global_queue_depth").set(runtime.global_queue_depth() as f64);
    metrics::gauge!("http_requests_in_flight").set(IN_FLIGHT.load(Ordering::Relaxed) as f64);
    if let Some(rss) = resident_bytes() {
        metrics::gauge!("process_resident_memory_bytes").set(rss as f64);
    }
}

/// Resident memory from `/proc/self/statm` (Linux); `None` elsewhere.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// The last pass of each background worker, for `/debug/tasks`.
#[derive(Default)]
pub struct Heartbeats(Mutex<BTreeMap<&'static str, (i64, u64)>>);

impl Heartbeats {
    /// The worker `name` finished a pass.
    pub fn beat(&self, name: &'static str) {
        let mut beats = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = beats.entry(name).or_insert((0, 0));
        *entry = (now_ms(), entry.1 + 1);
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Tasks {
    /// The tokio runtime: worker threads, tasks alive (a number that keeps growing under a steady load is a task
    /// leak), tasks waiting in the global queue.
    pub runtime: RuntimeView,
    /// Requests being served on the public listener.
    pub http_requests_in_flight: i64,
    /// Where token revocation checks are answered: `local` (embedded), `mirror` (scale-out, the in-process copy
    /// is current) or `database` (the copy is loading or lost its subscription: one database lookup each).
    pub deny_list: &'static str,
    /// The background workers inside this binary and when each last finished a pass.
    pub workers: Vec<WorkerView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RuntimeView {
    pub workers: usize,
    pub alive_tasks: usize,
    pub global_queue_depth: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkerView {
    pub name: &'static str,
    pub passes: u64,
    pub last_pass_ms_ago: i64,
}

/// What is running: runtime task counts, in-flight requests, background workers.
#[utoipa::path(get, path = "/debug/tasks", tag = "ops", responses((status = 200, body = Tasks)))]
pub async fn debug_tasks(State(state): State<AppState>) -> Json<Tasks> {
    let runtime = tokio::runtime::Handle::current().metrics();
    let now = now_ms();
    let beats = state.heartbeats.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    Json(Tasks {
        runtime: RuntimeView {
            workers: runtime.num_workers(),
            alive_tasks: runtime.num_alive_tasks(),
            global_queue_depth: runtime.global_queue_depth(),
        },
        http_requests_in_flight: IN_FLIGHT.load(Ordering::Relaxed),
        deny_list: state.revocations.answered().as_str(),
        workers: beats
            .iter()
            .map(|(name, (last, passes))| WorkerView { name, passes: *passes, last_pass_ms_ago: now - last })
            .collect(),
    })
}

/// Checks the dependencies every 15 s (the `dependency_up` and `ready` gauges), until `shutdown` fires.
pub async fn run_prober(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = crate::http::ops::check_dependencies(&state) => {}
            _ = shutdown.changed() => return,
        }
        state.heartbeats.beat("ops.dependency_prober");
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(15)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProfileQuery {
    /// How long to sample: 1 to 60 s, default 10.
    pub seconds: Option<u64>,
    /// `pprof` (default: the protobuf `go tool pprof` reads) or `svg` (a flame graph).
    pub format: Option<String>,
}

/// One profile at a time, CPU or heap: the CPU profiler is process-wide (a timer signal), and jemalloc's heap
/// sampling must not run under it (both unwind stacks; together they can deadlock).
static PROFILING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The profile's length: `seconds`, or `default`, within 1..=`max`.
fn profile_seconds(seconds: Option<u64>, default: u64, max: u64) -> Result<u64, crate::error::AppError> {
    let seconds = seconds.unwrap_or(default);
    if !(1..=max).contains(&seconds) {
        return Err(crate::error::AppError::validation("seconds", format!("1 to {max}")));
    }
    Ok(seconds)
}

/// The profiling slot, or 409 `profile_in_progress` while another profile (CPU or heap) runs.
fn profiling_slot() -> Result<tokio::sync::MutexGuard<'static, ()>, crate::error::AppError> {
    PROFILING.try_lock().map_err(|_| {
        crate::error::AppError::conflict("profile_in_progress", "another profile is being taken; try again later")
    })
}

/// CPU profile of the whole process, sampled at 99 Hz for `seconds`, as pprof protobuf or an SVG flame graph.
#[utoipa::path(get, path = "/debug/pprof/profile", tag = "ops", params(ProfileQuery),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>),
        (status = 409, body = crate::error::ErrorBody, description = "`profile_in_progress`"),
        (status = 422, body = crate::error::ErrorBody)))]
pub async fn cpu_profile(
    crate::http::extract::AppQuery(q): crate::http::extract::AppQuery<ProfileQuery>,
) -> Result<Response, crate::error::AppError> {
    use crate::error::AppError;
    let seconds = profile_seconds(q.seconds, 10, 60)?;
    let svg = match q.format.as_deref() {
        None | Some("pprof") => false,
        Some("svg") => true,
        Some(_) => return Err(AppError::validation("format", "`pprof` or `svg`")),
    };
    let _one_at_a_time = profiling_slot()?;
    // The profiler guard is not Send: sample and build the report on a blocking thread.
    let body = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        let guard = pprof::ProfilerGuardBuilder::default()
            .frequency(99)
            .blocklist(&["libc", "libgcc", "pthread", "vdso"])
            .build()
            .map_err(|e| e.to_string())?;
        std::thread::sleep(std::time::Duration::from_secs(seconds));
        let report = guard.report().build().map_err(|e| e.to_string())?;
        let mut body = Vec::new();
        if svg {
            report.flamegraph(&mut body).map_err(|e| e.to_string())?;
        } else {
            use pprof::protos::Message;
            body = report.pprof().map_err(|e| e.to_string())?.write_to_bytes().map_err(|e| e.to_string())?;
        }
        drop(report);
        // Naming the frames parsed the binary's line tables into a process-wide cache that nothing else uses:
        // ~300 MiB with the `profiling` build's line tables, otherwise kept for the process's life.
        backtrace::clear_symbol_cache();
        Ok(body)
    })
    .await
    .map_err(|e| AppError::Internal(anyhow::anyhow!("profiler thread: {e}")))?
    .map_err(|e| AppError::Internal(anyhow::anyhow!("profiler: {e}")))?;
    if svg && !body.starts_with(b"<?xml") && !body.starts_with(b"<svg") {
        return Err(AppError::conflict(
            "no_samples",
            "the process used no CPU while sampling; sample for longer or under load",
        ));
    }
    let content_type = if svg { "image/svg+xml" } else { "application/octet-stream" };
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HeapQuery {
    /// How long to record allocations: 1 to 300 s, default 30.
    pub seconds: Option<u64>,
}

/// Heap profile (jemalloc, gzipped pprof protobuf for `go tool pprof`): the memory allocated during the next
/// `seconds` that is still held at their end, by allocation stack, sampled every 512 KiB on average. Sampling is on
/// only for that window, so it costs nothing the rest of the time.
#[utoipa::path(get, path = "/debug/pprof/heap", tag = "ops", params(HeapQuery),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>),
        (status = 409, body = crate::error::ErrorBody, description = "`profile_in_progress`"),
        (status = 422, body = crate::error::ErrorBody),
        (status = 501, body = crate::error::ErrorBody, description = "`heap_profiling_unavailable`: built without jemalloc")))]
pub async fn heap_profile(
    crate::http::extract::AppQuery(q): crate::http::extract::AppQuery<HeapQuery>,
) -> Result<Response, crate::error::AppError> {
    use crate::error::AppError;
    let seconds = profile_seconds(q.seconds, 30, 300)?;
    let one_at_a_time = profiling_slot()?;
    // A task of its own: if the caller goes away, sampling is still switched off at the end of the window.
    let body = tokio::spawn(async move {
        let _one_at_a_time = one_at_a_time;
        heap::profile(std::time::Duration::from_secs(seconds)).await
    })
    .await
    .map_err(|e| AppError::Internal(anyhow::anyhow!("heap profiler task: {e}")))??;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response())
}

/// 501 `heap_profiling_unavailable`, saying why.
fn heap_unavailable(why: &str) -> crate::error::AppError {
    crate::error::AppError::NotImplemented { code: "heap_profiling_unavailable", message: why.to_owned() }
}

#[cfg(feature = "jemalloc")]
mod heap {
    use super::heap_unavailable;
    use crate::error::AppError;

    pub async fn profile(window: std::time::Duration) -> Result<Vec<u8>, AppError> {
        let Some(control) = jemalloc_pprof::PROF_CTL.as_ref() else {
            return Err(heap_unavailable("jemalloc was started without `prof:true` (see `malloc_conf` in main.rs)"));
        };
        let failed = |e: &dyn std::fmt::Display| AppError::Internal(anyhow::anyhow!("heap profiler: {e}"));
        control.lock().await.activate().map_err(|e| failed(&e))?;
        tokio::time::sleep(window).await;
        let mut control = control.lock().await;
        let dump = control.dump_pprof().map_err(|e| failed(&e));
        control.deactivate().map_err(|e| failed(&e))?;
        dump
    }
}

#[cfg(not(feature = "jemalloc"))]
mod heap {
    use super::heap_unavailable;
    use crate::error::AppError;

    pub async fn profile(_window: std::time::Duration) -> Result<Vec<u8>, AppError> {
        Err(heap_unavailable("this build has no jemalloc (cargo feature `jemalloc`)"))
    }
}
