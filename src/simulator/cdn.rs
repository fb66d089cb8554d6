//! CDN purge APIs as the providers speak them, with their real signatures checked:
//! - `POST /tencent`: Tencent Cloud API 3.0 (`X-TC-Action: PurgeUrlsCache | DescribePurgeTasks`, TC3-HMAC-SHA256;
//!   errors as HTTP 200 with `Response.Error`), ≤ 1,000 URLs per call, 10,000 per day;
//! - `POST /aliyun`: Aliyun RPC (`Action=RefreshObjectCaches | DescribeRefreshTasks`, HMAC-SHA1 signature, form
//!   body), the same limits.
//!
//! Knobs for tests: `POST /_control {"fail_next": N}` answers the next N calls with HTTP 503; `GET /_calls` lists
//! the purge calls received (provider, URLs, task id).

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::cdn::{aliyun, tencent};

const MAX_URLS_PER_CALL: usize = 1_000;
const MAX_URLS_PER_DAY: usize = 10_000;

pub struct CdnSimulator {
    secret_id: String,
    secret_key: String,
    fail_next: Mutex<u64>,
    calls: Mutex<Vec<Value>>,
}

impl CdnSimulator {
    pub fn new(secret_id: &str, secret_key: &str) -> Arc<CdnSimulator> {
        Arc::new(CdnSimulator {
            secret_id: secret_id.to_owned(),
            secret_key: secret_key.to_owned(),
            fail_next: Mutex::new(0),
            calls: Mutex::new(Vec::new()),
        })
    }

    fn take_failure(&self) -> bool {
        let mut fail = self.fail_next.lock().expect("not poisoned");
        if *fail > 0 {
            *fail -= 1;
            return true;
        }
        false
    }

    fn urls_today(&self) -> usize {
        let calls = self.calls.lock().expect("not poisoned");
        calls.iter().map(|c| c["urls"].as_array().map_or(0, Vec::len)).sum()
    }

    /// Records a purge and returns its task id, or why it was refused.
    fn purge(&self, provider: &str, urls: Vec<String>) -> Result<String, &'static str> {
        if urls.is_empty() || urls.len() > MAX_URLS_PER_CALL {
            return Err("invalid_urls");
        }
        if self.urls_today() + urls.len() > MAX_URLS_PER_DAY {
            return Err("quota");
        }
        let task_id = format!("sim-{provider}-{}", uuid::Uuid::new_v4().simple());
        let call = json!({"provider": provider, "urls": urls, "task_id": task_id});
        self.calls.lock().expect("not poisoned").push(call);
        Ok(task_id)
    }

    fn task_urls(&self, task_id: &str) -> Option<Vec<String>> {
        let calls = self.calls.lock().expect("not poisoned");
        calls.iter().find(|c| c["task_id"] == task_id).map(|c| {
            c["urls"]
                .as_array()
                .map(|u| u.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                .unwrap_or_default()
        })
    }
}

pub fn router(sim: Arc<CdnSimulator>) -> Router {
    Router::new()
        .route("/tencent", post(tencent_api))
        .route("/aliyun", post(aliyun_api))
        .route("/_control", post(control))
        .route("/_calls", get(calls))
        .with_state(sim)
}

async fn control(State(sim): State<Arc<CdnSimulator>>, Json(body): Json<Value>) -> StatusCode {
    if let Some(n) = body["fail_next"].as_u64() {
        *sim.fail_next.lock().expect("not poisoned") = n;
    }
    StatusCode::NO_CONTENT
}

async fn calls(State(sim): State<Arc<CdnSimulator>>) -> Json<Value> {
    Json(json!({"calls": *sim.calls.lock().expect("not poisoned")}))
}

fn tencent_error(code: &str, message: &str) -> Response {
    Json(json!({"Response": {"Error": {"Code": code, "Message": message}, "RequestId": uuid::Uuid::new_v4().to_string()}}))
        .into_response()
}

async fn tencent_api(State(sim): State<Arc<CdnSimulator>>, headers: HeaderMap, body: Bytes) -> Response {
    if sim.take_failure() {
        return (StatusCode::SERVICE_UNAVAILABLE, "simulated outage").into_response();
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let timestamp: i64 = header("x-tc-timestamp").parse().unwrap_or(0);
    if (crate::db::now_ms() / 1000 - timestamp).abs() > 300 {
        return tencent_error("AuthFailure.SignatureExpire", "the signature expired");
    }
    let payload = String::from_utf8_lossy(&body);
    let expected =
        tencent::authorization(&sim.secret_id, &sim.secret_key, header("host"), &payload, timestamp, tencent::SERVICE);
    if header("authorization") != expected || header("content-type") != tencent::CONTENT_TYPE {
        return tencent_error("AuthFailure.SignatureFailure", "the signature does not match");
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let request_id = uuid::Uuid::new_v4().to_string();
    match header("x-tc-action") {
        "PurgeUrlsCache" => {
            let urls: Vec<String> = request["Urls"]
                .as_array()
                .map(|u| u.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            match sim.purge("tencent", urls) {
                Ok(task_id) => Json(json!({"Response": {"TaskId": task_id, "RequestId": request_id}})).into_response(),
                Err("quota") => tencent_error("LimitExceeded.CdnPurgeUrlExceedDayLimit", "daily purge quota used up"),
                Err(_) => tencent_error("InvalidParameter.CdnUrlInvalid", "1 to 1000 URLs per call"),
            }
        }
        "DescribePurgeTasks" => {
            let task_id = request["TaskId"].as_str().unwrap_or_default();
            let logs: Vec<Value> = sim
                .task_urls(task_id)
                .unwrap_or_default()
                .into_iter()
                .map(|url| json!({"TaskId": task_id, "Url": url, "Status": "done", "PurgeType": "url"}))
                .collect();
            Json(json!({"Response": {"TotalCount": logs.len(), "PurgeLogs": logs, "RequestId": request_id}}))
                .into_response()
        }
        _ => tencent_error("InvalidAction", "unknown action"),
    }
}

fn aliyun_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"Code": code, "Message": message, "RequestId": uuid::Uuid::new_v4().to_string()})))
        .into_response()
}

async fn aliyun_api(State(sim): State<Arc<CdnSimulator>>, body: Bytes) -> Response {
    if sim.take_failure() {
        return aliyun_error(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", "simulated outage");
    }
    let params: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    let unsigned: Vec<(String, String)> = params.iter().filter(|(k, _)| k != "Signature").cloned().collect();
    if get("AccessKeyId") != sim.secret_id || aliyun::sign("POST", &unsigned, &sim.secret_key) != get("Signature") {
        return aliyun_error(StatusCode::BAD_REQUEST, "SignatureDoesNotMatch", "the signature does not match");
    }
    let request_id = uuid::Uuid::new_v4().to_string();
    match get("Action").as_str() {
        "RefreshObjectCaches" => {
            let urls: Vec<String> =
                get("ObjectPath").split('\n').filter(|u| !u.is_empty()).map(str::to_owned).collect();
            match sim.purge("aliyun", urls) {
                Ok(task_id) => Json(json!({"RefreshTaskId": task_id, "RequestId": request_id})).into_response(),
                Err("quota") => aliyun_error(StatusCode::BAD_REQUEST, "QuotaExceeded.Refresh", "daily quota used up"),
                Err(_) => aliyun_error(StatusCode::BAD_REQUEST, "InvalidObjectPath.Malformed", "1 to 1000 URLs"),
            }
        }
        "DescribeRefreshTasks" => {
            let task_id = get("TaskId");
            let tasks: Vec<Value> = sim
                .task_urls(&task_id)
                .unwrap_or_default()
                .into_iter()
                .map(|url| json!({"TaskId": task_id, "ObjectPath": url, "Status": "Complete", "ObjectType": "file"}))
                .collect();
            Json(json!({"Tasks": {"CDNTask": tasks}, "TotalCount": tasks.len(), "RequestId": request_id}))
                .into_response()
        }
        _ => aliyun_error(StatusCode::BAD_REQUEST, "InvalidAction.NotFound", "unknown action"),
    }
}
