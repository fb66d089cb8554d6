//! The signed-in user's own account.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::extract::AuthUser;
use crate::error::{AppError, ErrorBody};
use crate::http::extract::AppJson;
use crate::state::AppState;
use crate::users::service::{self, UpdateProfile, UserProfile};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_me, update_me)).routes(routes!(bind_phone))
}

/// The signed-in user.
#[utoipa::path(get, path = "/api/v1/me", tag = "users", security(("bearer" = [])), responses(
    (status = 200, body = UserProfile),
    (status = 401, body = ErrorBody),
))]
#[tracing::instrument(skip_all, fields(user_id = user.id))]
pub async fn get_me(State(state): State<AppState>, user: AuthUser) -> Result<Json<UserProfile>, AppError> {
    Ok(Json(service::profile(&state, user.id).await?))
}

/// Edits the nickname and avatar (a committed avatar upload of this user); any other field is a 422.
#[utoipa::path(patch, path = "/api/v1/me", tag = "users", security(("bearer" = [])), request_body = UpdateProfile,
    responses(
        (status = 200, body = UserProfile),
        (status = 404, body = ErrorBody, description = "`upload_not_found`: not a committed avatar upload of this user"),
        (status = 422, body = ErrorBody, description = "`validation_failed`, naming the field"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = user.id))]
pub async fn update_me(
    State(state): State<AppState>,
    user: AuthUser,
    AppJson(body): AppJson<UpdateProfile>,
) -> Result<Json<UserProfile>, AppError> {
    Ok(Json(service::update_profile(&state, user.id, body).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BindPhone {
    /// The code from the `getPhoneNumber` button.
    pub code: String,
}

/// Binds the phone number behind a `getPhoneNumber` code.
#[utoipa::path(post, path = "/api/v1/me/phone", tag = "users", security(("bearer" = [])), request_body = BindPhone,
    responses(
        (status = 200, body = UserProfile),
        (status = 401, body = ErrorBody, description = "`wechat_code_invalid` or a token error"),
        (status = 503, body = ErrorBody, description = "`wechat_unavailable`"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = user.id))]
pub async fn bind_phone(
    State(state): State<AppState>,
    user: AuthUser,
    AppJson(body): AppJson<BindPhone>,
) -> Result<Json<UserProfile>, AppError> {
    Ok(Json(service::bind_phone(&state, user.id, &body.code).await?))
}
