//! Graceful shutdown: in-flight requests finish, the wait is bounded, and SIGTERM stops the real binary cleanly.

use std::time::{Duration, Instant};

use wxshop::config::DsnUrl;

use crate::helpers::{stalling_server, BinaryServer};

/// An app whose `/readyz` takes about a second (Redis stalls until its 1 s response timeout).
async fn app_with_slow_readyz(
    shutdown_timeout_ms: u64,
) -> (String, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let (redis_address, _server) = stalling_server().await;
    std::mem::forget(_server); // keep stalling for the rest of the test
    let dir = tempfile::tempdir().unwrap().keep();
    let mut config = wxshop::config::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ops_listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir,
        redis_url: Some(DsnUrl::new(format!("redis://{redis_address}"))),
        ..Default::default()
    };
    config.http.shutdown_timeout_ms = shutdown_timeout_ms;
    let app = wxshop::startup::Application::build(config).await.unwrap();
    let address = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    (address, stop, server)
}

#[tokio::test]
async fn in_flight_requests_finish_during_shutdown() {
    let (address, stop, server) = app_with_slow_readyz(10_000).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let in_flight = tokio::spawn({
        let client = client.clone();
        let url = format!("{address}/readyz");
        async move { client.get(url).send().await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send(()).unwrap();
    let response = in_flight.await.unwrap().expect("the in-flight request got its response");
    assert_eq!(response.status(), 503, "readiness answered (Redis stalls)");
    server.await.unwrap().unwrap();
    assert!(client.get(format!("{address}/healthz")).send().await.is_err(), "no longer accepting");
}

#[tokio::test]
async fn shutdown_wait_is_bounded() {
    let (address, stop, server) = app_with_slow_readyz(100).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let _in_flight = tokio::spawn(async move { client.get(format!("{address}/readyz")).send().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(800), "shutdown waited {took:?} despite a 100 ms bound");
}

#[tokio::test]
async fn sigterm_stops_the_binary_cleanly() {
    let mut server = BinaryServer::start(&[]);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let status = client.get(format!("{}/api/v1/products?limit=1", server.base)).send().await.unwrap().status();
    assert_eq!(status, 200, "serves the seeded catalog");
    server.stop().await;
    let lines = server.lines.lock().unwrap().clone();
    assert!(lines.iter().any(|l| l.contains("stopped")), "{lines:?}");
}
