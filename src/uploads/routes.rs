//! The mini-program's uploads: a credential to send a file straight to storage, then completion.

use axum::extract::{Path, State};
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::extract::AuthUser;
use crate::error::{AppError, ErrorBody};
use crate::http::extract::AppJson;
use crate::state::AppState;
use crate::uploads::service::{self, CreateUpload, UploadTicket, UploadView};
use crate::uploads::Owner;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_upload)).routes(routes!(complete_upload))
}

/// A credential to upload one image (`avatar`, `review_photo`) directly to storage: by default the fields of a
/// multipart POST (`wx.uploadFile`'s `formData`, the file field `file` last), or with `"method": "PUT"` a presigned
/// URL and the headers to send. The key is chosen here; the credential expires within 10 minutes.
#[utoipa::path(post, path = "/api/v1/uploads", tag = "uploads", security(("bearer" = [])), request_body = CreateUpload,
    responses(
        (status = 200, body = UploadTicket),
        (status = 400, body = ErrorBody, description = "`invalid_json`; `method_unsupported` (PUT on a POST-only store)"),
        (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "`validation_failed` (purpose, content_type, size); `file_too_large`"),
        (status = 429, body = ErrorBody, description = "`rate_limited` or `upload_quota_exceeded`, with `Retry-After`"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = user.id))]
pub async fn create_upload(
    State(state): State<AppState>,
    user: AuthUser,
    AppJson(body): AppJson<CreateUpload>,
) -> Result<Json<UploadTicket>, AppError> {
    Ok(Json(service::create(&state, Owner::User(user.id), body).await?))
}

/// Completes an upload once the file is in storage: checks it (size, real type by its bytes: JPEG, PNG or WebP;
/// dimensions), strips its metadata (EXIF/GPS), and moves it to its content-addressed URL. Safe to call again: a
/// committed upload answers the same, a rejected one the same error (and its file is gone).
#[utoipa::path(post, path = "/api/v1/uploads/{id}/complete", tag = "uploads", security(("bearer" = [])),
    params(("id" = String, Path, description = "The upload's id")),
    responses(
        (status = 200, body = UploadView),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "`upload_not_found` (also another user's upload)"),
        (status = 409, body = ErrorBody, description = "`upload_not_received`: the file is not in storage yet"),
        (status = 422, body = ErrorBody, description = "`file_too_large`, `unsupported_file_type`, `image_unreadable`, `image_too_large`, `upload_expired`"),
        (status = 503, body = ErrorBody, description = "`storage_unavailable`, with `Retry-After`"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = user.id))]
pub async fn complete_upload(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<UploadView>, AppError> {
    Ok(Json(service::complete(&state, Owner::User(user.id), &id).await?))
}
