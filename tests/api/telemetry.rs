//! Traces and logs of the real binary: spans arrive over OTLP/HTTP (protobuf) at a small receiver on loopback, an
//! incoming W3C `traceparent` is continued, the outgoing WeChat call carries it on, and each JSON log line names the
//! trace, span, request and user it belongs to.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::{json, Value};

use crate::helpers::BinaryServer;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";

#[derive(Clone, Default)]
struct Received {
    spans: Arc<Mutex<Vec<Span>>>,
    service_names: Arc<Mutex<Vec<String>>>,
    content_types: Arc<Mutex<Vec<String>>>,
}

async fn receive(State(received): State<Received>, headers: axum::http::HeaderMap, body: Bytes) -> Vec<u8> {
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    received.content_types.lock().unwrap().push(content_type);
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export request");
    for resource_spans in request.resource_spans {
        for attribute in resource_spans.resource.map(|r| r.attributes).unwrap_or_default() {
            if attribute.key == "service.name" {
                if let Some(AnyValue::StringValue(name)) = attribute.value.and_then(|v| v.value) {
                    received.service_names.lock().unwrap().push(name);
                }
            }
        }
        for scope_spans in resource_spans.scope_spans {
            received.spans.lock().unwrap().extend(scope_spans.spans);
        }
    }
    ExportTraceServiceResponse::default().encode_to_vec()
}

/// An OTLP/HTTP receiver: `POST /v1/traces` with protobuf bodies.
async fn otlp_receiver() -> (String, Received) {
    let received = Received::default();
    let app = axum::Router::new().route("/v1/traces", axum::routing::post(receive)).with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}"), received)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn int_attribute(span: &Span, key: &str) -> Option<i64> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| match a.value.as_ref()?.value.as_ref()? {
        AnyValue::IntValue(v) => Some(*v),
        _ => None,
    })
}

#[tokio::test]
async fn spans_reach_an_otlp_receiver_and_log_lines_carry_their_ids() {
    let (endpoint, received) = otlp_receiver().await;
    // The log filter keeps only the request lines: spans are exported whatever it filters out (the WeChat client
    // span below is not logged at this filter).
    let mut server = BinaryServer::start(&[
        ("WXSHOP_OTEL_ENDPOINT", endpoint.as_str()),
        ("WXSHOP_LOG__FILTER", "warn,wxshop::http=info,wxshop::cli=info"),
    ]);
    let base = server.base.clone();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    // 1. Login inside the caller's trace: the server span continues it, and the jscode2session call to the
    //    (in-process) simulator carries it on.
    let login = client
        .post(format!("{base}/api/v1/auth/wechat/login"))
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01"))
        .json(&json!({"code": "trace-user"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let token = login.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();

    // 2. A request with no traceparent starts a new trace; an authenticated one names its user in the logs.
    let me = client.get(format!("{base}/api/v1/me")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(me.status(), 200);
    let me_request_id = me.headers()["x-request-id"].to_str().unwrap().to_owned();
    let user_id = me.json::<Value>().await.unwrap()["id"].as_i64().unwrap();

    // 3. A malformed traceparent is ignored, not an error.
    let garbage = client.get(format!("{base}/readyz")).header("traceparent", "00-not-a-trace-01").send().await.unwrap();
    assert_eq!(garbage.status(), 200);

    // SIGTERM: the exporter flushes what it still holds before the process exits.
    server.stop().await;

    let spans = received.spans.lock().unwrap().clone();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert!(received.service_names.lock().unwrap().iter().all(|n| n == "wxshop"), "resource service.name");
    assert!(!received.service_names.lock().unwrap().is_empty());
    assert!(received.content_types.lock().unwrap().iter().all(|t| t == "application/x-protobuf"));

    let login_span = spans
        .iter()
        .find(|s| s.name == "POST /api/v1/auth/wechat/login" && hex(&s.trace_id) == TRACE_ID)
        .unwrap_or_else(|| panic!("the login span was exported: {names:?}"));
    assert_eq!(hex(&login_span.trace_id), TRACE_ID, "continues the caller's trace");
    assert_eq!(hex(&login_span.parent_span_id), CALLER_SPAN_ID, "child of the caller's span");
    assert_eq!(login_span.kind, SpanKind::Server as i32);
    assert_eq!(int_attribute(login_span, "http.response.status_code"), Some(200), "{:?}", login_span.attributes);

    let client_span = spans
        .iter()
        .find(|s| s.name == "jscode2session" && hex(&s.trace_id) == TRACE_ID)
        .unwrap_or_else(|| panic!("the WeChat client span was exported: {names:?}"));
    assert_eq!(client_span.kind, SpanKind::Client as i32);
    assert_eq!(hex(&client_span.trace_id), TRACE_ID);
    // Under the login span (possibly through the handler's own span).
    let mut ancestor = client_span.parent_span_id.clone();
    while ancestor != login_span.span_id {
        let parent = spans
            .iter()
            .find(|s| s.span_id == ancestor)
            .unwrap_or_else(|| panic!("the client span's ancestors lead to the login span: {names:?}"));
        ancestor = parent.parent_span_id.clone();
    }

    // The simulator is another HTTP server (in the same process): its span continues the trace from the
    // `traceparent` header the WeChat client sent.
    // Other tests of this process log in at the same time, so other simulator spans may be exported too: the one
    // that answered this login is the child of its client span.
    let simulator_span = spans
        .iter()
        .find(|s| s.name.starts_with("GET /__simulator") && s.parent_span_id == client_span.span_id)
        .unwrap_or_else(|| panic!("the simulator's server span continues the client span: {names:?}"));
    assert_eq!(hex(&simulator_span.trace_id), TRACE_ID, "traceparent went out with the WeChat call");

    let me_span = spans.iter().find(|s| s.name == "GET /api/v1/me").expect("the /me span");
    assert_ne!(hex(&me_span.trace_id), TRACE_ID, "no traceparent: a new trace");
    assert!(me_span.parent_span_id.is_empty(), "a root span");
    // (`GET /healthz` is answered before the middleware: no span.)
    let health_span = spans.iter().find(|s| s.name == "GET /readyz").expect("the /readyz span");
    assert!(health_span.parent_span_id.is_empty(), "a malformed traceparent starts a new trace");

    // Logs: the request's end is logged with its ids as top-level keys.
    let lines = server.log_entries();
    let finished = |route: &str| {
        lines
            .iter()
            .find(|l| l["route"] == route && l["message"] == "finished processing request")
            .unwrap_or_else(|| panic!("a log line for {route}"))
            .clone()
    };
    let login_line = finished("/api/v1/auth/wechat/login");
    assert_eq!(login_line["trace_id"], TRACE_ID);
    assert_eq!(login_line["span_id"], hex(&login_span.span_id));
    assert_eq!(login_line["level"], "INFO");
    assert!(login_line["timestamp"].is_string() && login_line["target"].is_string(), "{login_line}");
    assert!(login_line["request_id"].as_str().is_some_and(|id| !id.is_empty()));
    let me_line = finished("/api/v1/me");
    assert_eq!(me_line["trace_id"], hex(&me_span.trace_id));
    assert_eq!(me_line["span_id"], hex(&me_span.span_id));
    assert_eq!(me_line["request_id"], me_request_id.as_str());
    assert_eq!(me_line["user_id"], user_id);
    let all = lines.iter().map(Value::to_string).collect::<String>();
    assert!(!all.contains(&token), "no token in the logs");
}
