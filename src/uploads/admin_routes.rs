//! Back-office uploads: product images (operator or admin), and taking an image down (admin), which purges it from
//! the CDN.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::extract::{AdminUser, Role};
use crate::error::{AppError, ErrorBody};
use crate::http::extract::AppJson;
use crate::state::AppState;
use crate::uploads::service::{self, CreateUpload, UploadTicket, UploadView};
use crate::uploads::Owner;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_admin_upload))
        .routes(routes!(complete_admin_upload))
        .routes(routes!(take_down_upload))
}

/// A credential to upload a product image (`product_image`) directly to storage; see `POST /api/v1/uploads`.
#[utoipa::path(post, path = "/admin/api/v1/uploads", tag = "admin-uploads", security(("bearer" = [])),
    request_body = CreateUpload,
    responses(
        (status = 200, body = UploadTicket),
        (status = 400, body = ErrorBody, description = "`invalid_json`; `method_unsupported`"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "`forbidden`: viewers cannot upload"),
        (status = 422, body = ErrorBody, description = "`validation_failed`; `file_too_large`"),
        (status = 429, body = ErrorBody, description = "`rate_limited` or `upload_quota_exceeded`"),
    ))]
#[tracing::instrument(skip_all, fields(admin_id = admin.id))]
pub async fn create_admin_upload(
    State(state): State<AppState>,
    admin: AdminUser,
    AppJson(body): AppJson<CreateUpload>,
) -> Result<Json<UploadTicket>, AppError> {
    admin.require(Role::Operator)?;
    Ok(Json(service::create(&state, Owner::Admin(admin.id), body).await?))
}

/// Completes a product image upload; see `POST /api/v1/uploads/{id}/complete`.
#[utoipa::path(post, path = "/admin/api/v1/uploads/{id}/complete", tag = "admin-uploads", security(("bearer" = [])),
    params(("id" = String, Path, description = "The upload's id")),
    responses(
        (status = 200, body = UploadView),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "`upload_not_found`"),
        (status = 409, body = ErrorBody, description = "`upload_not_received`"),
        (status = 422, body = ErrorBody, description = "`file_too_large`, `unsupported_file_type`, `image_unreadable`, `image_too_large`, `upload_expired`"),
        (status = 503, body = ErrorBody, description = "`storage_unavailable`"),
    ))]
#[tracing::instrument(skip_all, fields(admin_id = admin.id))]
pub async fn complete_admin_upload(
    State(state): State<AppState>,
    admin: AdminUser,
    Path(id): Path<String>,
) -> Result<Json<UploadView>, AppError> {
    admin.require(Role::Operator)?;
    Ok(Json(service::complete(&state, Owner::Admin(admin.id), &id).await?))
}

/// Takes an image down (moderation, legal): the object is deleted, every upload of the same content is marked
/// removed, and its URL is purged from the CDN (batched, retried, within the provider's quota).
#[utoipa::path(delete, path = "/admin/api/v1/uploads/{id}", tag = "admin-uploads", security(("bearer" = [])),
    params(("id" = String, Path, description = "The upload's id (any user's or admin's)")),
    responses(
        (status = 204, description = "taken down; the CDN purge is queued"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "`forbidden`: admins only"),
        (status = 404, body = ErrorBody, description = "`upload_not_found`: no such committed upload"),
        (status = 503, body = ErrorBody, description = "`storage_unavailable`"),
    ))]
#[tracing::instrument(skip_all, fields(admin_id = admin.id))]
pub async fn take_down_upload(
    State(state): State<AppState>,
    admin: AdminUser,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    admin.require(Role::Admin)?;
    service::take_down(&state, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
