//! Back-office catalog handlers: reading needs any role, changing needs `operator` or `admin`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::extract::{AdminUser, Role};
use crate::catalog::categories::{self, AdminCategory, AdminCategoryList, CreateCategory, UpdateCategory};
use crate::catalog::manage::{
    self, AdminProduct, AdminProductPage, AdminSku, CreateProduct, CreateSku, UpdateProduct, UpdateSku,
};
use crate::catalog::stock::{self, ChangeStock, StockAdjustmentList, StockChanged};
use crate::error::{AppError, ErrorBody};
use crate::http::extract::{AppJson, AppPath, AppQuery};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(admin_list_categories, admin_create_category))
        .routes(routes!(admin_update_category))
        .routes(routes!(admin_list_products, admin_create_product))
        .routes(routes!(admin_get_product, admin_update_product))
        .routes(routes!(admin_add_sku))
        .routes(routes!(admin_update_sku))
        .routes(routes!(admin_change_stock))
        .routes(routes!(admin_stock_history))
}

/// Every category, delisted ones included.
#[utoipa::path(get, path = "/admin/api/v1/categories", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = AdminCategoryList), (status = 401, body = ErrorBody)))]
pub async fn admin_list_categories(
    State(state): State<AppState>,
    _admin: AdminUser,
) -> Result<Json<AdminCategoryList>, AppError> {
    Ok(Json(categories::list_categories(&state).await?))
}

/// Creates a category.
#[utoipa::path(post, path = "/admin/api/v1/categories", tag = "admin", security(("bearer" = [])),
    request_body = CreateCategory,
    responses((status = 201, body = AdminCategory), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "`category_not_found`: no such parent"), (status = 422, body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(admin_id = admin.id))]
pub async fn admin_create_category(
    State(state): State<AppState>,
    admin: AdminUser,
    AppJson(body): AppJson<CreateCategory>,
) -> Result<(StatusCode, Json<AdminCategory>), AppError> {
    admin.require(Role::Operator)?;
    Ok((StatusCode::CREATED, Json(categories::create_category(&state, body).await?)))
}

/// Renames, reorders, delists or relists a category.
#[utoipa::path(patch, path = "/admin/api/v1/categories/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = UpdateCategory,
    responses((status = 200, body = AdminCategory), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(admin_id = admin.id))]
pub async fn admin_update_category(
    State(state): State<AppState>,
    admin: AdminUser,
    AppPath(id): AppPath<i64>,
    AppJson(body): AppJson<UpdateCategory>,
) -> Result<Json<AdminCategory>, AppError> {
    admin.require(Role::Operator)?;
    Ok(Json(categories::update_category(&state, id, body).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AdminListProducts {
    /// `on_sale` or `delisted`; every product when absent.
    pub status: Option<String>,
    pub category_id: Option<i64>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// Every product, newest first, delisted ones included.
#[utoipa::path(get, path = "/admin/api/v1/products", tag = "admin", security(("bearer" = [])),
    params(AdminListProducts),
    responses((status = 200, body = AdminProductPage), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn admin_list_products(
    State(state): State<AppState>,
    _admin: AdminUser,
    AppQuery(query): AppQuery<AdminListProducts>,
) -> Result<Json<AdminProductPage>, AppError> {
    let page =
        manage::list_products(&state, query.status.as_deref(), query.category_id, query.limit, query.cursor.as_deref())
            .await?;
    Ok(Json(page))
}

/// Creates a product with its SKUs, on sale at once.
#[utoipa::path(post, path = "/admin/api/v1/products", tag = "admin", security(("bearer" = [])),
    request_body = CreateProduct,
    responses((status = 201, body = AdminProduct), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "`category_not_found`"), (status = 422, body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(admin_id = admin.id))]
pub async fn admin_create_product(
    State(state): State<AppState>,
    admin: AdminUser,
    AppJson(body): AppJson<CreateProduct>,
) -> Result<(StatusCode, Json<AdminProduct>), AppError> {
    admin.require(Role::Operator)?;
    Ok((StatusCode::CREATED, Json(manage::create_product(&state, body).await?)))
}

/// A product with all its SKUs, whatever their status.
#[utoipa::path(get, path = "/admin/api/v1/products/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = AdminProduct), (status = 404, body = ErrorBody)))]
pub async fn admin_get_product(
    State(state): State<AppState>,
    _admin: AdminUser,
    AppPath(id): AppPath<i64>,
) -> Result<Json<AdminProduct>, AppError> {
    Ok(Json(manage::get_product(&state, id).await?))
}

/// Edits a product; `status: delisted` takes it off the storefront.
#[utoipa::path(patch, path = "/admin/api/v1/products/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = UpdateProduct,
    responses((status = 200, body = AdminProduct),
        (status = 404, body = ErrorBody, description = "`product_not_found`, `category_not_found`"), (status = 422, body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(admin_id = admin.id))]
pub async fn admin_update_product(
    State(state): State<AppState>,
    admin: AdminUser,
    AppPath(id): AppPath<i64>,
    AppJson(body): AppJson<UpdateProduct>,
) -> Result<Json<AdminProduct>, AppError> {
    admin.require(Role::Operator)?;
    Ok(Json(manage::update_product(&state, id, body).await?))
}

/// Adds a SKU to a product.
#[utoipa::path(post, path = "/admin/api/v1/products/{id}/skus", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = CreateSku,
    responses((status = 201, body = AdminSku), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(admin_id = admin.id))]
pub async fn admin_add_sku(
    State(state): State<AppState>,
    admin: AdminUser,
    AppPath(id): AppPath<i64>,
    AppJson(body): AppJson<CreateSku>,
) -> Result<(StatusCode, Json<AdminSku>), AppError> {
    admin.require(Role::Operator)?;
    Ok((StatusCode::CREATED, Json(manage::add_sku(&state, id, body).await?)))
}

/// Edits a SKU (title, price, attributes, status). Stock changes go through `/stock`.
#[utoipa::path(patch, path = "/admin/api/v1/skus/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = UpdateSku,
    responses((status = 200, body = AdminSku), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(admin_id = admin.id))]
pub async fn admin_update_sku(
    State(state): State<AppState>,
    admin: AdminUser,
    AppPath(id): AppPath<i64>,
    AppJson(body): AppJson<UpdateSku>,
) -> Result<Json<AdminSku>, AppError> {
    admin.require(Role::Operator)?;
    Ok(Json(manage::update_sku(&state, id, body).await?))
}

/// Sets (`set`) or adjusts (`delta`) a SKU's stock with a reason; recorded with who and when.
#[utoipa::path(post, path = "/admin/api/v1/skus/{id}/stock", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = ChangeStock,
    responses(
        (status = 200, body = StockChanged),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "`insufficient_stock`: the adjustment would go below zero"),
        (status = 422, body = ErrorBody),
    ))]
#[tracing::instrument(skip_all, fields(admin_id = admin.id))]
pub async fn admin_change_stock(
    State(state): State<AppState>,
    admin: AdminUser,
    AppPath(id): AppPath<i64>,
    AppJson(body): AppJson<ChangeStock>,
) -> Result<Json<StockChanged>, AppError> {
    admin.require(Role::Operator)?;
    Ok(Json(stock::change_stock(&state, &admin, id, body).await?))
}

/// A SKU's stock adjustments, newest first (the last 100).
#[utoipa::path(get, path = "/admin/api/v1/skus/{id}/stock-adjustments", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = StockAdjustmentList)))]
pub async fn admin_stock_history(
    State(state): State<AppState>,
    _admin: AdminUser,
    AppPath(id): AppPath<i64>,
) -> Result<Json<StockAdjustmentList>, AppError> {
    Ok(Json(stock::stock_history(&state, id).await?))
}
