//! Coupons for the mini-program: active campaigns, claiming, the user's coupons.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::extract::AuthUser;
use crate::coupons::service::{self, Campaign, Coupon};
use crate::domain::{Page, PageQuery};
use crate::error::{AppError, ErrorBody};
use crate::http::extract::{AppPath, AppQuery};
use crate::rate_limit::{self, Action};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_campaigns)).routes(routes!(claim_coupon)).routes(routes!(list_my_coupons))
}

/// Campaigns that are running or about to (not ended, not stopped), newest first, with what is left.
#[utoipa::path(get, path = "/api/v1/coupon-campaigns", tag = "coupons", params(PageQuery),
    responses((status = 200, body = Page<Campaign>), (status = 422, body = ErrorBody)))]
pub async fn list_campaigns(
    State(state): State<AppState>,
    AppQuery(q): AppQuery<PageQuery>,
) -> Result<Json<Page<Campaign>>, AppError> {
    Ok(Json(service::list_campaigns(&state, true, q.limit, q.cursor.as_deref()).await?))
}

/// Claims a coupon (抢券). Rate-limited per user and per client IP.
#[utoipa::path(post, path = "/api/v1/coupon-campaigns/{id}/claim", tag = "coupons", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses(
        (status = 201, body = Coupon),
        (status = 404, body = ErrorBody, description = "`campaign_not_found`"),
        (status = 409, body = ErrorBody, description = "`exhausted`, `limit_reached`, `not_started`, `ended`"),
        (status = 429, body = ErrorBody, description = "`rate_limited`, with `Retry-After`"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = user.id, campaign_id = id))]
pub async fn claim_coupon(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    user: AuthUser,
    AppPath(id): AppPath<i64>,
) -> Result<(StatusCode, Json<Coupon>), AppError> {
    rate_limit::check(&state, Action::Claim, user.id, rate_limit::client_ip(&state, &headers, peer)).await?;
    Ok((StatusCode::CREATED, Json(service::claim(&state, user.id, id).await?)))
}

/// The user's coupons, newest first; `status` is `unused`, `used` or `expired`.
#[utoipa::path(get, path = "/api/v1/me/coupons", tag = "coupons", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = Page<Coupon>), (status = 401, body = ErrorBody)))]
pub async fn list_my_coupons(
    State(state): State<AppState>,
    user: AuthUser,
    AppQuery(q): AppQuery<PageQuery>,
) -> Result<Json<Page<Coupon>>, AppError> {
    Ok(Json(service::my_coupons(&state, user.id, q.limit, q.cursor.as_deref()).await?))
}
