//! Back-office traffic statistics from the client reports.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::extract::AdminUser;
use crate::db::{get_text, Bounded};
use crate::error::{AppError, ErrorBody};
use crate::events::admin_routes::{day_bound, DayRange};
use crate::http::extract::AppQuery;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(admin_traffic_stats))
}

/// One day's traffic of one page.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct TrafficRow {
    /// `YYYY-MM-DD`, Beijing time.
    pub day: String,
    pub page: String,
    /// Page views.
    pub pv: i64,
    /// Distinct visitors (users and anonymous ids) with a page view.
    pub uv: i64,
    pub clicks: i64,
    pub errors: i64,
    /// Perf timings reported (`perf` events with `props.value_ms`).
    pub perf_samples: i64,
    /// Percentiles of those timings, as the upper bound of their bucket (ms); null without samples.
    pub perf_p50_ms: Option<i64>,
    pub perf_p90_ms: Option<i64>,
    pub perf_p99_ms: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TrafficStats {
    pub items: Vec<TrafficRow>,
}

/// The upper bound of the bucket holding the `q` quantile of `buckets` (sorted by bound).
fn quantile(buckets: &[(i64, i64)], q: f64) -> Option<i64> {
    let total: i64 = buckets.iter().map(|(_, n)| n).sum();
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0) as i64;
    let mut seen = 0;
    buckets
        .iter()
        .find(|(_, n)| {
            seen += n;
            seen >= rank
        })
        .map(|(bound, _)| *bound)
}

/// Page views, visitors, clicks, errors and timing percentiles per day (Beijing time) and page, from the client
/// reports, each event counted once.
#[utoipa::path(get, path = "/admin/api/v1/stats/traffic", tag = "admin", security(("bearer" = [])), params(DayRange),
    responses((status = 200, body = TrafficStats), (status = 422, body = ErrorBody)))]
pub async fn admin_traffic_stats(
    State(state): State<AppState>,
    _admin: AdminUser,
    AppQuery(q): AppQuery<DayRange>,
) -> Result<Json<TrafficStats>, AppError> {
    let from = day_bound("from", q.from.as_deref())?.unwrap_or_else(|| "0000-00-00".into());
    let to = day_bound("to", q.to.as_deref())?.unwrap_or_else(|| "9999-99-99".into());
    let mut rows: BTreeMap<(String, String), TrafficRow> = BTreeMap::new();
    let daily = sqlx::query(
        "SELECT day, page, pv, uv, clicks, errors FROM traffic_daily WHERE day >= ? AND day <= ? LIMIT 10000",
    )
    .bind(from.clone())
    .bind(to.clone())
    .fetch_all(&state.db.pool)
    .bounded()
    .await?;
    for r in &daily {
        let (day, page) = (get_text(r, "day")?, get_text(r, "page")?);
        let row = TrafficRow {
            day: day.clone(),
            page: page.clone(),
            pv: r.try_get("pv")?,
            uv: r.try_get("uv")?,
            clicks: r.try_get("clicks")?,
            errors: r.try_get("errors")?,
            ..TrafficRow::default()
        };
        rows.insert((day, page), row);
    }
    let perf = sqlx::query(
        "SELECT day, page, bucket_ms, samples FROM traffic_perf WHERE day >= ? AND day <= ? ORDER BY bucket_ms LIMIT 100000",
    )
    .bind(from)
    .bind(to)
    .fetch_all(&state.db.pool)
    .bounded()
    .await?;
    let mut buckets: BTreeMap<(String, String), Vec<(i64, i64)>> = BTreeMap::new();
    for r in &perf {
        let key = (get_text(r, "day")?, get_text(r, "page")?);
        buckets.entry(key).or_default().push((r.try_get("bucket_ms")?, r.try_get("samples")?));
    }
    for (key, buckets) in buckets {
        let row =
            rows.entry(key.clone()).or_insert_with(|| TrafficRow { day: key.0, page: key.1, ..TrafficRow::default() });
        row.perf_samples = buckets.iter().map(|(_, n)| n).sum();
        row.perf_p50_ms = quantile(&buckets, 0.5);
        row.perf_p90_ms = quantile(&buckets, 0.9);
        row.perf_p99_ms = quantile(&buckets, 0.99);
    }
    Ok(Json(TrafficStats { items: rows.into_values().collect() }))
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles_come_from_the_buckets() {
        let buckets = [(100, 50), (200, 40), (500, 9), (1000, 1)];
        assert_eq!(quantile(&buckets, 0.5), Some(100));
        assert_eq!(quantile(&buckets, 0.9), Some(200));
        assert_eq!(quantile(&buckets, 0.99), Some(500));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
