//! `POST /api/v1/track/batch`: the mini-program's event reports.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::Json;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::extract::AuthUser;
use crate::db::now_ms;
use crate::error::{AppError, ErrorBody};
use crate::rate_limit::{self, Action};
use crate::reporting::model::{self, Rejected, TrackBatch, TrackResult};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(track_batch))
}

/// Reports a batch of client events (page views, clicks, errors, timings, custom). With a user token the events
/// are the user's; without one the batch carries an `anon_id`. Each event is deduplicated on its sender and
/// `event_id` for 8 days, so a batch may be sent again safely (duplicates are counted, not stored twice). The answer
/// comes only once the batch is committed: on a 503 or no answer, send the same batch again.
#[utoipa::path(post, path = "/api/v1/track/batch", tag = "reporting", security((), ("bearer" = [])),
    request_body = TrackBatch,
    responses(
        (status = 200, body = TrackResult, description = "stored; bad events listed in `rejected` (and kept with their reason)"),
        (status = 400, body = ErrorBody, description = "`invalid_json`; `too_many_events` (over 200); `invalid_parameter`: no token and no valid `anon_id`"),
        (status = 401, body = ErrorBody, description = "a token was sent and is not valid"),
        (status = 413, body = ErrorBody, description = "`payload_too_large`: over 512 KiB"),
        (status = 429, body = ErrorBody, description = "`rate_limited`, with `Retry-After`"),
        (status = 503, body = ErrorBody, description = "`ingest_busy`, `ingest_timeout`, `database_unavailable`, with `Retry-After`: send the batch again"),
    ))]
#[tracing::instrument(skip_all)]
pub async fn track_batch(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<TrackResult>, AppError> {
    if body.len() > model::MAX_BODY_BYTES {
        return Err(AppError::PayloadTooLarge);
    }
    let user = AuthUser::optional(&headers, &state).await?.map(|user| user.id);
    let value: Value = crate::http::extract::parse_json_value(&body)?;
    let batch: TrackBatch =
        serde_json::from_value(value).map_err(|e| AppError::InvalidJson(format!("not a report batch: {e}")))?;
    if batch.batch.len() > model::MAX_EVENTS {
        let message = format!("at most {} events per batch", model::MAX_EVENTS);
        return Err(AppError::BadRequest { code: "too_many_events", message });
    }
    let source = match (user, batch.anon_id.as_deref()) {
        (Some(id), _) => format!("u:{id}"),
        (None, Some(anon)) if model::valid_id(anon, 8) => format!("a:{anon}"),
        (None, _) => {
            return Err(AppError::invalid_parameter(
                "a report without a token needs an `anon_id` (8 to 64 of A-Za-z0-9_-)",
            ))
        }
    };
    rate_limit::check_subject(&state, Action::Track, &source, rate_limit::client_ip(&state, &headers, peer)).await?;
    let received = now_ms();
    let sent_at = model::sent_at_ms(&batch);
    let (mut rows, mut bad, mut rejected) = (Vec::new(), Vec::new(), Vec::new());
    for (index, raw) in batch.batch.iter().enumerate() {
        match model::check(raw, sent_at, received) {
            Ok(row) => rows.push(row),
            Err(row) => {
                let event_id = (!row.event_id.is_empty()).then(|| row.event_id.clone());
                rejected.push(Rejected { index, event_id, reason: row.reason.to_owned() });
                bad.push(row);
            }
        }
    }
    let (accepted, duplicates) = state.ingest.submit(source, rows, bad, received).await?;
    metrics::counter!("track_events_total", "outcome" => "accepted").increment(accepted as u64);
    metrics::counter!("track_events_total", "outcome" => "duplicate").increment(duplicates as u64);
    metrics::counter!("track_events_total", "outcome" => "rejected").increment(rejected.len() as u64);
    state.reporting_wake.notify_one();
    Ok(Json(TrackResult { accepted, duplicates, rejected }))
}
