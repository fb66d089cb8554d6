//! Back-office coupon campaigns: create, list, stop.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::extract::{AdminUser, Role};
use crate::coupons::service::{self, Campaign, CreateCampaign};
use crate::domain::{Page, PageQuery};
use crate::error::{AppError, ErrorBody};
use crate::http::extract::{AppJson, AppPath, AppQuery};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(admin_list_campaigns, admin_create_campaign))
        .routes(routes!(admin_stop_campaign))
}

/// Creates a coupon campaign.
#[utoipa::path(post, path = "/admin/api/v1/coupon-campaigns", tag = "admin", security(("bearer" = [])),
    request_body = CreateCampaign,
    responses((status = 201, body = Campaign), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(admin_id = admin.id))]
pub async fn admin_create_campaign(
    State(state): State<AppState>,
    admin: AdminUser,
    AppJson(body): AppJson<CreateCampaign>,
) -> Result<(StatusCode, Json<Campaign>), AppError> {
    admin.require(Role::Operator)?;
    Ok((StatusCode::CREATED, Json(service::create_campaign(&state, body).await?)))
}

/// Every campaign, newest first.
#[utoipa::path(get, path = "/admin/api/v1/coupon-campaigns", tag = "admin", security(("bearer" = [])),
    params(PageQuery), responses((status = 200, body = Page<Campaign>)))]
pub async fn admin_list_campaigns(
    State(state): State<AppState>,
    _admin: AdminUser,
    AppQuery(q): AppQuery<PageQuery>,
) -> Result<Json<Page<Campaign>>, AppError> {
    Ok(Json(service::list_campaigns(&state, false, q.limit, q.cursor.as_deref()).await?))
}

/// Stops a campaign: no more claims; coupons already claimed stay usable.
#[utoipa::path(post, path = "/admin/api/v1/coupon-campaigns/{id}/stop", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = Campaign), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "`campaign_stopped`")))]
#[tracing::instrument(skip_all, fields(admin_id = admin.id))]
pub async fn admin_stop_campaign(
    State(state): State<AppState>,
    admin: AdminUser,
    AppPath(id): AppPath<i64>,
) -> Result<Json<Campaign>, AppError> {
    admin.require(Role::Operator)?;
    Ok(Json(service::stop_campaign(&state, id).await?))
}
