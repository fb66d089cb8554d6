//! The WeChat mini-program server API, simulated.
//!
//! Rules (part of wxshop's contract, relied on by tests and the README tour):
//! - A login code is `NAME` or `NAME:NONCE`. Each code works once; a second use answers 40163. The openid is a
//!   stable function of the app id and NAME, so the same NAME is always the same user.
//! - The code `invalid` answers 40029, `ratelimit` 45011, `busy` -1 (system busy) every time, and a code starting
//!   with `flaky-` answers -1 on its first use only (a retry succeeds).
//! - A phone code `phone-<DIGITS>` (5 to 15 digits) returns that phone number; other phone codes answer 40029.
//! - `stable_token` hands out one access token at a time (7200 s), which `getuserphonenumber` requires (40001).
//! - `upload_shipping_info` records each accepted upload (`GET /_shipping`); `POST /_control
//!   {"shipping_fail_next": N}` makes the next N uploads fail with -1 (system busy).
//! - `subscribeMessage.send` records each message (`GET /_messages`); a `touser` ending in `-nosub` answers 43101
//!   (the user did not subscribe); `POST /_control {"subscribe_fail_next": N}` fails the next N with -1.
//! - `GET /_stats` (a simulator extension) counts the calls per API.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::crypto::{random_token, sha256_hex};

pub struct WechatSimulator {
    app_id: String,
    app_secret: String,
    used_codes: Mutex<HashSet<String>>,
    /// `flaky-` codes that already failed once.
    flaked: Mutex<HashSet<String>>,
    access_token: Mutex<Option<(String, Instant)>>,
    calls: HashMap<&'static str, AtomicU64>,
    shipping_fail_next: AtomicU64,
    shipping: Mutex<Vec<Value>>,
    subscribe_fail_next: AtomicU64,
    messages: Mutex<Vec<Value>>,
}

const ACCESS_TOKEN_TTL: Duration = Duration::from_secs(7200);

impl WechatSimulator {
    pub fn new(app_id: &str, app_secret: &str) -> WechatSimulator {
        let calls = ["jscode2session", "stable_token", "getuserphonenumber", "upload_shipping_info", "subscribe_send"]
            .into_iter()
            .map(|k| (k, AtomicU64::new(0)))
            .collect();
        WechatSimulator {
            app_id: app_id.to_owned(),
            app_secret: app_secret.to_owned(),
            used_codes: Mutex::new(HashSet::new()),
            flaked: Mutex::new(HashSet::new()),
            access_token: Mutex::new(None),
            calls,
            shipping_fail_next: AtomicU64::new(0),
            shipping: Mutex::new(Vec::new()),
            subscribe_fail_next: AtomicU64::new(0),
            messages: Mutex::new(Vec::new()),
        }
    }

    /// The openid the simulator gives login name `name`: 28 characters, like WeChat's.
    pub fn openid_for(app_id: &str, name: &str) -> String {
        let digest = sha256_hex(format!("wxshop-simulator:{app_id}:{name}").as_bytes());
        format!("o{}", &URL_SAFE_NO_PAD.encode(digest.as_bytes())[..27])
    }

    fn count(&self, api: &'static str) {
        if let Some(counter) = self.calls.get(api) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn credentials_ok(&self, appid: &str, secret: &str) -> Option<Value> {
        if appid != self.app_id {
            return Some(error(40013, "invalid appid"));
        }
        if secret != self.app_secret {
            return Some(error(40125, "invalid appsecret"));
        }
        None
    }

    fn valid_access_token(&self, token: &str) -> bool {
        let current = self.access_token.lock().unwrap();
        current.as_ref().is_some_and(|(t, expires)| t == token && Instant::now() < *expires)
    }
}

pub fn router(sim: Arc<WechatSimulator>) -> Router {
    Router::new()
        .route("/sns/jscode2session", get(jscode2session))
        .route("/cgi-bin/stable_token", post(stable_token))
        .route("/wxa/business/getuserphonenumber", post(get_user_phone_number))
        .route("/wxa/sec/order/upload_shipping_info", post(upload_shipping_info))
        .route("/_shipping", get(shipping))
        .route("/cgi-bin/message/subscribe/send", post(subscribe_send))
        .route("/_messages", get(messages))
        .route("/_control", post(control))
        .route("/_stats", get(stats))
        .with_state(sim)
}

fn error(errcode: i64, errmsg: &str) -> Value {
    json!({ "errcode": errcode, "errmsg": format!("{errmsg} (simulated), rid: {}", random_token(6)) })
}

#[derive(Deserialize)]
struct SessionQuery {
    appid: Option<String>,
    secret: Option<String>,
    js_code: Option<String>,
    grant_type: Option<String>,
}

async fn jscode2session(State(sim): State<Arc<WechatSimulator>>, Query(q): Query<SessionQuery>) -> Json<Value> {
    sim.count("jscode2session");
    if let Some(e) = sim.credentials_ok(q.appid.as_deref().unwrap_or(""), q.secret.as_deref().unwrap_or("")) {
        return Json(e);
    }
    if q.grant_type.as_deref() != Some("authorization_code") {
        return Json(error(40002, "invalid grant_type"));
    }
    let code = q.js_code.unwrap_or_default();
    if code.is_empty() {
        return Json(error(41008, "missing code"));
    }
    match code.as_str() {
        "invalid" => return Json(error(40029, "invalid code")),
        "ratelimit" => return Json(error(45011, "api minute-quota reach limit")),
        "busy" => return Json(error(-1, "system error")),
        _ => {}
    }
    if code.starts_with("flaky-") && sim.flaked.lock().unwrap().insert(code.clone()) {
        return Json(error(-1, "system error"));
    }
    if !sim.used_codes.lock().unwrap().insert(code.clone()) {
        return Json(error(40163, "code been used"));
    }
    let name = code.split(':').next().unwrap_or_default();
    let mut session_key = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut session_key);
    Json(json!({
        "openid": WechatSimulator::openid_for(&sim.app_id, name),
        "session_key": STANDARD.encode(session_key),
    }))
}

#[derive(Deserialize)]
struct StableTokenRequest {
    grant_type: Option<String>,
    appid: Option<String>,
    secret: Option<String>,
    #[serde(default)]
    force_refresh: bool,
}

async fn stable_token(State(sim): State<Arc<WechatSimulator>>, body: Option<Json<StableTokenRequest>>) -> Json<Value> {
    sim.count("stable_token");
    let Some(Json(req)) = body else { return Json(error(47001, "data format error")) };
    if let Some(e) = sim.credentials_ok(req.appid.as_deref().unwrap_or(""), req.secret.as_deref().unwrap_or("")) {
        return Json(e);
    }
    if req.grant_type.as_deref() != Some("client_credential") {
        return Json(error(40002, "invalid grant_type"));
    }
    let mut current = sim.access_token.lock().unwrap();
    let now = Instant::now();
    let fresh = current.as_ref().filter(|(_, expires)| now < *expires && !req.force_refresh).cloned();
    let (token, expires) = fresh.unwrap_or_else(|| (random_token(48), now + ACCESS_TOKEN_TTL));
    *current = Some((token.clone(), expires));
    Json(json!({ "access_token": token, "expires_in": expires.saturating_duration_since(now).as_secs() }))
}

#[derive(Deserialize)]
struct AccessTokenQuery {
    access_token: Option<String>,
}

#[derive(Deserialize)]
struct PhoneRequest {
    code: Option<String>,
}

async fn get_user_phone_number(
    State(sim): State<Arc<WechatSimulator>>,
    Query(q): Query<AccessTokenQuery>,
    body: Option<Json<PhoneRequest>>,
) -> Json<Value> {
    sim.count("getuserphonenumber");
    if !sim.valid_access_token(q.access_token.as_deref().unwrap_or("")) {
        return Json(error(40001, "invalid credential, access_token is invalid or not latest"));
    }
    let code = body.and_then(|Json(b)| b.code).unwrap_or_default();
    let Some(digits) = code.strip_prefix("phone-") else { return Json(error(40029, "invalid code")) };
    if !(5..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Json(error(40029, "invalid code"));
    }
    if !sim.used_codes.lock().unwrap().insert(code.clone()) {
        return Json(error(40163, "code been used"));
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    Json(json!({
        "errcode": 0,
        "errmsg": "ok",
        "phone_info": {
            "phoneNumber": digits,
            "purePhoneNumber": digits,
            "countryCode": "86",
            "watermark": { "timestamp": now, "appid": sim.app_id },
        },
    }))
}

async fn upload_shipping_info(
    State(sim): State<Arc<WechatSimulator>>,
    Query(q): Query<AccessTokenQuery>,
    body: Option<Json<Value>>,
) -> Json<Value> {
    sim.count("upload_shipping_info");
    if !sim.valid_access_token(q.access_token.as_deref().unwrap_or("")) {
        return Json(error(40001, "invalid credential, access_token is invalid or not latest"));
    }
    let Some(Json(body)) = body else { return Json(error(47001, "data format error")) };
    let has_key = body.pointer("/order_key/out_trade_no").and_then(Value::as_str).is_some()
        || body.pointer("/order_key/transaction_id").and_then(Value::as_str).is_some();
    let shipped = body.get("shipping_list").and_then(Value::as_array).is_some_and(|l| !l.is_empty());
    if !has_key || !shipped || body.pointer("/payer/openid").and_then(Value::as_str).is_none() {
        return Json(error(47001, "data format error"));
    }
    let failing = sim.shipping_fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
    if failing {
        return Json(error(-1, "system error"));
    }
    sim.shipping.lock().unwrap().push(body);
    Json(json!({ "errcode": 0, "errmsg": "ok" }))
}

async fn shipping(State(sim): State<Arc<WechatSimulator>>) -> Json<Value> {
    Json(Value::Array(sim.shipping.lock().unwrap().clone()))
}

async fn control(State(sim): State<Arc<WechatSimulator>>, Json(body): Json<Value>) -> Json<Value> {
    if let Some(n) = body.get("shipping_fail_next").and_then(Value::as_u64) {
        sim.shipping_fail_next.store(n, Ordering::SeqCst);
    }
    if let Some(n) = body.get("subscribe_fail_next").and_then(Value::as_u64) {
        sim.subscribe_fail_next.store(n, Ordering::SeqCst);
    }
    Json(json!({
        "shipping_fail_next": sim.shipping_fail_next.load(Ordering::SeqCst),
        "subscribe_fail_next": sim.subscribe_fail_next.load(Ordering::SeqCst),
    }))
}

async fn subscribe_send(
    State(sim): State<Arc<WechatSimulator>>,
    Query(q): Query<AccessTokenQuery>,
    body: Option<Json<Value>>,
) -> Json<Value> {
    sim.count("subscribe_send");
    if !sim.valid_access_token(q.access_token.as_deref().unwrap_or("")) {
        return Json(error(40001, "invalid credential, access_token is invalid or not latest"));
    }
    let Some(Json(body)) = body else { return Json(error(47001, "data format error")) };
    let touser = body.get("touser").and_then(Value::as_str).unwrap_or("");
    if touser.is_empty() || body.get("template_id").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Json(error(47003, "argument invalid"));
    }
    if touser.ends_with("-nosub") {
        return Json(error(43101, "user refuse to accept the msg"));
    }
    if sim.subscribe_fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
        return Json(error(-1, "system error"));
    }
    sim.messages.lock().unwrap().push(body);
    Json(json!({ "errcode": 0, "errmsg": "ok", "msgid": sim.messages.lock().unwrap().len() }))
}

async fn messages(State(sim): State<Arc<WechatSimulator>>) -> Json<Value> {
    Json(Value::Array(sim.messages.lock().unwrap().clone()))
}

async fn stats(State(sim): State<Arc<WechatSimulator>>) -> Json<Value> {
    let counts: serde_json::Map<String, Value> =
        sim.calls.iter().map(|(k, v)| ((*k).to_owned(), Value::from(v.load(Ordering::Relaxed)))).collect();
    Json(Value::Object(counts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openid_is_stable_per_name_and_app() {
        let a = WechatSimulator::openid_for("wx1", "alice");
        assert_eq!(a, WechatSimulator::openid_for("wx1", "alice"));
        assert_ne!(a, WechatSimulator::openid_for("wx1", "bob"));
        assert_ne!(a, WechatSimulator::openid_for("wx2", "alice"));
        assert_eq!(a.len(), 28);
    }
}
