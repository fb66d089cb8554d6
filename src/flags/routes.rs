//! `/admin/api/v1/flags`: admins write, operators toggle and change the rollout (and kill), viewers read.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::extract::{AdminUser, Role};
use crate::error::{AppError, ErrorBody};
use crate::flags::engine::{Context, Flag, Reason};
use crate::flags::service::{self, CreateFlag, FlagHistory, FlagList, UpdateFlag};
use crate::http::extract::{AppJson, AppQuery};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_flags, create_flag))
        .routes(routes!(get_flag, update_flag))
        .routes(routes!(kill_flag))
        .routes(routes!(flag_history))
        .routes(routes!(revert_flag))
        .routes(routes!(explain_flag))
}

/// Every flag.
#[utoipa::path(get, path = "/admin/api/v1/flags", tag = "admin-flags", security(("bearer" = [])), responses(
    (status = 200, body = FlagList),
    (status = 401, body = ErrorBody),
))]
#[tracing::instrument(skip_all)]
pub async fn list_flags(State(state): State<AppState>, _admin: AdminUser) -> Result<Json<FlagList>, AppError> {
    Ok(Json(service::list(&state).await?))
}

/// Creates a flag (admins). Audited with the reason given.
#[utoipa::path(post, path = "/admin/api/v1/flags", tag = "admin-flags", security(("bearer" = [])),
    request_body = CreateFlag,
    responses(
        (status = 201, body = Flag),
        (status = 400, body = ErrorBody, description = "`invalid_json`"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "`forbidden`: admins only"),
        (status = 409, body = ErrorBody, description = "`flag_exists`"),
        (status = 422, body = ErrorBody, description = "`validation_failed`"),
    ))]
#[tracing::instrument(skip_all, fields(admin_id = admin.id))]
pub async fn create_flag(
    State(state): State<AppState>,
    admin: AdminUser,
    AppJson(body): AppJson<CreateFlag>,
) -> Result<(StatusCode, Json<Flag>), AppError> {
    admin.require(Role::Admin)?;
    Ok((StatusCode::CREATED, Json(service::create(&state, admin.id, body).await?)))
}

/// One flag, as stored (its `version` is what `If-Match` takes).
#[utoipa::path(get, path = "/admin/api/v1/flags/{key}", tag = "admin-flags", security(("bearer" = [])),
    params(("key" = String, Path)),
    responses(
        (status = 200, body = Flag),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "`flag_not_found`"),
    ))]
#[tracing::instrument(skip_all)]
pub async fn get_flag(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(key): Path<String>,
) -> Result<Json<Flag>, AppError> {
    Ok(Json(service::get(&state, &key).await?))
}

/// The `If-Match` version, when sent (`"3"` or `3`).
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, AppError> {
    let Some(value) = headers.get(axum::http::header::IF_MATCH) else { return Ok(None) };
    let text = value.to_str().unwrap_or_default().trim().trim_start_matches("W/").trim_matches('"');
    text.parse().map(Some).map_err(|_| AppError::invalid_parameter("If-Match must be the flag's version"))
}

/// Changes a flag. With `If-Match: <version>` (what every editor should send) a write based on an older version is
/// a 409 instead of overwriting a change it has not seen. Operators may change `enabled` and `rollout_percent`
/// only; everything else needs an admin.
#[utoipa::path(patch, path = "/admin/api/v1/flags/{key}", tag = "admin-flags", security(("bearer" = [])),
    params(("key" = String, Path), ("If-Match" = String, Header, pattern = r#"^"?[0-9]{1,18}"?$"#,
        description = "The version the change is based on")),
    request_body = UpdateFlag,
    responses(
        (status = 200, body = Flag),
        (status = 400, body = ErrorBody, description = "`invalid_json`; `invalid_parameter` (If-Match)"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "`forbidden`"),
        (status = 404, body = ErrorBody, description = "`flag_not_found`"),
        (status = 409, body = ErrorBody, description = "`version_conflict`"),
        (status = 422, body = ErrorBody, description = "`validation_failed`"),
    ))]
#[tracing::instrument(skip_all, fields(admin_id = admin.id))]
pub async fn update_flag(
    State(state): State<AppState>,
    admin: AdminUser,
    Path(key): Path<String>,
    headers: HeaderMap,
    AppJson(body): AppJson<UpdateFlag>,
) -> Result<Json<Flag>, AppError> {
    if body.operator_allowed() {
        admin.require(Role::Operator)?;
    } else {
        admin.require(Role::Admin)?;
    }
    let expected = if_match(&headers)?;
    Ok(Json(service::update(&state, admin.id, &key, expected, body).await?))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KillFlag {
    /// Why (kept in the audit log).
    #[serde(default)]
    pub reason: Option<String>,
}

/// The kill switch (operators and admins): off for everyone at once, whatever the rules and rollout say.
#[utoipa::path(post, path = "/admin/api/v1/flags/{key}/kill", tag = "admin-flags", security(("bearer" = [])),
    params(("key" = String, Path)),
    request_body = KillFlag,
    responses(
        (status = 200, body = Flag),
        (status = 400, body = ErrorBody, description = "`invalid_json`"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "`flag_not_found`"),
        (status = 422, body = ErrorBody, description = "`validation_failed`"),
    ))]
#[tracing::instrument(skip_all, fields(admin_id = admin.id))]
pub async fn kill_flag(
    State(state): State<AppState>,
    admin: AdminUser,
    Path(key): Path<String>,
    AppJson(body): AppJson<KillFlag>,
) -> Result<Json<Flag>, AppError> {
    admin.require(Role::Operator)?;
    Ok(Json(service::kill(&state, admin.id, &key, body.reason.as_deref().unwrap_or("")).await?))
}

/// Every change of a flag, newest first: who, when, before, after, why.
#[utoipa::path(get, path = "/admin/api/v1/flags/{key}/history", tag = "admin-flags", security(("bearer" = [])),
    params(("key" = String, Path)),
    responses(
        (status = 200, body = FlagHistory),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "`flag_not_found`"),
    ))]
#[tracing::instrument(skip_all)]
pub async fn flag_history(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(key): Path<String>,
) -> Result<Json<FlagHistory>, AppError> {
    Ok(Json(service::history(&state, &key).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevertFlag {
    /// The version to restore (from the history).
    pub version: i64,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Restores the flag exactly as it was at `version`, as a new version (admins).
#[utoipa::path(post, path = "/admin/api/v1/flags/{key}/revert", tag = "admin-flags", security(("bearer" = [])),
    params(("key" = String, Path)),
    request_body = RevertFlag,
    responses(
        (status = 200, body = Flag),
        (status = 400, body = ErrorBody, description = "`invalid_json`"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "`flag_not_found`, `flag_version_not_found`"),
        (status = 422, body = ErrorBody, description = "`validation_failed`"),
    ))]
#[tracing::instrument(skip_all, fields(admin_id = admin.id))]
pub async fn revert_flag(
    State(state): State<AppState>,
    admin: AdminUser,
    Path(key): Path<String>,
    AppJson(body): AppJson<RevertFlag>,
) -> Result<Json<Flag>, AppError> {
    admin.require(Role::Admin)?;
    Ok(Json(service::revert(&state, admin.id, &key, body.version, body.reason.as_deref().unwrap_or("")).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExplainQuery {
    pub user_id: Option<String>,
    pub anon_id: Option<String>,
    pub platform: Option<String>,
    pub app_version: Option<String>,
}

/// What this instance's snapshot answers for a user, and why.
#[derive(Debug, Serialize, ToSchema)]
pub struct Explanation {
    /// `true`/`false`, or for a flag with variants the variant's value (its name when it has none).
    pub value: serde_json::Value,
    pub variant: Option<String>,
    pub reason: Reason,
    /// The 1–100 number the rollout compares (none without a user or anonymous id).
    pub bucket: Option<u32>,
    pub version: i64,
    pub rule_id: Option<String>,
}

/// Explains the evaluation for `user_id` (or `anon_id`) and attributes, from this instance's snapshot.
#[utoipa::path(get, path = "/admin/api/v1/flags/{key}/explain", tag = "admin-flags", security(("bearer" = [])),
    params(("key" = String, Path), ExplainQuery),
    responses(
        (status = 200, body = Explanation),
        (status = 400, body = ErrorBody, description = "`invalid_parameter`"),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "`flag_not_found` (in this instance's snapshot)"),
    ))]
#[tracing::instrument(skip_all)]
pub async fn explain_flag(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(key): Path<String>,
    AppQuery(q): AppQuery<ExplainQuery>,
) -> Result<Json<Explanation>, AppError> {
    let snapshot = state.flags.snapshot();
    if !snapshot.flags.contains_key(&key) {
        return Err(AppError::not_found("flag"));
    }
    let mut properties: Vec<(&str, &str)> = Vec::new();
    if let Some(p) = q.platform.as_deref() {
        properties.push(("platform", p));
    }
    if let Some(v) = q.app_version.as_deref() {
        properties.push(("app_version", v));
    }
    let ctx = Context {
        user_id: q.user_id.as_deref(),
        anon_id: q.anon_id.as_deref(),
        properties: &properties,
        now_ms: crate::db::now_ms(),
    };
    let evaluation = state.flags.evaluate(&snapshot, &key, &ctx);
    let flag = &snapshot.flags[&key];
    Ok(Json(Explanation {
        value: value_of(flag, &evaluation),
        variant: evaluation.variant.map(|v| v.name.clone()),
        reason: evaluation.reason,
        bucket: evaluation.bucket,
        version: evaluation.version,
        rule_id: evaluation.rule_id.map(str::to_owned),
    }))
}

/// The resolved value: a boolean, or for a flag with variants the variant's value (its name when it has none).
pub fn value_of(flag: &Flag, evaluation: &crate::flags::engine::Evaluation<'_>) -> serde_json::Value {
    match (flag.variants.is_empty(), evaluation.variant) {
        (false, Some(variant)) if evaluation.enabled => {
            variant.value.clone().unwrap_or_else(|| serde_json::Value::String(variant.name.clone()))
        }
        _ => serde_json::Value::Bool(evaluation.enabled),
    }
}
