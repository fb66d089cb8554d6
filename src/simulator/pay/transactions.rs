//! JSAPI prepay, query, close, and the cashier (the phone's side of `wx.requestPayment`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rsa::pkcs1v15::Signature;
use rsa::signature::Verifier;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{beijing, error, now_secs, LedgerRow, PaySimulator, Txn};

/// A prepay id lives 2 h.
const PREPAY_TTL_SECS: i64 = 7200;

fn path_and_query(path: &str, query: &Option<String>) -> String {
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    }
}

fn out_trade_no_ok(no: &str) -> bool {
    (6..=32).contains(&no.len()) && no.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-|*".contains(&b))
}

pub(super) async fn prepay(State(sim): State<Arc<PaySimulator>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(answer) = sim.authenticate("POST", "/v3/pay/transactions/jsapi", &headers, &body) {
        return answer;
    }
    if let Some(answer) = sim.injected("/v3/pay/transactions/jsapi").await {
        return answer;
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "请求体不是合法的JSON");
    };
    let text = |k: &str| request.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let (appid, out_trade_no, description, notify_url) =
        (text("appid"), text("out_trade_no"), text("description"), text("notify_url"));
    if text("mchid") != sim.mch_id {
        return error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "http header中的mchid与post payload中的mchid不匹配");
    }
    if appid != sim.app_id {
        return error(StatusCode::BAD_REQUEST, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配");
    }
    let total = request.pointer("/amount/total").and_then(Value::as_i64).unwrap_or(0);
    let openid = request.pointer("/payer/openid").and_then(Value::as_str).unwrap_or("").to_owned();
    let four_byte = description.chars().any(|c| c.len_utf8() > 3);
    if !out_trade_no_ok(&out_trade_no)
        || description.is_empty()
        || description.len() > 127
        || four_byte
        || total < 1
        || openid.is_empty()
        || notify_url.is_empty()
        || notify_url.len() > 255
    {
        return error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "参数错误");
    }
    let now = now_secs();
    let time_expire = match request.get("time_expire").and_then(Value::as_str) {
        Some(t) => match time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339) {
            Ok(t) => t.unix_timestamp().max(now + 60),
            Err(_) => return error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "time_expire格式错误"),
        },
        None => now + PREPAY_TTL_SECS,
    };
    let mut state = sim.state();
    if let Some(txn) = state.txns.get_mut(&out_trade_no) {
        if txn.request != request {
            return error(StatusCode::FORBIDDEN, "OUT_TRADE_NO_USED", "商户订单号重复");
        }
        match txn.state {
            "SUCCESS" | "REFUND" => return error(StatusCode::BAD_REQUEST, "ORDERPAID", "订单已支付"),
            "CLOSED" => return error(StatusCode::BAD_REQUEST, "ORDER_CLOSED", "订单已关闭"),
            _ => {}
        }
        if now - txn.prepay_at >= PREPAY_TTL_SECS {
            txn.prepay_id = new_prepay_id();
            txn.prepay_at = now;
        }
        let prepay_id = txn.prepay_id.clone();
        state.prepays.insert(prepay_id.clone(), out_trade_no);
        drop(state);
        return sim.signed(&headers, StatusCode::OK, json!({ "prepay_id": prepay_id }).to_string().into_bytes());
    }
    let prepay_id = new_prepay_id();
    state.txns.insert(
        out_trade_no.clone(),
        Txn {
            request,
            appid,
            out_trade_no: out_trade_no.clone(),
            prepay_id: prepay_id.clone(),
            prepay_at: now,
            time_expire,
            total,
            openid,
            notify_url,
            state: "NOTPAY",
            transaction_id: None,
            success_time: None,
        },
    );
    state.prepays.insert(prepay_id.clone(), out_trade_no);
    drop(state);
    sim.signed(&headers, StatusCode::OK, json!({ "prepay_id": prepay_id }).to_string().into_bytes())
}

fn new_prepay_id() -> String {
    format!("wx{}{}", time::OffsetDateTime::now_utc().unix_timestamp(), crate::crypto::random_token(12).to_lowercase())
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(36)
        .collect()
}

/// The Transaction JSON of `txn` (what the query answers and the notification carries).
pub(super) fn transaction_json(sim: &PaySimulator, txn: &Txn) -> Value {
    let mut body = json!({
        "appid": txn.appid,
        "mchid": sim.mch_id,
        "out_trade_no": txn.out_trade_no,
        "trade_type": "JSAPI",
        "trade_state": txn.state,
        "trade_state_desc": match txn.state { "SUCCESS" => "支付成功", "CLOSED" => "已关闭", "REFUND" => "转入退款", _ => "未支付" },
        "amount": { "total": txn.total, "currency": "CNY" },
        "attach": "",
    });
    if let (Some(id), Some(at)) = (&txn.transaction_id, txn.success_time) {
        body["transaction_id"] = json!(id);
        body["success_time"] = json!(beijing(at));
        body["bank_type"] = json!("OTHERS");
        body["payer"] = json!({ "openid": txn.openid });
        body["amount"] =
            json!({ "total": txn.total, "payer_total": txn.total, "currency": "CNY", "payer_currency": "CNY" });
    }
    body
}

pub(super) async fn query(
    State(sim): State<Arc<PaySimulator>>,
    Path(no): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let path = format!("/v3/pay/transactions/out-trade-no/{no}");
    if let Some(answer) = sim.authenticate("GET", &path_and_query(&path, &raw), &headers, b"") {
        return answer;
    }
    if let Some(answer) = sim.injected(&path).await {
        return answer;
    }
    let mchid = url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "mchid")
        .map(|(_, v)| v.into_owned());
    if mchid.as_deref() != Some(sim.mch_id.as_str()) {
        return error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "mchid参数错误");
    }
    let body = match sim.state().txns.get(&no) {
        Some(txn) => transaction_json(&sim, txn),
        None => return error(StatusCode::NOT_FOUND, "ORDER_NOT_EXIST", "订单不存在"),
    };
    sim.signed(&headers, StatusCode::OK, body.to_string().into_bytes())
}

pub(super) async fn close(
    State(sim): State<Arc<PaySimulator>>,
    Path(no): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/v3/pay/transactions/out-trade-no/{no}/close");
    if let Some(answer) = sim.authenticate("POST", &path, &headers, &body) {
        return answer;
    }
    if let Some(answer) = sim.injected(&path).await {
        return answer;
    }
    let mchid = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v["mchid"].as_str().map(str::to_owned));
    if mchid.as_deref() != Some(sim.mch_id.as_str()) {
        return error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "mchid参数错误");
    }
    let mut state = sim.state();
    let knobs = state.knobs.clone();
    let Some(txn) = state.txns.get_mut(&no) else {
        return error(StatusCode::NOT_FOUND, "ORDER_NOT_EXIST", "订单不存在");
    };
    match txn.state {
        "SUCCESS" | "REFUND" => return error(StatusCode::BAD_REQUEST, "ORDERPAID", "订单已支付"),
        "CLOSED" => return error(StatusCode::BAD_REQUEST, "ORDER_CLOSED", "订单已关闭"),
        _ => {}
    }
    if knobs.user_paying {
        return error(StatusCode::BAD_REQUEST, "USER_PAYING", "用户支付中");
    }
    if knobs.pay_during_close {
        // The user entered the password as the close came in: WeChat answers FREQUENCY_LIMITED, the payment goes on.
        let paid = pay(txn);
        state.ledger.push(paid.clone());
        let txn = txn_clone(&state, &no);
        drop(state);
        sim.notify_transaction(txn);
        return error(StatusCode::TOO_MANY_REQUESTS, "FREQUENCY_LIMITED", "频率超限");
    }
    if knobs.close_ignored_next > 0 {
        state.knobs.close_ignored_next -= 1;
    } else {
        txn.state = "CLOSED";
    }
    drop(state);
    sim.signed(&headers, StatusCode::NO_CONTENT, Vec::new())
}

fn txn_clone(state: &super::State, no: &str) -> Txn {
    state.txns.get(no).cloned().expect("just updated")
}

/// Marks `txn` paid; its ledger row.
fn pay(txn: &mut Txn) -> LedgerRow {
    let now = now_secs();
    let digits: String = (0..18).map(|_| char::from(b'0' + rand::random_range(0..10u8))).collect();
    let id = format!("4200{digits}");
    txn.state = "SUCCESS";
    txn.transaction_id = Some(id.clone());
    txn.success_time = Some(now);
    LedgerRow {
        at: now,
        out_trade_no: txn.out_trade_no.clone(),
        transaction_id: id,
        openid: txn.openid.clone(),
        total: txn.total,
        refund: None,
    }
}

#[derive(Deserialize)]
pub(super) struct CashierRequest {
    #[serde(rename = "timeStamp")]
    time_stamp: String,
    #[serde(rename = "nonceStr")]
    nonce_str: String,
    package: String,
    #[serde(rename = "signType")]
    sign_type: String,
    #[serde(rename = "paySign")]
    pay_sign: String,
    action: String,
}

fn err_msg(message: &str) -> Response {
    Json(json!({ "errMsg": message })).into_response()
}

/// The phone's side of `wx.requestPayment`: verifies `paySign` with the merchant's key as WeChat does, then pays
/// (or cancels) as the prepay's payer.
pub(super) async fn cashier(State(sim): State<Arc<PaySimulator>>, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<CashierRequest>(&body) else {
        return (StatusCode::BAD_REQUEST, Json(json!({ "errMsg": "requestPayment:fail parameter error" })))
            .into_response();
    };
    if request.sign_type != "RSA" {
        return err_msg("requestPayment:fail invalid signType");
    }
    let Some(prepay_id) = request.package.strip_prefix("prepay_id=") else {
        return err_msg("requestPayment:fail invalid package");
    };
    let mut state = sim.state();
    let Some(no) = state.prepays.get(prepay_id).cloned() else {
        return err_msg("requestPayment:fail prepay_id not found");
    };
    let txn = state.txns.get_mut(&no).expect("a prepay names a transaction");
    let message = format!("{}\n{}\n{}\n{}\n", txn.appid, request.time_stamp, request.nonce_str, request.package);
    let signature = STANDARD.decode(&request.pay_sign).ok().and_then(|b| Signature::try_from(b.as_slice()).ok());
    if signature.is_none_or(|s| sim.merchant_key.verify(message.as_bytes(), &s).is_err()) {
        return err_msg("requestPayment:fail 支付验证签名失败");
    }
    let now = now_secs();
    if txn.prepay_id != prepay_id || now - txn.prepay_at >= PREPAY_TTL_SECS {
        return err_msg("requestPayment:fail prepay_id expired");
    }
    match txn.state {
        "SUCCESS" | "REFUND" => return err_msg("requestPayment:fail 该订单已支付"),
        "CLOSED" => return err_msg("requestPayment:fail 该订单已关闭"),
        _ => {}
    }
    if now > txn.time_expire {
        return err_msg("requestPayment:fail 订单已过期");
    }
    match request.action.as_str() {
        "cancel" => err_msg("requestPayment:fail cancel"),
        "pay" => {
            let row = pay(txn);
            state.ledger.push(row);
            let txn = txn_clone(&state, &no);
            drop(state);
            sim.notify_transaction(txn);
            err_msg("requestPayment:ok")
        }
        _ => (StatusCode::BAD_REQUEST, Json(json!({ "errMsg": "requestPayment:fail unknown action" }))).into_response(),
    }
}

/// The simulator's view of a transaction (an extension for tests).
pub(super) async fn inspect(State(sim): State<Arc<PaySimulator>>, Path(no): Path<String>) -> Response {
    let state = sim.state();
    match state.txns.get(&no) {
        Some(txn) => {
            let mut body = transaction_json(&sim, txn);
            let refunds: Vec<Value> = state
                .refunds
                .values()
                .filter(|r| r.out_trade_no == no)
                .map(|r| json!({ "out_refund_no": r.out_refund_no, "refund": r.refund, "status": r.status }))
                .collect();
            body["refunds"] = json!(refunds);
            body["prepay_id"] = json!(txn.prepay_id);
            Json(body).into_response()
        }
        None => error(StatusCode::NOT_FOUND, "ORDER_NOT_EXIST", "订单不存在"),
    }
}
