//! Slow and silent clients hold nothing: a request's headers must arrive within `http.header_read_timeout_ms`,
//! an idle keep-alive connection is closed after it, and neither stretches a shutdown.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{spawn_app_with, Backend, BinaryServer};

fn host(base: &str) -> String {
    base.trim_start_matches("http://").to_owned()
}

/// Writes `text` one byte every `pause` until the server closes the connection; returns how long that took
/// (or `None` if it stayed open for `give_up`).
async fn dribble(address: &str, text: &str, pause: Duration, give_up: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(address).await.unwrap();
    for byte in text.bytes().cycle() {
        if started.elapsed() > give_up {
            return None;
        }
        if stream.write_all(&[byte]).await.is_err() {
            return Some(started.elapsed());
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(pause, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {} // a 408-style answer may precede the close
            Err(_) => {}
        }
    }
    unreachable!()
}

#[tokio::test]
async fn headers_sent_a_byte_at_a_time_are_cut_off() {
    let app = spawn_app_with(&Backend::Embedded, |c| c.http.header_read_timeout_ms = 700).await;
    let slow = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let closed = dribble(&host(&app.address), slow, Duration::from_millis(100), Duration::from_secs(10)).await;
    let closed = closed.expect("the connection is closed, not held");
    assert!(closed < Duration::from_secs(3), "closed after {closed:?}");
    // Ordinary requests are unaffected.
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let app = spawn_app_with(&Backend::Embedded, |c| c.http.header_read_timeout_ms = 700).await;
    let mut stream = TcpStream::connect(host(&app.address)).await.unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"), "answered first");
    let started = Instant::now();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "closed by the server, not held: {read:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "idle for {:?}", started.elapsed());
}

/// The real binary with a client dribbling headers: SIGTERM ends it within the header timeout, not the 20 s
/// shutdown limit.
#[tokio::test]
async fn a_slow_client_does_not_stretch_a_shutdown() {
    let mut server = BinaryServer::start(&[("WXSHOP_HTTP__HEADER_READ_TIMEOUT_MS", "1500")]);
    let address = host(&server.base);
    let slow = tokio::spawn(async move {
        dribble(
            &address,
            "GET /healthz HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            Duration::from_millis(200),
            Duration::from_secs(30),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    server.stop().await;
    assert!(started.elapsed() < Duration::from_secs(5), "stopped after {:?}", started.elapsed());
    assert!(slow.await.unwrap().is_some());
}
