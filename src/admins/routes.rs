//! Back-office sessions.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::admins::service::{self, AdminLoginResponse, AdminProfile};
use crate::auth::extract::AdminUser;
use crate::auth::routes::RefreshRequest;
use crate::auth::sessions;
use crate::error::{AppError, ErrorBody};
use crate::http::extract::AppJson;
use crate::state::AppState;
use crate::users::service::TokenPair;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(admin_login))
        .routes(routes!(admin_refresh))
        .routes(routes!(admin_logout))
        .routes(routes!(admin_me))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminLogin {
    pub username: String,
    pub password: String,
}

/// Password login for the back office.
#[utoipa::path(post, path = "/admin/api/v1/auth/login", tag = "admin", request_body = AdminLogin, responses(
    (status = 200, body = AdminLoginResponse),
    (status = 401, body = ErrorBody, description = "`invalid_credentials`"),
    (status = 429, body = ErrorBody, description = "`too_many_attempts`, with Retry-After"),
))]
#[tracing::instrument(skip_all)]
pub async fn admin_login(
    State(state): State<AppState>,
    AppJson(body): AppJson<AdminLogin>,
) -> Result<Json<AdminLoginResponse>, AppError> {
    Ok(Json(service::login(&state, &body.username, &body.password).await?))
}

/// Exchanges an admin refresh token for a new pair.
#[utoipa::path(post, path = "/admin/api/v1/auth/refresh", tag = "admin", request_body = RefreshRequest, responses(
    (status = 200, body = TokenPair),
    (status = 401, body = ErrorBody),
))]
#[tracing::instrument(skip_all)]
pub async fn admin_refresh(
    State(state): State<AppState>,
    AppJson(body): AppJson<RefreshRequest>,
) -> Result<Json<TokenPair>, AppError> {
    Ok(Json(service::refresh(&state, &body.refresh_token).await?))
}

/// Ends the admin session.
#[utoipa::path(post, path = "/admin/api/v1/auth/logout", tag = "admin", security(("bearer" = [])), responses(
    (status = 204, description = "logged out"),
    (status = 401, body = ErrorBody),
))]
#[tracing::instrument(skip_all, fields(admin_id = admin.id))]
pub async fn admin_logout(State(state): State<AppState>, admin: AdminUser) -> Result<StatusCode, AppError> {
    sessions::logout(&state, &admin.token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in admin account.
#[utoipa::path(get, path = "/admin/api/v1/me", tag = "admin", security(("bearer" = [])), responses(
    (status = 200, body = AdminProfile),
    (status = 401, body = ErrorBody),
))]
#[tracing::instrument(skip_all, fields(admin_id = admin.id))]
pub async fn admin_me(State(state): State<AppState>, admin: AdminUser) -> Result<Json<AdminProfile>, AppError> {
    Ok(Json(service::profile(&state, admin.id).await?))
}
