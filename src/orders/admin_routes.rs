//! Back-office orders: search, one order with its history, shipping.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::extract::{AdminUser, Role};
use crate::db::rfc3339;
use crate::error::{AppError, ErrorBody};
use crate::http::extract::{AppJson, AppPath, AppQuery};
use crate::orders::lifecycle;
use crate::orders::model::{AdminOrder, AdminOrderPage, AdminOrderSummary, OrderEvent};
use crate::orders::query::{self, next_cursor, page_params, PageParams};
use crate::orders::store::{self, OrderFilter};
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

fn parse_time(field: &str, value: Option<&str>) -> Result<Option<i64>, AppError> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| {
            time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
                .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
                .map_err(|_| {
                    AppError::validation(field.to_owned(), "must be an RFC 3339 time, e.g. 2026-11-24T00:00:00Z")
                })
        })
        .transpose()
}

/// Orders, newest first, by status, user, time range and order number.
#[utoipa::path(get, path = "/admin/api/v1/orders", tag = "admin", security(("bearer" = [])), params(AdminListOrders),
    responses((status = 200, body = AdminOrderPage), (status = 422, body = ErrorBody)))]
pub async fn admin_list_orders(
    State(state): State<AppState>,
    _admin: AdminUser,
    AppQuery(q): AppQuery<AdminListOrders>,
) -> Result<Json<AdminOrderPage>, AppError> {
    let PageParams { status, limit, after } = page_params(q.status.as_deref(), q.limit, q.cursor.as_deref())?;
    let filter = OrderFilter {
        user_id: q.user_id,
        status,
        order_no: q.order_no.as_deref().filter(|s| !s.is_empty()),
        created_from: parse_time("from", q.from.as_deref())?,
        created_to: parse_time("to", q.to.as_deref())?,
        after,
        limit: limit + 1,
    };
    let rows = store::list_orders(&state.db.pool, &filter).await?;
    let next_cursor = next_cursor(&rows, limit);
    let items = rows
        .into_iter()
        .take(limit as usize)
        .map(|r| AdminOrderSummary {
            id: r.id,
            order_no: r.order_no,
            user_id: r.user_id,
            status: r.status,
            total_fen: r.total_fen,
            created_at: rfc3339(r.created_at),
        })
        .collect();
    Ok(Json(AdminOrderPage { items, next_cursor }))
}

/// One order with its owner and every state change (from, to, actor, at).
#[utoipa::path(get, path = "/admin/api/v1/orders/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = AdminOrder), (status = 404, body = ErrorBody)))]
pub async fn admin_get_order(
    State(state): State<AppState>,
    _admin: AdminUser,
    AppPath(id): AppPath<i64>,
) -> Result<Json<AdminOrder>, AppError> {
    let (user_id, order) = query::load(&state, id).await?.ok_or(AppError::not_found("order"))?;
    let events = store::events_of(&state.db.pool, id)
        .await?
        .into_iter()
        .map(|e| OrderEvent {
            from_status: e.from_status,
            to_status: e.to_status,
            actor: e.actor,
            at: rfc3339(e.created_at),
        })
        .collect();
    Ok(Json(AdminOrder { order, user_id, events }))
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
    let (carrier, tracking_no) = (body.carrier.trim(), body.tracking_no.trim());
    let mut fields = Vec::new();
    if carrier.is_empty() || carrier.chars().count() > 64 {
        fields.push(crate::error::FieldError::new("carrier", "1 to 64 characters"));
    }
    if tracking_no.is_empty() || tracking_no.len() > 64 {
        fields.push(crate::error::FieldError::new("tracking_no", "1 to 64 characters"));
    }
    if !fields.is_empty() {
        return Err(AppError::Validation(fields));
    }
    lifecycle::ship(&state, id, admin.id, carrier, tracking_no).await?;
    admin_get_order(State(state), admin, AppPath(id)).await
}
