//! The purger, in every instance: due URLs are leased (so two instances never send the same batch), sent in
//! batches of at most `cdn.batch_size`, never more than `cdn.daily_quota` URLs per UTC day across instances nor
//! more than `cdn.max_calls_per_sec` calls per second; a failed call is retried with exponential backoff and
//! jitter (a failed call ends the pass: no hammering a provider in trouble), then parked as `failed` (alerted); submitted tasks are followed until the provider says done (a failed
//! task goes back to the queue).

use std::time::Duration;

use rand::Rng;

use crate::cdn::{store, CdnClient, TaskState};
use crate::db::now_ms;
use crate::error::AppError;
use crate::state::AppState;

/// Calls in one pass at most, so a large backlog does not starve the task checks.
const CALLS_PER_PASS: usize = 20;
/// A lease outlives any call (10 s timeout) by far; a dead instance's rows come back after it.
const LEASE_MS: i64 = 60_000;
const CHECK_AFTER_MS: i64 = 2_000;
const MAX_BACKOFF_MS: i64 = 300_000;

pub async fn run(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    if state.cdn.is_none() {
        return;
    }
    let interval = Duration::from_millis(state.config.cdn.worker_interval_ms.max(10));
    loop {
        state.heartbeats.beat("cdn.purger");
        if let Err(error) = pass(&state).await {
            tracing::warn!(%error, "CDN purge pass failed; retrying");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// What one pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    pub calls: usize,
    pub urls_submitted: usize,
    pub failed_calls: usize,
    pub tasks_done: usize,
    /// Due URLs held back because the day's quota is used up.
    pub over_quota: bool,
}

/// One pass (tests call it directly).
pub async fn pass(state: &AppState) -> Result<PassReport, AppError> {
    let Some(client) = state.cdn.as_ref() else { return Ok(PassReport::default()) };
    let config = &state.config.cdn;
    let pool = &state.db.pool;
    // This pass's lease holder: unique, so a batch is only ever this pass's.
    let owner = uuid::Uuid::new_v4().simple().to_string();
    let owner = owner.as_str();
    let mut report = PassReport::default();
    let pause = Duration::from_millis(1000 / config.max_calls_per_sec.max(1));
    for call in 0..CALLS_PER_PASS {
        let now = now_ms();
        let day_start = now - now.rem_euclid(86_400_000);
        let used = store::submitted_since(pool, day_start).await?;
        let left = (config.daily_quota as i64 - used).max(0);
        if left == 0 {
            report.over_quota = store::has_due(pool, now).await?;
            metrics::counter!("cdn_purge_over_quota_total").increment(1);
            break;
        }
        let batch = store::lease_due(pool, now, left.min(config.batch() as i64), owner, now + LEASE_MS).await?;
        if batch.is_empty() {
            break;
        }
        if call > 0 {
            tokio::time::sleep(pause).await;
        }
        let urls: Vec<String> = batch.iter().map(|d| d.url.clone()).collect();
        let ids: Vec<i64> = batch.iter().map(|d| d.id).collect();
        report.calls += 1;
        match client.purge(&urls).await {
            Ok(task_id) => {
                let now = now_ms();
                store::mark_submitted(pool, &ids, &task_id, now, now + CHECK_AFTER_MS).await?;
                report.urls_submitted += urls.len();
                metrics::counter!("cdn_purge_urls_total", "provider" => client.name()).increment(urls.len() as u64);
                tracing::info!(provider = client.name(), urls = urls.len(), %task_id, "CDN purge submitted");
            }
            Err(error) => {
                report.failed_calls += 1;
                let attempts = batch.iter().map(|d| d.attempts).max().unwrap_or(0) + 1;
                let give_up = !error.retryable || attempts >= config.max_attempts as i64;
                let next_at = now_ms() + backoff(config.retry_base_ms as i64, attempts);
                store::mark_failed_call(pool, &ids, next_at, give_up, &error.message).await?;
                metrics::counter!("cdn_purge_failures_total", "provider" => client.name()).increment(1);
                if give_up {
                    metrics::counter!("cdn_purge_parked_total").increment(ids.len() as u64);
                    tracing::error!(provider = client.name(), error = %error.message, urls = urls.len(), "CDN purge parked as failed");
                } else {
                    tracing::warn!(provider = client.name(), error = %error.message, attempts, "CDN purge failed; retrying later");
                }
                // The provider is in trouble (or refusing): no more calls this pass.
                break;
            }
        }
    }
    report.tasks_done = follow_tasks(state, client).await?;
    let (depth, oldest) = store::backlog(pool).await?;
    metrics::gauge!("cdn_purge_queue_depth").set(depth as f64);
    metrics::gauge!("cdn_purge_oldest_age_seconds").set(oldest.map_or(0.0, |t| (now_ms() - t).max(0) as f64 / 1000.0));
    Ok(report)
}

async fn follow_tasks(state: &AppState, client: &CdnClient) -> Result<usize, AppError> {
    let pool = &state.db.pool;
    let max = state.config.cdn.max_attempts as i64;
    let mut done = 0;
    for task_id in store::due_tasks(pool, now_ms(), 20).await? {
        let now = now_ms();
        match client.task(&task_id).await {
            Ok(TaskState::Done) => {
                store::settle_task(pool, &task_id, "done", now, now, max).await?;
                done += 1;
            }
            Ok(TaskState::Running) => store::settle_task(pool, &task_id, "submitted", now + 5_000, now, max).await?,
            Ok(TaskState::Failed) => {
                tracing::warn!(%task_id, "the CDN failed a purge task; queueing its URLs again");
                store::settle_task(pool, &task_id, "pending", now, now, max).await?;
            }
            Err(error) => {
                tracing::warn!(%task_id, error = %error.message, "cannot read a CDN purge task; looking again later");
                store::settle_task(pool, &task_id, "submitted", now + 10_000, now, max).await?;
            }
        }
    }
    Ok(done)
}

/// `base · 2^(attempts-1)`, capped, ±20% jitter so instances do not retry in step.
fn backoff(base_ms: i64, attempts: i64) -> i64 {
    let exp = base_ms.saturating_mul(1 << (attempts - 1).clamp(0, 20)).min(MAX_BACKOFF_MS);
    let jitter = rand::rng().random_range(0.8..1.2);
    (exp as f64 * jitter) as i64
}
