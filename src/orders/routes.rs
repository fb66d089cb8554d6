//! The signed-in user's orders.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::extract::AuthUser;
use crate::error::{AppError, ErrorBody};
use crate::http::extract::{AppPath, AppQuery};
use crate::http::json_body;
use crate::orders::create::{self, CreateOrder};
use crate::orders::model::{Order, OrderPage};
use crate::orders::query;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_orders, create_order))
        .routes(routes!(get_order))
        .routes(routes!(cancel_order))
}

/// Places an order. Requires an `Idempotency-Key` header: repeating a request with the same key and body returns
/// the first response.
#[utoipa::path(post, path = "/api/v1/orders", tag = "orders", security(("bearer" = [])), request_body = CreateOrder,
    params(("Idempotency-Key" = String, Header, description = "1 to 255 visible ASCII characters, unique per order attempt")),
    responses(
        (status = 201, body = Order),
        (status = 400, body = ErrorBody, description = "`invalid_parameter`: no or a malformed Idempotency-Key; `invalid_json`"),
        (status = 404, body = ErrorBody, description = "`address_not_found`, `coupon_not_found`, `sku_not_found`: a referenced row the user cannot see"),
        (status = 409, body = ErrorBody, description = "`insufficient_stock` (naming the SKU), `sku_unavailable`, `request_in_progress`"),
        (status = 422, body = ErrorBody, description = "`validation_failed`, `idempotency_key_mismatch`"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = user.id))]
pub async fn create_order(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(AppError::UnsupportedMediaType);
    }
    let key = headers.get("idempotency-key").map(|v| v.to_str().unwrap_or("\u{0}"));
    let (status, body) = create::create_idempotent(&state, user.id, key, &body).await?;
    Ok((status, json_body(body)).into_response())
}

/// One of the user's orders. Someone else's order is a 404, never a 403.
#[utoipa::path(get, path = "/api/v1/orders/{id}", tag = "orders", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = Order), (status = 404, body = ErrorBody, description = "`order_not_found`")))]
#[tracing::instrument(skip_all, fields(user_id = user.id, order_id = id))]
pub async fn get_order(
    State(state): State<AppState>,
    user: AuthUser,
    AppPath(id): AppPath<i64>,
) -> Result<Response, AppError> {
    Ok(json_body(query::get_for_user(&state, user.id, id).await?.into()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListOrders {
    /// Only orders in this status.
    pub status: Option<String>,
    /// 1 to 100, default 20.
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// The user's orders, newest first (keyset-paginated).
#[utoipa::path(get, path = "/api/v1/orders", tag = "orders", security(("bearer" = [])), params(ListOrders),
    responses((status = 200, body = OrderPage), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(user_id = user.id))]
pub async fn list_orders(
    State(state): State<AppState>,
    user: AuthUser,
    AppQuery(q): AppQuery<ListOrders>,
) -> Result<Response, AppError> {
    // The strangler switch: a sticky share of users (flag `orders.list_v2`) takes the second implementation.
    let mut id = itoa::Buffer::new();
    let ctx = crate::flags::engine::Context { user_id: Some(id.format(user.id)), ..Default::default() };
    let v2 = state.flags.is_enabled(crate::orders::list_v2::FLAG, &ctx);
    state.flags.count(crate::orders::list_v2::FLAG, if v2 { "v2" } else { "v1" });
    let (status, cursor) = (q.status.as_deref(), q.cursor.as_deref());
    if v2 {
        let page = crate::orders::list_v2::list_for_user(&state, user.id, status, q.limit, cursor).await?;
        return Ok(json_body(page));
    }
    Ok(Json(query::list_for_user(&state, user.id, status, q.limit, cursor).await?).into_response())
}

/// Cancels an unpaid order; its stock goes back on sale. An order with a WeChat Pay prepay is closed at WeChat
/// first, so it can no longer be paid.
#[utoipa::path(post, path = "/api/v1/orders/{id}/cancel", tag = "orders", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses(
        (status = 200, body = Order),
        (status = 404, body = ErrorBody, description = "`order_not_found`"),
        (status = 409, body = ErrorBody, description = "`invalid_order_state`: not pending payment; `payment_in_progress`: WeChat Pay could not confirm the payment is closed (the user may be paying)"),
        (status = 503, body = ErrorBody, description = "`wechat_pay_unavailable`"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = user.id, order_id = id))]
pub async fn cancel_order(
    State(state): State<AppState>,
    user: AuthUser,
    AppPath(id): AppPath<i64>,
) -> Result<Response, AppError> {
    crate::payments::service::cancel_for_user(&state, user.id, id).await?;
    Ok((StatusCode::OK, json_body(query::get_for_user(&state, user.id, id).await?.into())).into_response())
}
