//! Back office: banning and unbanning users (role `admin`).

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::extract::{AdminUser, Role};
use crate::error::{AppError, ErrorBody};
use crate::http::extract::AppPath;
use crate::state::AppState;
use crate::users::service;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(ban_user)).routes(routes!(unban_user))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserStatus {
    pub id: i64,
    /// `active` or `banned`.
    pub status: &'static str,
}

/// Bans a user: their tokens stop working on every instance at once.
#[utoipa::path(post, path = "/admin/api/v1/users/{id}/ban", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses(
        (status = 200, body = UserStatus),
        (status = 403, body = ErrorBody, description = "needs the admin role"),
        (status = 404, body = ErrorBody, description = "`user_not_found`"),
    ))]
#[tracing::instrument(skip_all, fields(admin_id = admin.id, user_id = id))]
pub async fn ban_user(
    State(state): State<AppState>,
    admin: AdminUser,
    AppPath(id): AppPath<i64>,
) -> Result<Json<UserStatus>, AppError> {
    admin.require(Role::Admin)?;
    service::ban(&state, id).await?;
    tracing::warn!("user banned"); // the span names the admin and the user
    Ok(Json(UserStatus { id, status: "banned" }))
}

/// Lifts a ban; the user logs in again.
#[utoipa::path(post, path = "/admin/api/v1/users/{id}/unban", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = UserStatus), (status = 404, body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(admin_id = admin.id, user_id = id))]
pub async fn unban_user(
    State(state): State<AppState>,
    admin: AdminUser,
    AppPath(id): AppPath<i64>,
) -> Result<Json<UserStatus>, AppError> {
    admin.require(Role::Admin)?;
    service::unban(&state, id).await?;
    Ok(Json(UserStatus { id, status: "active" }))
}
