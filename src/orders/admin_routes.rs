//! Back-office orders: search, one order with its history, shipping.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::extract::{AdminUser, Role};
use crate::error::{AppError, ErrorBody};
use crate::http::extract::{AppJson, AppPath, AppQuery};
use crate::orders::lifecycle;
use crate::orders::model::{AdminOrder, AdminOrderPage};
use crate::orders::query::{self, AdminSearch};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(admin_list_orders))
        .routes(routes!(admin_get_order))
        .routes(routes!(admin_ship_order))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AdminListOrders {
    pub status: Option<String>,
    pub user_id: Option<i64>,
    pub order_no: Option<String>,
    /// Created at or after (RFC 3339).
    pub from: Option<String>,
    /// Created before (RFC 3339).
    pub to: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// Orders, newest first, by status, user, time range and order number.
#[utoipa::path(get, path = "/admin/api/v1/orders", tag = "admin", security(("bearer" = [])), params(AdminListOrders),
    responses((status = 200, body = AdminOrderPage), (status = 422, body = ErrorBody)))]
pub async fn admin_list_orders(
    State(state): State<AppState>,
    _admin: AdminUser,
    AppQuery(q): AppQuery<AdminListOrders>,
) -> Result<Json<AdminOrderPage>, AppError> {
    let search = AdminSearch {
        status: q.status.as_deref(),
        user_id: q.user_id,
        order_no: q.order_no.as_deref(),
        from: q.from.as_deref(),
        to: q.to.as_deref(),
        limit: q.limit,
        cursor: q.cursor.as_deref(),
    };
    Ok(Json(query::list_for_admin(&state, &search).await?))
}

/// One order with its owner and every state change (from, to, actor, at).
#[utoipa::path(get, path = "/admin/api/v1/orders/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = AdminOrder), (status = 404, body = ErrorBody)))]
pub async fn admin_get_order(
    State(state): State<AppState>,
    _admin: AdminUser,
    AppPath(id): AppPath<i64>,
) -> Result<Json<AdminOrder>, AppError> {
    Ok(Json(query::admin_view(&state, id).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShipOrder {
    pub carrier: String,
    pub tracking_no: String,
}

/// Ships a paid order.
#[utoipa::path(post, path = "/admin/api/v1/orders/{id}/ship", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = ShipOrder,
    responses((status = 200, body = AdminOrder), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "`invalid_order_state`: not paid")))]
#[tracing::instrument(skip_all, fields(admin_id = admin.id, order_id = id))]
pub async fn admin_ship_order(
    State(state): State<AppState>,
    admin: AdminUser,
    AppPath(id): AppPath<i64>,
    AppJson(body): AppJson<ShipOrder>,
) -> Result<Json<AdminOrder>, AppError> {
    admin.require(Role::Operator)?;
    lifecycle::ship(&state, id, admin.id, &body.carrier, &body.tracking_no).await?;
    Ok(Json(query::admin_view(&state, id).await?))
}
