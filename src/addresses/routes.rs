//! The signed-in user's addresses.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::addresses::service::{self, Address, AddressInput, AddressList};
use crate::auth::extract::AuthUser;
use crate::error::{AppError, ErrorBody};
use crate::http::extract::{AppJson, AppPath};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_addresses, create_address)).routes(routes!(update_address, delete_address))
}

/// The user's addresses, the default first.
#[utoipa::path(get, path = "/api/v1/addresses", tag = "addresses", security(("bearer" = [])),
    responses((status = 200, body = AddressList), (status = 401, body = ErrorBody)))]
pub async fn list_addresses(State(state): State<AppState>, user: AuthUser) -> Result<Json<AddressList>, AppError> {
    Ok(Json(service::list(&state, user.id).await?))
}

/// Adds an address; the first one (or one with `is_default: true`) becomes the default.
#[utoipa::path(post, path = "/api/v1/addresses", tag = "addresses", security(("bearer" = [])),
    request_body = AddressInput,
    responses((status = 201, body = Address), (status = 409, body = ErrorBody, description = "`address_limit_reached`"),
        (status = 422, body = ErrorBody)))]
pub async fn create_address(
    State(state): State<AppState>,
    user: AuthUser,
    AppJson(body): AppJson<AddressInput>,
) -> Result<(StatusCode, Json<Address>), AppError> {
    Ok((StatusCode::CREATED, Json(service::create(&state, user.id, body).await?)))
}

/// Edits an address; `is_default: true` moves the default here.
#[utoipa::path(patch, path = "/api/v1/addresses/{id}", tag = "addresses", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = AddressInput,
    responses((status = 200, body = Address), (status = 404, body = ErrorBody, description = "`address_not_found`"),
        (status = 422, body = ErrorBody)))]
pub async fn update_address(
    State(state): State<AppState>,
    user: AuthUser,
    AppPath(id): AppPath<i64>,
    AppJson(body): AppJson<AddressInput>,
) -> Result<Json<Address>, AppError> {
    Ok(Json(service::update(&state, user.id, id, body).await?))
}

/// Deletes an address; if it was the default, the newest remaining one becomes the default.
#[utoipa::path(delete, path = "/api/v1/addresses/{id}", tag = "addresses", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_address(
    State(state): State<AppState>,
    user: AuthUser,
    AppPath(id): AppPath<i64>,
) -> Result<StatusCode, AppError> {
    service::delete(&state, user.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
