//! The middleware stack every request goes through, exercised over HTTP on a router with test handlers:
//! malformed bodies, body limit, panics, timeouts, request ids, CORS and compression.

use std::io::Read;
use std::time::Duration;

use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use wxshop::config::Config;
use wxshop::http::extract::AppJson;

#[derive(Debug, Deserialize)]
struct Item {
    sku_id: i64,
    quantity: u32,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Order {
    items: Vec<Item>,
    remark: Option<String>,
}

async fn echo(AppJson(order): AppJson<Order>) -> Json<Value> {
    Json(
        json!({ "items": order.items.len(), "first_sku": order.items.first().map(|i| i.sku_id), "quantity": order.items.first().map(|i| i.quantity) }),
    )
}

async fn boom() -> &'static str {
    panic!("deliberate test panic")
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(5)).await;
    "finally"
}

async fn big() -> String {
    "wxshop ".repeat(2_000)
}

/// Serves the test handlers behind the application's own middleware stack.
async fn serve(customize: impl FnOnce(&mut Config)) -> (String, reqwest::Client) {
    let mut config = Config::default();
    config.http.body_limit_bytes = 1_024;
    config.http.request_timeout_ms = 300;
    customize(&mut config);
    let router = Router::new()
        .route("/echo", post(echo))
        .route("/boom", get(boom))
        .route("/slow", get(slow))
        .route("/big", get(big));
    let dir = tempfile::tempdir().unwrap();
    config.data_dir = dir.keep();
    let db = wxshop::db::Db::connect_lazy(&config).unwrap();
    let router = wxshop::http::with_middleware(router, &config, &db);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (address, reqwest::Client::builder().no_proxy().build().unwrap())
}

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    assert!(
        response.headers()["content-type"].to_str().unwrap().starts_with("application/json"),
        "status {status} without a JSON body"
    );
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn malformed_json_is_400_invalid_json() {
    let (base, client) = serve(|_| {}).await;
    for body in ["{", "{\"items\": [}", "items=1", "", "{\"items\": []} {}"] {
        let response = client
            .post(format!("{base}/echo"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, body_json) = json_of(response).await;
        assert_eq!((status, body_json["code"].as_str()), (400, Some("invalid_json")), "{body:?}: {body_json}");
    }
}

#[tokio::test]
async fn json_of_the_wrong_shape_is_422_naming_the_field() {
    let (base, client) = serve(|_| {}).await;
    for (body, field) in [
        (json!({"items": [{"sku_id": 1, "quantity": -2}]}), "items[0].quantity"),
        (json!({"items": [{"sku_id": "one", "quantity": 1}]}), "items[0].sku_id"),
        (json!({"items": "none"}), "items"),
        (json!({"remark": "missing items"}), "body"),
    ] {
        let (status, error) = json_of(client.post(format!("{base}/echo")).json(&body).send().await.unwrap()).await;
        assert_eq!(status, 422, "{body}: {error}");
        assert_eq!(error["code"], "validation_failed");
        assert_eq!(error["fields"][0]["field"], field, "{error}");
    }
    let ok = client
        .post(format!("{base}/echo"))
        .json(&json!({"items": [{"sku_id": 7, "quantity": 2}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.json::<Value>().await.unwrap(), json!({"items": 1, "first_sku": 7, "quantity": 2}));
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let (base, client) = serve(|_| {}).await;
    let response = client.post(format!("{base}/echo")).body(r#"{"items": []}"#).send().await.unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!((status, body["code"].as_str()), (415, Some("unsupported_media_type")));
}

#[tokio::test]
async fn oversized_body_is_413_json() {
    let (base, client) = serve(|_| {}).await;
    let remark = "x".repeat(4_096);
    // Declared length over the limit: refused before the handler runs.
    let response =
        client.post(format!("{base}/echo")).json(&json!({"items": [], "remark": remark})).send().await.unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!((status, body["code"].as_str()), (413, Some("payload_too_large")), "{body}");
    // Streamed without a length: refused while reading.
    let chunks = vec![Ok::<_, std::io::Error>(format!(r#"{{"items": [], "remark": "{remark}"}}"#))];
    let response = client
        .post(format!("{base}/echo"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!((status, body["code"].as_str()), (413, Some("payload_too_large")), "{body}");
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_json_and_the_server_lives_on() {
    let (base, client) = serve(|_| {}).await;
    for _ in 0..3 {
        let (status, body) = json_of(client.get(format!("{base}/boom")).send().await.unwrap()).await;
        assert_eq!((status, body["code"].as_str()), (500, Some("internal_error")));
        assert!(!body["message"].as_str().unwrap().contains("deliberate"), "panic text must not leak");
    }
    let ok = client.post(format!("{base}/echo")).json(&json!({"items": []})).send().await.unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn a_slow_handler_is_cut_off_with_503_request_timeout() {
    let (base, client) = serve(|c| c.http.request_timeout_ms = 200).await;
    let started = std::time::Instant::now();
    let (status, body) = json_of(client.get(format!("{base}/slow")).send().await.unwrap()).await;
    assert_eq!((status, body["code"].as_str()), (503, Some("request_timeout")));
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn request_id_is_returned_and_generated_when_missing() {
    let (base, client) = serve(|_| {}).await;
    let given = client.get(format!("{base}/big")).header("x-request-id", "mini-42").send().await.unwrap();
    assert_eq!(given.headers()["x-request-id"], "mini-42");
    let generated = client.get(format!("{base}/big")).send().await.unwrap();
    let id = generated.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 36, "a uuid: {id}");
    let other = client.get(format!("{base}/big")).send().await.unwrap();
    assert_ne!(other.headers()["x-request-id"].to_str().unwrap(), id);
    // Errors carry it too.
    let missing = client.get(format!("{base}/nowhere")).header("x-request-id", "err-1").send().await.unwrap();
    assert_eq!(missing.headers()["x-request-id"], "err-1");
    let (status, body) = json_of(missing).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("route_not_found")));
}

#[tokio::test]
async fn wrong_method_is_405_json() {
    let (base, client) = serve(|_| {}).await;
    let (status, body) = json_of(client.delete(format!("{base}/echo")).send().await.unwrap()).await;
    assert_eq!((status, body["code"].as_str()), (405, Some("method_not_allowed")));
}

#[tokio::test]
async fn cors_follows_the_configured_origins() {
    let (base, client) = serve(|c| c.http.cors_origins = vec!["https://shop.example".into()]).await;
    let allowed = client
        .request(reqwest::Method::OPTIONS, format!("{base}/echo"))
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type,idempotency-key")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://shop.example");
    let other = client.get(format!("{base}/big")).header("origin", "https://evil.example").send().await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());

    let (base, client) = serve(|_| {}).await;
    let none = client.get(format!("{base}/big")).header("origin", "https://shop.example").send().await.unwrap();
    assert!(none.headers().get("access-control-allow-origin").is_none(), "no CORS unless configured");
}

#[tokio::test]
async fn responses_are_gzip_compressed_when_asked() {
    let (base, client) = serve(|_| {}).await;
    let response = client.get(format!("{base}/big")).header("accept-encoding", "gzip").send().await.unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let compressed = response.bytes().await.unwrap();
    assert!(compressed.len() < 1_000, "{} bytes", compressed.len());
    let mut text = String::new();
    flate2::read::GzDecoder::new(&compressed[..]).read_to_string(&mut text).unwrap();
    assert_eq!(text, "wxshop ".repeat(2_000));
}
