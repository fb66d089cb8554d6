//! Public operational endpoints: liveness, readiness and the OpenAPI document. Metrics and profiling are on the
//! ops listener (`crate::ops`), never on the public port.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ErrorBody;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz)).routes(routes!(openapi_json))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

/// The liveness answer.
pub const HEALTHY: &[u8] = br#"{"status":"ok"}"#;

/// Liveness: the process is up. Touches no dependency. `GET` is answered before the middleware
/// (`http::serve`), without a request id, span or request metrics; this handler serves `HEAD`.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = Health)))]
pub async fn healthz() -> Response {
    crate::http::json_body(axum::body::Bytes::from_static(HEALTHY))
}

/// Outcome of each dependency check: `ok`, `unavailable` or `not_configured`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Checks {
    pub database: &'static str,
    pub redis: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub status: &'static str,
    pub checks: Checks,
}

/// 503 body: the error format, plus the failed dependencies and every check.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotReady {
    #[serde(flatten)]
    pub error: ErrorBody,
    pub failed: Vec<&'static str>,
    pub checks: Checks,
}

/// Each readiness check gives up after this, so `/readyz` answers within a second whatever the dependencies do.
const CHECK_TIMEOUT: Duration = Duration::from_millis(800);

/// Readiness: the database and (in scale-out) Redis answer. 503 names the failed dependency.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses(
    (status = 200, body = Readiness),
    (status = 503, body = NotReady, description = "a dependency is unreachable; `failed` names it"),
))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let checks = check_dependencies(&state).await;
    let (database, redis) = (checks.database, checks.redis);
    let failed: Vec<&'static str> = [("database", database), ("redis", redis)]
        .into_iter()
        .filter(|(_, outcome)| *outcome == "unavailable")
        .map(|(name, _)| name)
        .collect();
    if failed.is_empty() {
        return Json(Readiness { status: "ready", checks }).into_response();
    }
    let error = ErrorBody {
        code: "dependency_unavailable".into(),
        message: format!("unreachable: {}", failed.join(", ")),
        fields: Vec::new(),
    };
    (StatusCode::SERVICE_UNAVAILABLE, Json(NotReady { error, failed, checks })).into_response()
}

/// Checks the database and Redis (at once, each bounded by 800 ms) and records `dependency_up{dependency}` (1 or 0) and
/// `ready` for the alert rules; the ops prober calls it periodically, so the gauges hold without readiness probes.
pub async fn check_dependencies(state: &AppState) -> Checks {
    let database = async {
        match tokio::time::timeout(CHECK_TIMEOUT, state.db.ping()).await {
            Ok(Ok(())) => "ok",
            Ok(Err(error)) => {
                tracing::warn!(%error, "readiness: database check failed");
                "unavailable"
            }
            Err(_) => "unavailable",
        }
    };
    let redis = async {
        let Some(redis) = &state.redis else {
            return "not_configured";
        };
        match tokio::time::timeout(CHECK_TIMEOUT, redis.ping()).await {
            Ok(Ok(())) => "ok",
            Ok(Err(error)) => {
                tracing::warn!(%error, "readiness: redis check failed");
                "unavailable"
            }
            Err(_) => "unavailable",
        }
    };
    let (database, redis) = tokio::join!(database, redis);
    for (name, outcome) in [("database", database), ("redis", redis)] {
        if outcome != "not_configured" {
            metrics::gauge!("dependency_up", "dependency" => name).set(f64::from(u8::from(outcome == "ok")));
        }
    }
    metrics::gauge!("ready").set(f64::from(u8::from(database != "unavailable" && redis != "unavailable")));
    Checks { database, redis }
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses(
    (status = 200, content_type = "application/json", body = Object)
))]
pub async fn openapi_json(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], state.openapi_json.clone()).into_response()
}
