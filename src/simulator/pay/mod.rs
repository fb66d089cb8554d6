//! WeChat Pay API v3, simulated: the same paths, JSON, error codes, RSA signatures and AES-GCM as WeChat Pay.
//!
//! It verifies every request the way WeChat does, parsing `Authorization` itself (no verification code is shared
//! with the client): merchant and serial known, timestamp within 300 s, signature over the exact bytes. It signs
//! every 2xx with the key the request's `Wechatpay-Serial` names (public key or platform certificate), mints prepay
//! ids, runs a cashier that verifies `paySign` as the phone's WeChat would, delivers signed and encrypted
//! notifications on WeChat's retry schedule, and serves trade bills.
//!
//! Simulator extensions (not WeChat's API), for the README tour and tests:
//! - `POST /cashier` with the five `wx.requestPayment` fields plus `"action": "pay" | "cancel"` →
//!   `{"errMsg": "requestPayment:ok"}` or the failure WeChat would give;
//! - `POST /control` merges fault switches ([`Knobs`]) and answers them; `POST /control/reset` clears them;
//! - `GET /notifications`: every notification delivery attempt with the answer it got;
//! - `GET /transactions/{out_trade_no}`: the simulator's view of a transaction.

pub mod keys;
mod notify;
mod refunds;
mod transactions;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::Verifier;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::payments::crypto::{ApiV3Key, MerchantKey};

/// A fault to inject: the next `count` calls whose path starts with `path` answer `status` with `code`
/// (`code` `"TIMEOUT"`: no answer for 10 s).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failure {
    pub path: String,
    pub status: u16,
    pub code: String,
    #[serde(default = "one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

/// Fault switches for tests (all off by default). Counters (`*_next`) are consumed one notification at a time.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Knobs {
    /// Never deliver notifications (exercises the query paths).
    pub notify_drop: bool,
    /// Send each notification this many extra times, concurrently.
    pub notify_duplicates: u32,
    /// Wait this long before the first delivery.
    pub notify_delay_ms: u64,
    /// The next notifications' first delivery is a `WECHATPAY/SIGNTEST/` probe.
    pub probe_next: u32,
    pub bad_signature_next: u32,
    pub stale_timestamp_next: u32,
    pub unknown_serial_next: u32,
    /// Signed correctly, but `amount.total` is changed (the anomaly path).
    pub amount_tamper_next: u32,
    /// Multiplies WeChat's retry schedule (15 s, 15 s, 30 s, 3 min, …): 0.001 makes 15 s 15 ms.
    pub time_scale: f64,
    /// Which key signs notifications: `public_key`, `certificate`, or `either` (a gray migration, at random).
    pub sign_with: String,
    pub fail_next: Vec<Failure>,
    /// A close of an unpaid order answers 429 `FREQUENCY_LIMITED` and the user's payment completes meanwhile.
    pub pay_during_close: bool,
    /// A close answers `USER_PAYING` and changes nothing.
    pub user_paying: bool,
    /// The next closes answer 204 but the order stays payable (WeChat's state sync lag).
    pub close_ignored_next: u32,
    /// Where refunds end: `SUCCESS`, `ABNORMAL` or `CLOSED`.
    pub refund_outcome: String,
    /// Refunds stay `PROCESSING` this long.
    pub refund_delay_ms: u64,
    /// `tradebill` answers `STATEMENT_CREATING`.
    pub statement_creating: bool,
    /// The bill's `hash_value` does not match the file.
    pub bill_tamper: bool,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            notify_drop: false,
            notify_duplicates: 0,
            notify_delay_ms: 0,
            probe_next: 0,
            bad_signature_next: 0,
            stale_timestamp_next: 0,
            unknown_serial_next: 0,
            amount_tamper_next: 0,
            time_scale: 1.0,
            sign_with: "public_key".into(),
            fail_next: Vec::new(),
            pay_during_close: false,
            user_paying: false,
            close_ignored_next: 0,
            refund_outcome: "SUCCESS".into(),
            refund_delay_ms: 0,
            statement_creating: false,
            bill_tamper: false,
        }
    }
}

/// A transaction the simulator knows.
#[derive(Debug, Clone)]
struct Txn {
    request: Value,
    appid: String,
    out_trade_no: String,
    prepay_id: String,
    prepay_at: i64,
    time_expire: i64,
    total: i64,
    openid: String,
    notify_url: String,
    /// NOTPAY, SUCCESS, CLOSED, REFUND.
    state: &'static str,
    transaction_id: Option<String>,
    success_time: Option<i64>,
}

#[derive(Debug, Clone)]
struct RefundRec {
    request: Value,
    out_refund_no: String,
    refund_id: String,
    out_trade_no: String,
    refund: i64,
    status: String,
    created: i64,
    success_time: Option<i64>,
}

/// One line of the ledger bills are made of.
#[derive(Debug, Clone)]
struct LedgerRow {
    at: i64,
    out_trade_no: String,
    transaction_id: String,
    openid: String,
    total: i64,
    /// (out_refund_no, refund_id, amount) for a refund row.
    refund: Option<(String, String, i64)>,
}

/// A notification delivery attempt.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub event_id: String,
    pub event_type: String,
    pub reference: String,
    pub attempt: u32,
    /// `valid`, `probe`, `bad_signature`, `stale_timestamp`, `unknown_serial`, `amount_tamper`, `dropped`.
    pub kind: String,
    /// The key it was signed with: a `PUB_KEY_ID_…` or a certificate serial.
    pub serial: String,
    /// The merchant's HTTP status; 0 when it did not answer.
    pub status: u16,
    /// A 2xx to an invalid signature: the merchant does not verify (a failure in any test).
    pub accepted_invalid: bool,
}

#[derive(Default)]
struct State {
    knobs: Knobs,
    txns: HashMap<String, Txn>,
    prepays: HashMap<String, String>,
    refunds: HashMap<String, RefundRec>,
    ledger: Vec<LedgerRow>,
    bills: HashMap<String, Vec<u8>>,
    deliveries: Vec<Delivery>,
}

pub struct PaySimulator {
    mch_id: String,
    app_id: String,
    merchant_serial: String,
    merchant_key: VerifyingKey<Sha256>,
    api_v3_key: ApiV3Key,
    public_key: MerchantKey,
    certificate_key: MerchantKey,
    /// Where the simulator is reachable (bill download URLs point here).
    base_url: String,
    http: reqwest::Client,
    state: Mutex<State>,
}

impl PaySimulator {
    /// The simulator of merchant [`keys::MCH_ID`] for mini-program `app_id`, reachable at `base_url`.
    pub fn new(app_id: &str, base_url: &str) -> Arc<PaySimulator> {
        let merchant = rsa::RsaPrivateKey::from_pkcs8_pem(keys::MERCHANT_KEY_PEM).expect("the simulator key parses");
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .expect("an HTTP client builds");
        Arc::new(PaySimulator {
            mch_id: keys::MCH_ID.into(),
            app_id: app_id.into(),
            merchant_serial: keys::MERCHANT_SERIAL.into(),
            merchant_key: VerifyingKey::new(merchant.to_public_key()),
            api_v3_key: ApiV3Key::new(keys::API_V3_KEY.as_bytes()).expect("32 bytes"),
            public_key: MerchantKey::from_pkcs8_pem(keys::PUBLIC_KEY_PRIVATE_PEM).expect("parses"),
            certificate_key: MerchantKey::from_pkcs8_pem(keys::CERTIFICATE_PRIVATE_PEM).expect("parses"),
            base_url: base_url.trim_end_matches('/').into(),
            http,
            state: Mutex::new(State::default()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// WeChat's check of a request: `Some` is the error answer.
    fn authenticate(&self, method: &str, path_and_query: &str, headers: &HeaderMap, body: &[u8]) -> Option<Response> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
        if header("accept").is_empty() || header("user-agent").is_empty() {
            return Some(error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "Http头缺少Accept或User-Agent"));
        }
        let sign_error = |issue: &str| {
            let detail = json!({"field": "signature", "location": "authorization", "issue": issue});
            error_with(StatusCode::UNAUTHORIZED, "SIGN_ERROR", "错误的签名，验签失败", detail)
        };
        let Some(params) = header("authorization").strip_prefix("WECHATPAY2-SHA256-RSA2048 ") else {
            return Some(sign_error("unsupported authorization scheme"));
        };
        let mut fields = HashMap::new();
        for pair in params.split(',') {
            let Some((key, value)) = pair.split_once('=') else { return Some(sign_error("malformed authorization")) };
            fields.insert(key.trim(), value.trim().trim_matches('"'));
        }
        let field = |k: &str| fields.get(k).copied().unwrap_or("");
        if field("mchid") != self.mch_id {
            return Some(error(StatusCode::BAD_REQUEST, "MCH_NOT_EXISTS", "商户号不存在"));
        }
        if field("serial_no") != self.merchant_serial {
            return Some(sign_error("unknown merchant certificate serial"));
        }
        let Ok(timestamp) = field("timestamp").parse::<i64>() else { return Some(sign_error("bad timestamp")) };
        if (now_secs() - timestamp).abs() > 300 {
            return Some(error(
                StatusCode::UNAUTHORIZED,
                "SIGN_ERROR",
                "Http头Authorization中的timestamp与发起请求的时间不得超过5分钟",
            ));
        }
        let mut message = format!("{method}\n{path_and_query}\n{timestamp}\n{}\n", field("nonce_str")).into_bytes();
        message.extend_from_slice(body);
        message.push(b'\n');
        let signature = STANDARD.decode(field("signature")).ok().and_then(|b| Signature::try_from(b.as_slice()).ok());
        match signature {
            Some(signature) if self.merchant_key.verify(&message, &signature).is_ok() => None,
            _ => Some(sign_error("sign not match")),
        }
    }

    /// An injected failure for `path`, if one is armed.
    async fn injected(&self, path: &str) -> Option<Response> {
        let failure = {
            let mut state = self.state();
            let index = state.knobs.fail_next.iter().position(|f| path.starts_with(&f.path))?;
            let failure = state.knobs.fail_next[index].clone();
            state.knobs.fail_next[index].count -= 1;
            if state.knobs.fail_next[index].count == 0 {
                state.knobs.fail_next.remove(index);
            }
            failure
        };
        if failure.code == "TIMEOUT" {
            tokio::time::sleep(std::time::Duration::from_secs(10)).await;
        }
        let status = StatusCode::from_u16(failure.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Some(error(status, &failure.code, "simulated failure"))
    }

    /// The key that signs a response: the one the request's `Wechatpay-Serial` names, else the public key.
    fn response_key(&self, headers: &HeaderMap) -> (&MerchantKey, &'static str) {
        match headers.get("wechatpay-serial").and_then(|v| v.to_str().ok()) {
            Some(keys::CERTIFICATE_SERIAL) => (&self.certificate_key, keys::CERTIFICATE_SERIAL),
            _ => (&self.public_key, keys::PUBLIC_KEY_ID),
        }
    }

    /// A signed answer, as WeChat Pay sends every 2xx.
    fn signed(&self, headers: &HeaderMap, status: StatusCode, body: Vec<u8>) -> Response {
        let (key, serial) = self.response_key(headers);
        let timestamp = now_secs().to_string();
        let nonce = crate::payments::sign::nonce();
        let signature = key.sign(&crate::payments::sign::response_message(&timestamp, &nonce, &body));
        let mut response = (status, Bytes::from(body)).into_response();
        let h = response.headers_mut();
        for (name, value) in [
            ("content-type", "application/json".to_owned()),
            ("request-id", uuid::Uuid::new_v4().to_string()),
            ("wechatpay-timestamp", timestamp),
            ("wechatpay-nonce", nonce),
            ("wechatpay-signature", signature),
            ("wechatpay-serial", serial.to_owned()),
            ("wechatpay-signature-type", "WECHATPAY2-SHA256-RSA2048".to_owned()),
        ] {
            if let Ok(value) = value.parse() {
                h.insert(name, value);
            }
        }
        response
    }
}

pub(crate) fn now_secs() -> i64 {
    crate::db::now_ms() / 1000
}

/// `2026-12-01T10:00:00+08:00`, as WeChat writes times.
pub(crate) fn beijing(secs: i64) -> String {
    crate::db::rfc3339_beijing(secs)
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, axum::Json(json!({ "code": code, "message": message }))).into_response()
}

fn error_with(status: StatusCode, code: &str, message: &str, detail: Value) -> Response {
    (status, axum::Json(json!({ "code": code, "message": message, "detail": detail }))).into_response()
}

pub fn router(sim: Arc<PaySimulator>) -> Router {
    Router::new()
        .route("/v3/pay/transactions/jsapi", post(transactions::prepay))
        .route("/v3/pay/transactions/out-trade-no/{no}", get(transactions::query))
        .route("/v3/pay/transactions/out-trade-no/{no}/close", post(transactions::close))
        .route("/v3/refund/domestic/refunds", post(refunds::refund))
        .route("/v3/refund/domestic/refunds/{no}", get(refunds::query_refund))
        .route("/v3/bill/tradebill", get(refunds::trade_bill))
        .route("/v3/billdownload/file", get(refunds::download_bill))
        .route("/v3/certificates", get(refunds::certificates))
        .route("/cashier", post(transactions::cashier))
        .route("/transactions/{no}", get(transactions::inspect))
        .route("/control", post(control))
        .route("/control/reset", post(reset))
        .route("/notifications", get(deliveries))
        .with_state(sim)
}

async fn control(axum::extract::State(sim): axum::extract::State<Arc<PaySimulator>>, body: Bytes) -> Response {
    let mut state = sim.state();
    let mut current = serde_json::to_value(&state.knobs).expect("serializes");
    let Ok(Value::Object(changes)) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "expected a JSON object of knobs");
    };
    for (key, value) in changes {
        current[key] = value;
    }
    match serde_json::from_value::<Knobs>(current) {
        Ok(knobs) => {
            state.knobs = knobs;
            axum::Json(serde_json::to_value(&state.knobs).expect("serializes")).into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, "PARAM_ERROR", &e.to_string()),
    }
}

async fn reset(axum::extract::State(sim): axum::extract::State<Arc<PaySimulator>>) -> StatusCode {
    sim.state().knobs = Knobs::default();
    StatusCode::NO_CONTENT
}

async fn deliveries(axum::extract::State(sim): axum::extract::State<Arc<PaySimulator>>) -> axum::Json<Vec<Delivery>> {
    axum::Json(sim.state().deliveries.clone())
}
