//! The mini-program's payment routes and WeChat Pay's notification route.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::extract::AuthUser;
use crate::error::{AppError, ErrorBody};
use crate::http::extract::{AppJson, AppPath};
use crate::orders::lifecycle;
use crate::payments::model::{PaymentView, RequestPayment};
use crate::payments::refunds::{self, Refund};
use crate::payments::{notify, service};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(pay_order))
        .routes(routes!(get_payment))
        .routes(routes!(confirm_receipt))
        .routes(routes!(request_refund, list_refund_requests))
        .routes(routes!(wechat_pay_notify))
}

/// Starts (or resumes) paying an unpaid order: the five fields to pass to `wx.requestPayment`. The first prepay is
/// stored and reused, so paying again never creates a second WeChat Pay order. `requestPayment:ok` does not mean
/// paid: ask `GET /api/v1/orders/{id}/payment` afterwards.
#[utoipa::path(post, path = "/api/v1/orders/{id}/pay", tag = "payments", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses(
        (status = 200, body = RequestPayment),
        (status = 404, body = ErrorBody, description = "`order_not_found`"),
        (status = 409, body = ErrorBody, description = "`invalid_order_state`: not payable; `payment_window_closed`: under 90 s left, or closed"),
        (status = 503, body = ErrorBody, description = "`wechat_pay_unavailable`"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = user.id, order_id = id))]
pub async fn pay_order(
    State(state): State<AppState>,
    user: AuthUser,
    AppPath(id): AppPath<i64>,
) -> Result<Json<RequestPayment>, AppError> {
    Ok(Json(service::pay(&state, user.id, id).await?))
}

/// The order's payment. While it is pending, WeChat Pay is asked (at most once per order every
/// `pay.query_min_interval_ms`), so this is the call to make after `wx.requestPayment` returns.
#[utoipa::path(get, path = "/api/v1/orders/{id}/payment", tag = "payments", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = PaymentView), (status = 404, body = ErrorBody, description = "`order_not_found`")))]
#[tracing::instrument(skip_all, fields(user_id = user.id, order_id = id))]
pub async fn get_payment(
    State(state): State<AppState>,
    user: AuthUser,
    AppPath(id): AppPath<i64>,
) -> Result<Json<PaymentView>, AppError> {
    Ok(Json(service::payment_view(&state, user.id, id).await?))
}

/// The buyer confirms the goods arrived: `shipped → completed`.
#[utoipa::path(post, path = "/api/v1/orders/{id}/confirm-receipt", tag = "orders", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses(
        (status = 204, description = "completed"),
        (status = 404, body = ErrorBody, description = "`order_not_found`"),
        (status = 409, body = ErrorBody, description = "`invalid_order_state`: not shipped"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = user.id, order_id = id))]
pub async fn confirm_receipt(
    State(state): State<AppState>,
    user: AuthUser,
    AppPath(id): AppPath<i64>,
) -> Result<StatusCode, AppError> {
    lifecycle::confirm_receipt(&state, user.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRefundRequest {
    /// Why (1 to 200 characters).
    pub reason: String,
    /// How much, in fen; default: all that is left to refund.
    pub amount_fen: Option<i64>,
}

/// Asks for a refund of a paid or shipped order (all of it, or `amount_fen`); an admin approves or rejects it.
#[utoipa::path(post, path = "/api/v1/orders/{id}/refund-requests", tag = "payments", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = NewRefundRequest,
    responses(
        (status = 201, body = Refund),
        (status = 404, body = ErrorBody, description = "`order_not_found`"),
        (status = 409, body = ErrorBody, description = "`invalid_order_state`: not paid or shipped; `refund_in_progress`"),
        (status = 422, body = ErrorBody, description = "`validation_failed`: reason, or more than is left"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = user.id, order_id = id))]
pub async fn request_refund(
    State(state): State<AppState>,
    user: AuthUser,
    AppPath(id): AppPath<i64>,
    AppJson(body): AppJson<NewRefundRequest>,
) -> Result<(StatusCode, Json<Refund>), AppError> {
    let refund = refunds::request(&state, user.id, id, &body.reason, body.amount_fen).await?;
    Ok((StatusCode::CREATED, Json(refund)))
}

/// The order's refunds and refund requests, oldest first.
#[utoipa::path(get, path = "/api/v1/orders/{id}/refund-requests", tag = "payments", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = Vec<Refund>), (status = 404, body = ErrorBody, description = "`order_not_found`")))]
pub async fn list_refund_requests(
    State(state): State<AppState>,
    user: AuthUser,
    AppPath(id): AppPath<i64>,
) -> Result<Json<Vec<Refund>>, AppError> {
    let mut conn = state.db.pool.acquire().await?;
    let order = crate::orders::store::find_order(&mut conn, id).await?.filter(|o| o.user_id == user.id);
    order.ok_or(AppError::not_found("order"))?;
    let refunds = refunds::of_order(&mut conn, id).await?;
    Ok(Json(refunds.into_iter().map(|r| r.view()).collect()))
}

/// WeChat Pay's notifications (payments and refunds), configured as `pay.notify_url`. Verified on the raw body
/// (signature, timestamp window, key by `Wechatpay-Serial`), decrypted, applied once.
#[utoipa::path(post, path = "/api/v1/payments/wechat/notify", tag = "payments",
    request_body(content = String, content_type = "application/json", description = "WeChat Pay's signed, encrypted notification"),
    responses(
        (status = 204, description = "applied, or a duplicate"),
        (status = 400, body = ErrorBody, description = "`invalid_json`, `invalid_parameter`: not a notification we can open"),
        (status = 401, body = ErrorBody, description = "`invalid_signature`: missing, stale, unknown-key, probe or bad signature"),
    ))]
pub async fn wechat_pay_notify(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, AppError> {
    notify::handle(&state, &headers, &body).await?;
    Ok(StatusCode::NO_CONTENT)
}
