//! Back-office statistics the event consumers build.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::extract::AdminUser;
use crate::error::{AppError, ErrorBody};
use crate::events::consumers::sales::{self, SalesRow};
use crate::http::extract::AppQuery;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(admin_sales_stats))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DayRange {
    /// First day (Beijing time), as `YYYY-MM-DD` or an RFC 3339 time; empty or absent: no bound.
    pub from: Option<String>,
    /// Last day, inclusive, in the same forms.
    pub to: Option<String>,
}

/// A `YYYY-MM-DD` or an RFC 3339 time (its Beijing day); 422 naming `field` otherwise.
pub fn day_bound(field: &str, value: Option<&str>) -> Result<Option<String>, AppError> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else { return Ok(None) };
    let format = time::macros::format_description!("[year]-[month]-[day]");
    if time::Date::parse(value, &format).is_ok() {
        return Ok(Some(value.to_owned()));
    }
    match time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339) {
        Ok(t) => Ok(Some(sales::day_of((t.unix_timestamp_nanos() / 1_000_000) as i64))),
        Err(_) => Err(AppError::validation(field.to_owned(), "must be a day like 2026-12-01 or an RFC 3339 time")),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SalesStats {
    /// Per day and SKU, by day then SKU.
    pub items: Vec<SalesRow>,
    /// The sums over `items` (`day` empty, `sku_id` 0).
    pub totals: SalesRow,
}

/// Sales per day (Beijing time) and SKU: paid orders, units, GMV, refunds. Built by the `sales_stats` consumer from
/// `order.paid` and `refund.succeeded` events, each applied once.
#[utoipa::path(get, path = "/admin/api/v1/stats/sales", tag = "admin", security(("bearer" = [])), params(DayRange),
    responses((status = 200, body = SalesStats), (status = 422, body = ErrorBody)))]
pub async fn admin_sales_stats(
    State(state): State<AppState>,
    _admin: AdminUser,
    AppQuery(q): AppQuery<DayRange>,
) -> Result<Json<SalesStats>, AppError> {
    let from = day_bound("from", q.from.as_deref())?;
    let to = day_bound("to", q.to.as_deref())?;
    let items = sales::between(&state, from.as_deref(), to.as_deref()).await?;
    let mut totals = SalesRow::default();
    for row in &items {
        totals.orders += row.orders;
        totals.units += row.units;
        totals.gmv_fen += row.gmv_fen;
        totals.refunds += row.refunds;
        totals.refund_fen += row.refund_fen;
    }
    Ok(Json(SalesStats { items, totals }))
}
