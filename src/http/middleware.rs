//! Cross-cutting request handling: error bodies, timeouts, statement deadlines, panics and request metrics.

use std::any::Any;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;
use tokio::time::Timeout;
use tower::{Layer, Service};

use crate::error::{status_code_name, AppError, ErrorBody};

/// Gives every error response the `{"code", "message"}` body, including those made by layers and the router
/// (405, 413, …) which come with an empty or plain-text body.
fn json_error_body(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&response) {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let message = status.canonical_reason().unwrap_or("error").to_owned();
    let body = ErrorBody { code: status_code_name(status).to_owned(), message, fields: Vec::new() };
    parts.headers.remove(CONTENT_LENGTH);
    parts.headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let json = serde_json::to_vec(&body).unwrap_or_default();
    Response::from_parts(parts, Body::from(json))
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("application/problem+json"))
}

/// What [`Bounded`] needs: the database (for its statement deadlines) and the request's time limit.
#[derive(Clone)]
pub struct Limits {
    pub db: crate::db::Db,
    pub timeout: Duration,
}

impl<S> Layer<S> for Limits {
    type Service = Bounded<S>;

    fn layer(&self, inner: S) -> Bounded<S> {
        Bounded { inner, limits: self.clone() }
    }
}

/// Runs the handler within the request's limits, in one layer: every database statement bounded
/// ([`crate::db::guard`]: the read deadline for GET and HEAD, the write deadline for anything else), and the whole
/// handler answered with a 503 `request_timeout` once it runs longer than the configured limit.
///
/// A tower layer rather than `axum::middleware::from_fn`: that boxes a clone of the inner service and the handler's
/// future on every request, and the whole stack of futures is moved once more per box (see `bench/RESULTS.md`).
#[derive(Clone)]
pub struct Bounded<S> {
    inner: S,
    limits: Limits,
}

impl<S> Service<Request> for Bounded<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoundedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let guard = match *req.method() {
            axum::http::Method::GET | axum::http::Method::HEAD => self.limits.db.read_guard(),
            _ => self.limits.db.write_guard(),
        };
        let work = crate::db::guard::scope(guard, self.inner.call(req));
        BoundedFuture { work: tokio::time::timeout(self.limits.timeout, work), limit: self.limits.timeout }
    }
}

pin_project! {
    /// [`Bounded`]'s response: the handler's, or a 503 `request_timeout`.
    pub struct BoundedFuture<F> {
        #[pin]
        work: Timeout<TaskLocalFuture<crate::db::guard::Guard, F>>,
        limit: Duration,
    }
}

impl<F: Future<Output = Result<Response, Infallible>>> Future for BoundedFuture<F> {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match ready!(this.work.poll(cx)) {
            Ok(response) => Poll::Ready(response),
            Err(_) => {
                tracing::warn!(limit_ms = this.limit.as_millis() as u64, "request timed out");
                let timed_out =
                    AppError::Unavailable { code: "request_timeout", message: "the request took too long".into() };
                Poll::Ready(Ok(timed_out.into_response()))
            }
        }
    }
}

/// A panicking handler becomes a logged 500 with our error body (used by `CatchPanicLayer`).
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    tracing::error!(panic = %detail, "handler panicked");
    metrics::counter!("http_panics_total").increment(1);
    let body = ErrorBody { code: "internal_error".into(), message: "internal server error".into(), fields: Vec::new() };
    (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
}

/// The route template, never the raw path (ids in paths would explode label sets and span names).
pub fn route_label(req: &Request) -> &str {
    match req.extensions().get::<MatchedPath>() {
        Some(path) => path.as_str(),
        // The simulator is nested as a service: no route template, one label for all of it.
        None if req.uri().path().starts_with(crate::simulator::MOUNT_PATH) => crate::simulator::MOUNT_PATH,
        None => "unmatched",
    }
}

/// The response side of every request, in one layer: counts requests by method, route template and status, records
/// their latency, and gives error responses our JSON body ([`json_error_body`]). Labels are `&'static str`
/// (interned route templates, fixed method and status names), so recording allocates nothing. A tower layer for the
/// reason given at [`Bounded`].
#[derive(Clone, Copy, Default)]
pub struct ObserveLayer;

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe { inner }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
}

impl<S> Service<Request> for Observe<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let route = intern(route_label(&req));
        let method = method_label(req.method());
        let in_flight = InFlight::enter();
        ObserveFuture { response: self.inner.call(req), started: Instant::now(), route, method, _in_flight: in_flight }
    }
}

pin_project! {
    /// [`Observe`]'s response.
    pub struct ObserveFuture<F> {
        #[pin]
        response: F,
        started: Instant,
        route: &'static str,
        method: &'static str,
        _in_flight: InFlight,
    }
}

impl<F: Future<Output = Result<Response, Infallible>>> Future for ObserveFuture<F> {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(response) = ready!(this.response.poll(cx));
        let response = json_error_body(response);
        let (method, route) = (*this.method, *this.route);
        let status = status_label(response.status());
        metrics::counter!("http_requests_total", "method" => method, "route" => route, "status" => status).increment(1);
        metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
            .record(this.started.elapsed().as_secs_f64());
        Poll::Ready(Ok(response))
    }
}

/// One request in `http_requests_in_flight`, until its future ends: answered, or dropped with its connection.
struct InFlight;

impl InFlight {
    fn enter() -> InFlight {
        crate::ops::IN_FLIGHT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        crate::ops::IN_FLIGHT.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Route templates as `&'static str`: each distinct template is leaked once (the router's templates, the
/// simulator's mount path and "unmatched": a fixed, small set).
fn intern(route: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{OnceLock, RwLock};
    static ROUTES: OnceLock<RwLock<HashSet<&'static str>>> = OnceLock::new();
    let routes = ROUTES.get_or_init(Default::default);
    if let Some(known) = routes.read().unwrap_or_else(|e| e.into_inner()).get(route) {
        return known;
    }
    let mut routes = routes.write().unwrap_or_else(|e| e.into_inner());
    if let Some(known) = routes.get(route) {
        return known;
    }
    let leaked: &'static str = Box::leak(route.to_owned().into_boxed_str());
    routes.insert(leaked);
    leaked
}

fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Every status code as a `&'static str` ("100" … "999").
fn status_label(status: StatusCode) -> &'static str {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    use std::sync::OnceLock;
    let names = NAMES.get_or_init(|| (0..1000).map(|code| &*Box::leak(format!("{code}").into_boxed_str())).collect());
    names.get(usize::from(status.as_u16())).copied().unwrap_or("000")
}
