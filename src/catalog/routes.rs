//! Catalog handlers (read side) for the mini-program.

use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::catalog::model::{CategoryList, ProductDetail, ProductPage};
use crate::catalog::service::{self, ProductFilter};
use crate::error::{AppError, ErrorBody};
use crate::http::extract::{AppPath, AppQuery};
use crate::http::json_body;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_categories)).routes(routes!(list_products)).routes(routes!(get_product))
}

/// Active categories, in display order.
#[utoipa::path(get, path = "/api/v1/categories", tag = "catalog", responses((status = 200, body = CategoryList)))]
#[tracing::instrument(skip_all)]
pub async fn list_categories(State(state): State<AppState>) -> Result<Json<CategoryList>, AppError> {
    let items = service::list_categories(&state.db).await?;
    Ok(Json(CategoryList { items }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListProducts {
    /// Only products of this category.
    pub category_id: Option<i64>,
    /// Text the title contains (at most 64 characters).
    pub q: Option<String>,
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// On-sale products, newest first, cursor-paginated.
#[utoipa::path(get, path = "/api/v1/products", tag = "catalog", params(ListProducts), responses(
    (status = 200, body = ProductPage),
    (status = 400, body = ErrorBody, description = "`invalid_parameter`: a parameter or the cursor does not parse"),
    (status = 422, body = ErrorBody, description = "`validation_failed`: limit out of range, search text too long"),
))]
#[tracing::instrument(skip_all)]
pub async fn list_products(
    State(state): State<AppState>,
    AppQuery(query): AppQuery<ListProducts>,
) -> Result<Json<ProductPage>, AppError> {
    let filter = ProductFilter::parse(query.category_id, query.q, query.limit, query.cursor.as_deref())?;
    Ok(Json(service::list_products(&state.db, &filter).await?))
}

/// One on-sale product with its SKUs.
#[utoipa::path(get, path = "/api/v1/products/{id}", tag = "catalog",
    params(("id" = i64, Path, description = "Product id")),
    responses(
        (status = 200, body = ProductDetail),
        (status = 400, body = ErrorBody, description = "`invalid_parameter`: the id is not a number"),
        (status = 404, body = ErrorBody, description = "`product_not_found`"),
    ))]
#[tracing::instrument(skip_all, fields(product_id = id))]
pub async fn get_product(State(state): State<AppState>, AppPath(id): AppPath<i64>) -> Result<Response, AppError> {
    let body = service::product_json(&state.db, &state.cache, catalog_ttl(&state), id).await?;
    Ok(json_body(body))
}

fn catalog_ttl(state: &AppState) -> Duration {
    Duration::from_secs(state.config.cache.catalog_ttl_secs)
}
