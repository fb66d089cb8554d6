//! Back-office flash sales: create, list, one sale, change before the start, end early, reconcile.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::extract::{AdminUser, Role};
use crate::domain::{Page, PageQuery};
use crate::error::{AppError, ErrorBody};
use crate::flash_sale::reconcile::{self, ReconcileReport};
use crate::flash_sale::service::{self, AdminFlashSale, CreateFlashSale, UpdateFlashSale};
use crate::flash_sale::store;
use crate::http::extract::{AppJson, AppPath, AppQuery};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(admin_list_flash_sales, admin_create_flash_sale))
        .routes(routes!(admin_get_flash_sale, admin_update_flash_sale))
        .routes(routes!(admin_end_flash_sale))
        .routes(routes!(admin_reconcile_flash_sale))
}

/// Creates a flash sale; its units are taken from the SKU's stock (409 `insufficient_stock`).
#[utoipa::path(post, path = "/admin/api/v1/flash-sales", tag = "admin", security(("bearer" = [])),
    request_body = CreateFlashSale,
    responses((status = 201, body = AdminFlashSale), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "`sku_not_found`"),
        (status = 409, body = ErrorBody, description = "`insufficient_stock`"), (status = 422, body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(admin_id = admin.id))]
pub async fn admin_create_flash_sale(
    State(state): State<AppState>,
    admin: AdminUser,
    AppJson(body): AppJson<CreateFlashSale>,
) -> Result<(StatusCode, Json<AdminFlashSale>), AppError> {
    admin.require(Role::Operator)?;
    Ok((StatusCode::CREATED, Json(service::create(&state, body).await?)))
}

/// Every flash sale, newest first, with units sold according to the database.
#[utoipa::path(get, path = "/admin/api/v1/flash-sales", tag = "admin", security(("bearer" = [])),
    params(PageQuery), responses((status = 200, body = Page<AdminFlashSale>)))]
pub async fn admin_list_flash_sales(
    State(state): State<AppState>,
    _admin: AdminUser,
    AppQuery(q): AppQuery<PageQuery>,
) -> Result<Json<Page<AdminFlashSale>>, AppError> {
    Ok(Json(service::admin_list(&state, q.limit, q.cursor.as_deref()).await?))
}

#[utoipa::path(get, path = "/admin/api/v1/flash-sales/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = AdminFlashSale), (status = 404, body = ErrorBody)))]
pub async fn admin_get_flash_sale(
    State(state): State<AppState>,
    _admin: AdminUser,
    AppPath(id): AppPath<i64>,
) -> Result<Json<AdminFlashSale>, AppError> {
    Ok(Json(service::admin_get(&state, id).await?))
}

/// Changes price, stock, limit or window before the sale starts (409 `already_started` after).
#[utoipa::path(patch, path = "/admin/api/v1/flash-sales/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = UpdateFlashSale,
    responses((status = 200, body = AdminFlashSale), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "`already_started`, `insufficient_stock`"),
        (status = 422, body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(admin_id = admin.id))]
pub async fn admin_update_flash_sale(
    State(state): State<AppState>,
    admin: AdminUser,
    AppPath(id): AppPath<i64>,
    AppJson(body): AppJson<UpdateFlashSale>,
) -> Result<Json<AdminFlashSale>, AppError> {
    admin.require(Role::Operator)?;
    Ok(Json(service::update(&state, id, body).await?))
}

/// Ends a sale now. Purchases already won still become orders.
#[utoipa::path(post, path = "/admin/api/v1/flash-sales/{id}/end", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = AdminFlashSale), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "`ended`")))]
#[tracing::instrument(skip_all, fields(admin_id = admin.id))]
pub async fn admin_end_flash_sale(
    State(state): State<AppState>,
    admin: AdminUser,
    AppPath(id): AppPath<i64>,
) -> Result<Json<AdminFlashSale>, AppError> {
    admin.require(Role::Operator)?;
    Ok(Json(service::end(&state, id).await?))
}

/// Brings the sale's counters back into agreement with the database now and reports what it fixed (it also
/// runs on its own every `flash_sale.reconcile_interval_secs`).
#[utoipa::path(post, path = "/admin/api/v1/flash-sales/{id}/reconcile", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = ReconcileReport), (status = 404, body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(admin_id = admin.id))]
pub async fn admin_reconcile_flash_sale(
    State(state): State<AppState>,
    admin: AdminUser,
    AppPath(id): AppPath<i64>,
) -> Result<Json<ReconcileReport>, AppError> {
    admin.require(Role::Operator)?;
    let mut conn = state.db.pool.acquire().await?;
    let sale = store::find_sale(&mut conn, id).await?.ok_or(AppError::not_found("flash_sale"))?;
    drop(conn);
    Ok(Json(reconcile::sale_now(&state, &sale).await?))
}
