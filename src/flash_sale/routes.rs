//! Flash sales for the mini-program: the list, purchase attempts and their status.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::extract::AuthUser;
use crate::domain::{Page, PageQuery};
use crate::error::{AppError, ErrorBody};
use crate::flash_sale::purchase::{self, Purchase, PurchaseAccepted, PurchaseStatus};
use crate::flash_sale::service::{self, FlashSale};
use crate::http::extract::{AppPath, AppQuery};
use crate::orders::create::check_idempotency_key;
use crate::rate_limit::{self, Action};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_flash_sales))
        .routes(routes!(purchase_flash_sale))
        .routes(routes!(get_purchase))
}

/// Current and upcoming flash sales, newest first, with the units left.
#[utoipa::path(get, path = "/api/v1/flash-sales", tag = "flash_sales", params(PageQuery),
    responses((status = 200, body = Page<FlashSale>), (status = 422, body = ErrorBody)))]
pub async fn list_flash_sales(
    State(state): State<AppState>,
    AppQuery(q): AppQuery<PageQuery>,
) -> Result<Json<Page<FlashSale>>, AppError> {
    Ok(Json(service::list(&state, true, q.limit, q.cursor.as_deref()).await?))
}

/// Tries to buy (秒杀). Decided at once: 202 with a purchase id to poll, or 409 with the reason. The order is
/// made in the background at the flash price. A repeat with the same `Idempotency-Key` returns the same purchase.
/// Once the sale is sold out, attempts are answered from memory. Rate-limited per user and per client IP.
#[utoipa::path(post, path = "/api/v1/flash-sales/{id}/purchase", tag = "flash_sales", security(("bearer" = [])),
    request_body = Purchase,
    params(("id" = i64, Path),
        ("Idempotency-Key" = String, Header, description = "1 to 255 visible ASCII characters, unique per attempt")),
    responses(
        (status = 202, body = PurchaseAccepted),
        (status = 400, body = ErrorBody, description = "`invalid_parameter`: no or a malformed Idempotency-Key; `invalid_json`"),
        (status = 404, body = ErrorBody, description = "`flash_sale_not_found`"),
        (status = 409, body = ErrorBody, description = "`sold_out`, `limit_reached`, `not_started`, `ended`"),
        (status = 422, body = ErrorBody, description = "`validation_failed`, `idempotency_key_mismatch`"),
        (status = 429, body = ErrorBody, description = "`rate_limited`, with `Retry-After`"),
    ))]
#[tracing::instrument(skip_all, fields(user_id, flash_sale_id = id))]
pub async fn purchase_flash_sale(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    AppPath(id): AppPath<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<PurchaseAccepted>), AppError> {
    // The token's signature first (CPU only); then, for a sold-out sale, the answer without Redis or the
    // database; only then the deny-list and the rate limits.
    let user = AuthUser::verify_signature(&headers, &state)?;
    purchase::sold_out_fast(&state, id)?;
    user.ensure_not_revoked(&state).await?;
    rate_limit::check(&state, Action::Purchase, user.id, rate_limit::client_ip(&state, &headers, peer)).await?;
    let key = check_idempotency_key(headers.get("idempotency-key").map(|v| v.to_str().unwrap_or("\u{0}")))?;
    let accepted = purchase::attempt(&state, user.id, id, key, &body).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// A purchase: `queued`, `created` with its `order_id`, or `failed` with the `reason`. Another user's is a 404.
#[utoipa::path(get, path = "/api/v1/flash-sales/purchases/{purchase_id}", tag = "flash_sales",
    security(("bearer" = [])), params(("purchase_id" = String, Path)),
    responses((status = 200, body = PurchaseStatus), (status = 404, body = ErrorBody, description = "`purchase_not_found`")))]
pub async fn get_purchase(
    State(state): State<AppState>,
    user: AuthUser,
    AppPath(purchase_id): AppPath<String>,
) -> Result<Json<PurchaseStatus>, AppError> {
    Ok(Json(purchase::status(&state, user.id, &purchase_id).await?))
}
