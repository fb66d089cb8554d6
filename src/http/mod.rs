//! HTTP plumbing: the router of every capability, the middleware stack and the error-producing extractors.

pub mod document;
pub mod extract;
pub mod middleware;
pub mod ops;
pub mod request_schemas;
pub mod serve;
pub mod strict_json;

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::response::IntoResponse;
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::config::Config;
use crate::error::AppError;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "wxshop", description = "REST API of a WeChat mini-program shop and its back office."),
    tags(
        (name = "ops", description = "Health, readiness, metrics and this document"),
        (name = "catalog", description = "Categories, products and SKUs"),
        (name = "auth", description = "WeChat login and sessions"),
        (name = "users", description = "The signed-in user"),
        (name = "admin", description = "Back office"),
        (name = "addresses", description = "Shipping addresses"),
        (name = "cart", description = "The shopping cart"),
        (name = "orders", description = "Orders"),
        (name = "payments", description = "WeChat Pay: paying, refunds, notifications"),
        (name = "reporting", description = "Client event reporting (数据上报)"),
    ),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// Declares the `bearer` security scheme the authenticated routes refer to.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// Every documented route. Routes are only ever added here, through `routes!`, so the OpenAPI document and the
/// router cannot disagree (a test walks the document against the server).
pub fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(ops::router())
        .merge(crate::catalog::routes::router())
        .merge(crate::auth::routes::router())
        .merge(crate::users::routes::router())
        .merge(crate::admins::routes::router())
        .merge(crate::users::admin_routes::router())
        .merge(crate::catalog::admin_routes::router())
        .merge(crate::addresses::routes::router())
        .merge(crate::cart::routes::router())
        .merge(crate::orders::routes::router())
        .merge(crate::orders::admin_routes::router())
        .merge(crate::coupons::routes::router())
        .merge(crate::coupons::admin_routes::router())
        .merge(crate::flash_sale::routes::router())
        .merge(crate::flash_sale::admin_routes::router())
        .merge(crate::payments::routes::router())
        .merge(crate::payments::admin_routes::router())
        .merge(crate::events::admin_routes::router())
        .merge(crate::reporting::routes::router())
        .merge(crate::reporting::admin_routes::router())
        .merge(crate::uploads::routes::router())
        .merge(crate::uploads::admin_routes::router())
        .merge(crate::flags::routes::router())
        .merge(crate::flags::ofrep::router())
}

/// Paths served outside the OpenAPI document: the docs UI itself.
pub const UNDOCUMENTED_PATHS: &[&str] = &["/docs", "/docs/", "/docs/{*rest}", "/__simulator/{*rest}"];

/// The docs UI (Swagger UI, assets compiled into the binary) reading `/openapi.json`.
pub fn docs_ui() -> Router<AppState> {
    let config = utoipa_swagger_ui::Config::new(["/openapi.json"]);
    utoipa_swagger_ui::SwaggerUi::new("/docs").config(config).into()
}

/// Wraps the router in the middleware every request goes through (outermost first):
/// request id → trace span → compression → metrics and JSON error bodies → panic catcher → CORS → body limit →
/// timeout and statement deadlines.
pub fn with_middleware(router: Router, config: &Config, db: &crate::db::Db) -> Router {
    let x_request_id = HeaderName::from_static("x-request-id");
    let body_limit = config.http.body_limit_bytes;
    let timeout: Duration = config.request_timeout();

    let router = router
        .fallback(route_not_found)
        .layer(middleware::Limits { db: db.clone(), timeout })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(RequestBodyLimitLayer::new(body_limit));
    let router = match cors_layer(config) {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(middleware::ObserveLayer)
        .layer(CompressionLayer::new())
        .layer(PropagateRequestIdLayer::new(x_request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(request_span).on_request(()).on_response(record_response))
        .layer(SetRequestIdLayer::new(x_request_id, MakeRequestUuid))
}

/// One span per request, carrying what every log line inside it should say. Its OpenTelemetry name is
/// `METHOD /route/{template}`; a valid incoming `traceparent` makes it part of the caller's trace.
fn request_span(req: &Request) -> tracing::Span {
    let request_id =
        req.extensions().get::<RequestId>().and_then(|id| id.header_value().to_str().ok()).unwrap_or_default();
    let route = middleware::route_label(req);
    let method = req.method().as_str();
    let span = tracing::info_span!(
        "request",
        otel.name = format!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        method,
        route,
        request_id,
        user_id = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    crate::telemetry::continue_trace(&span, req.headers());
    span
}

/// Records the status on the request span (a 5xx marks the span as an error) and logs the request's end.
fn record_response<B>(response: &axum::http::Response<B>, latency: Duration, span: &tracing::Span) {
    let status = response.status().as_u16();
    span.record("http.response.status_code", i64::from(status));
    if response.status().is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    tracing::info!(status, latency_ms = latency.as_secs_f64() * 1000.0, "finished processing request");
}

fn cors_layer(config: &Config) -> Option<CorsLayer> {
    let origins = &config.http.cors_origins;
    if origins.is_empty() {
        return None;
    }
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static("x-request-id"),
            ])
            .expose_headers([HeaderName::from_static("x-request-id")])
            .max_age(Duration::from_secs(600)),
    )
}

/// A response whose body is already serialized JSON (a cached response).
pub fn json_body(body: axum::body::Bytes) -> axum::response::Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

async fn route_not_found() -> AppError {
    AppError::not_found("route")
}
