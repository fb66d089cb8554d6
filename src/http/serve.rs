//! The HTTP/1.1 server loop for both listeners: `axum::serve` offers no read timeouts, so connections are served
//! by hyper directly with a header-read timeout (`http.header_read_timeout_ms`). It bounds how long a client may
//! take to send a request's headers (one byte a second no longer holds a connection for minutes) and how long an
//! idle keep-alive connection waits for its next request: hyper starts the timer whenever it begins reading a
//! request head, on a new connection or after a response.
//!
//! Graceful shutdown: stop accepting, let every connection finish its request in flight, close idle ones.
//!
//! `GET /healthz` on the public listener is answered here, before the router and its middleware (request id,
//! span, metrics, …): it is a constant, asked every few seconds by every load balancer, and the floor of what a
//! request costs. It is the only such route; everything else, including `HEAD /healthz`, takes the router.

use std::future::Future;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Method};
use axum::Router;
use futures_util::future::Either;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// Which requests skip the router (the module comment).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Bypass {
    /// The public listener: `GET /healthz`.
    Healthz,
    None,
}

fn bypassed(bypass: Bypass, request: &hyper::Request<Incoming>) -> Option<axum::response::Response> {
    if bypass != Bypass::Healthz || request.method() != Method::GET || request.uri().path() != "/healthz" {
        return None;
    }
    let mut response = axum::response::Response::new(Body::from(Bytes::from_static(super::ops::HEALTHY)));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Some(response)
}

/// Serves `router` on `listener` until `shutdown` completes, then drains the open connections (the caller bounds
/// how long it waits for that). Each request carries the peer address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    bypass: Bypass,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(connection) => connection,
                Err(error) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            if let Some(response) = bypassed(bypass, &request) {
                return Either::Left(std::future::ready(Ok(response)));
            }
            request.extensions_mut().insert(ConnectInfo(peer));
            Either::Right(router.clone().oneshot(request.map(Body::new)))
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
