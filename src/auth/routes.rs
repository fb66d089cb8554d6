//! Mini-program sessions: WeChat login, refresh, logout.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::extract::AuthUser;
use crate::auth::sessions;
use crate::error::{AppError, ErrorBody};
use crate::http::extract::AppJson;
use crate::state::AppState;
use crate::users::service::{self, LoginResponse, TokenPair};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(wechat_login)).routes(routes!(refresh_tokens)).routes(routes!(logout))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WechatLogin {
    /// The code from `wx.login()`.
    pub code: String,
}

/// Logs in with a `wx.login` code; creates the user on first login.
#[utoipa::path(post, path = "/api/v1/auth/wechat/login", tag = "auth", request_body = WechatLogin, responses(
    (status = 200, body = LoginResponse),
    (status = 401, body = ErrorBody, description = "`wechat_code_invalid`: wrong, expired or used code"),
    (status = 403, body = ErrorBody, description = "`user_banned`"),
    (status = 429, body = ErrorBody, description = "`wechat_rate_limited`"),
    (status = 503, body = ErrorBody, description = "`wechat_unavailable`"),
))]
#[tracing::instrument(skip_all)]
pub async fn wechat_login(
    State(state): State<AppState>,
    AppJson(body): AppJson<WechatLogin>,
) -> Result<Json<LoginResponse>, AppError> {
    Ok(Json(service::login(&state, &body.code).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// Exchanges a refresh token for a new pair; the old refresh token is retired.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest, responses(
    (status = 200, body = TokenPair),
    (status = 401, body = ErrorBody, description = "`token_invalid`, `token_expired`, `token_revoked`, `refresh_token_reused` (the session is revoked)"),
))]
#[tracing::instrument(skip_all)]
pub async fn refresh_tokens(
    State(state): State<AppState>,
    AppJson(body): AppJson<RefreshRequest>,
) -> Result<Json<TokenPair>, AppError> {
    Ok(Json(service::refresh(&state, &body.refresh_token).await?))
}

/// Ends the session: its refresh tokens and this access token stop working everywhere.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])), responses(
    (status = 204, description = "logged out"),
    (status = 401, body = ErrorBody),
))]
#[tracing::instrument(skip_all)]
pub async fn logout(State(state): State<AppState>, user: AuthUser) -> Result<StatusCode, AppError> {
    sessions::logout(&state, &user.token).await?;
    Ok(StatusCode::NO_CONTENT)
}
