//! The signed-in user's cart.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::extract::AuthUser;
use crate::cart::service::{self, Cart, SetQuantity};
use crate::error::{AppError, ErrorBody};
use crate::http::extract::{AppJson, AppPath};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_cart, clear_cart)).routes(routes!(set_cart_item))
}

/// The cart at today's prices and stock; lines that cannot be ordered are flagged.
#[utoipa::path(get, path = "/api/v1/cart", tag = "cart", security(("bearer" = [])),
    responses((status = 200, body = Cart), (status = 401, body = ErrorBody)))]
pub async fn get_cart(State(state): State<AppState>, user: AuthUser) -> Result<Json<Cart>, AppError> {
    Ok(Json(service::get(&state, user.id).await?))
}

/// Sets a line's quantity (0 removes it).
#[utoipa::path(put, path = "/api/v1/cart/items/{sku_id}", tag = "cart", security(("bearer" = [])),
    params(("sku_id" = i64, Path)), request_body = SetQuantity,
    responses((status = 200, body = Cart), (status = 404, body = ErrorBody, description = "`sku_not_found`"),
        (status = 409, body = ErrorBody, description = "`sku_unavailable`, `cart_full`"), (status = 422, body = ErrorBody)))]
pub async fn set_cart_item(
    State(state): State<AppState>,
    user: AuthUser,
    AppPath(sku_id): AppPath<i64>,
    AppJson(body): AppJson<SetQuantity>,
) -> Result<Json<Cart>, AppError> {
    Ok(Json(service::set_quantity(&state, user.id, sku_id, body.quantity).await?))
}

/// Empties the cart.
#[utoipa::path(delete, path = "/api/v1/cart", tag = "cart", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody)))]
pub async fn clear_cart(State(state): State<AppState>, user: AuthUser) -> Result<StatusCode, AppError> {
    service::clear(&state, user.id).await?;
    Ok(StatusCode::NO_CONTENT)
}
