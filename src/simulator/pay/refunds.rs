//! Refunds (idempotent on `out_refund_no`, never more than the total), refund queries, trade bills and their
//! unsigned download, and `/v3/certificates`.

use std::io::Write;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{beijing, error, now_secs, LedgerRow, PaySimulator, RefundRec};

fn refund_json(sim: &PaySimulator, r: &RefundRec, total: i64, transaction_id: &str) -> Value {
    let mut body = json!({
        "refund_id": r.refund_id,
        "out_refund_no": r.out_refund_no,
        "transaction_id": transaction_id,
        "out_trade_no": r.out_trade_no,
        "channel": "ORIGINAL",
        "user_received_account": "支付用户零钱",
        "create_time": beijing(r.created),
        "status": r.status,
        "funds_account": "AVAILABLE",
        "amount": { "total": total, "refund": r.refund, "payer_total": total, "payer_refund": r.refund,
                    "settlement_refund": r.refund, "settlement_total": total, "discount_refund": 0, "currency": "CNY" },
    });
    if let Some(at) = r.success_time {
        body["success_time"] = json!(beijing(at));
    }
    let _ = sim;
    body
}

pub(super) async fn refund(State(sim): State<Arc<PaySimulator>>, headers: HeaderMap, body: Bytes) -> Response {
    let path = "/v3/refund/domestic/refunds";
    if let Some(answer) = sim.authenticate("POST", path, &headers, &body) {
        return answer;
    }
    if let Some(answer) = sim.injected(path).await {
        return answer;
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "请求体不是合法的JSON");
    };
    let out_refund_no = request["out_refund_no"].as_str().unwrap_or("").to_owned();
    let out_trade_no = request["out_trade_no"].as_str().unwrap_or("").to_owned();
    let (refund, total) = (
        request.pointer("/amount/refund").and_then(Value::as_i64),
        request.pointer("/amount/total").and_then(Value::as_i64),
    );
    let (Some(refund), Some(total)) = (refund, total) else {
        return error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "amount参数错误");
    };
    if out_refund_no.is_empty() || out_refund_no.len() > 64 || refund < 1 {
        return error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "参数错误");
    }
    let mut state = sim.state();
    if let Some(existing) = state.refunds.get(&out_refund_no) {
        if existing.request != request {
            return error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", "退款单号重复，且参数不一致");
        }
        let txn = &state.txns[&existing.out_trade_no];
        let body = refund_json(&sim, existing, txn.total, txn.transaction_id.as_deref().unwrap_or_default());
        drop(state);
        return sim.signed(&headers, StatusCode::OK, body.to_string().into_bytes());
    }
    let Some(txn) = state.txns.get(&out_trade_no).cloned() else {
        return error(StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS", "订单不存在");
    };
    if !matches!(txn.state, "SUCCESS" | "REFUND") {
        return error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", "订单未支付");
    }
    if total != txn.total {
        return error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "订单金额与原订单金额不一致");
    }
    let mine: Vec<&RefundRec> = state.refunds.values().filter(|r| r.out_trade_no == out_trade_no).collect();
    let refunded: i64 = mine.iter().filter(|r| r.status != "CLOSED").map(|r| r.refund).sum();
    if mine.len() >= 50 {
        return error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", "退款次数超过限制");
    }
    if refunded + refund > txn.total {
        return error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", "申请退款金额超过订单可退金额");
    }
    let record = RefundRec {
        request: request.clone(),
        out_refund_no: out_refund_no.clone(),
        refund_id: format!(
            "5030{}",
            crate::crypto::random_token(24)
                .chars()
                .filter(char::is_ascii_digit)
                .chain("0000000000000000".chars())
                .take(25)
                .collect::<String>()
        ),
        out_trade_no: out_trade_no.clone(),
        refund,
        status: "PROCESSING".into(),
        created: now_secs(),
        success_time: None,
    };
    let body = refund_json(&sim, &record, txn.total, txn.transaction_id.as_deref().unwrap_or_default());
    state.refunds.insert(out_refund_no.clone(), record);
    let (outcome, delay, scale) =
        (state.knobs.refund_outcome.clone(), state.knobs.refund_delay_ms, state.knobs.time_scale);
    let notify_url = request["notify_url"].as_str().map(str::to_owned);
    drop(state);
    let finisher = sim.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis((delay as f64 * scale.max(0.0)) as u64)).await;
        finisher.finish_refund(&out_refund_no, &outcome, notify_url);
    });
    sim.signed(&headers, StatusCode::OK, body.to_string().into_bytes())
}

impl PaySimulator {
    /// A refund reaches `outcome`; the ledger and the transaction follow a success; the notification goes out.
    fn finish_refund(self: &Arc<Self>, out_refund_no: &str, outcome: &str, notify_url: Option<String>) {
        let mut state = self.state();
        let now = now_secs();
        let Some(record) = state.refunds.get_mut(out_refund_no) else { return };
        record.status = outcome.to_owned();
        if outcome == "SUCCESS" {
            record.success_time = Some(now);
        }
        let record = record.clone();
        let txn = state.txns.get_mut(&record.out_trade_no).expect("a refund names a transaction");
        if outcome == "SUCCESS" {
            txn.state = "REFUND";
        }
        let txn = txn.clone();
        if outcome == "SUCCESS" {
            state.ledger.push(LedgerRow {
                at: now,
                out_trade_no: txn.out_trade_no.clone(),
                transaction_id: txn.transaction_id.clone().unwrap_or_default(),
                openid: txn.openid.clone(),
                total: txn.total,
                refund: Some((record.out_refund_no.clone(), record.refund_id.clone(), record.refund)),
            });
        }
        drop(state);
        let mut plain = json!({
            "mchid": self.mch_id,
            "out_trade_no": record.out_trade_no,
            "transaction_id": txn.transaction_id,
            "out_refund_no": record.out_refund_no,
            "refund_id": record.refund_id,
            "refund_status": outcome,
            "user_received_account": "支付用户零钱",
            "amount": { "total": txn.total, "refund": record.refund, "payer_total": txn.total, "payer_refund": record.refund },
        });
        if let Some(at) = record.success_time {
            plain["success_time"] = json!(beijing(at));
        }
        let url = notify_url.unwrap_or(txn.notify_url);
        self.deliver(format!("REFUND.{outcome}"), "refund", record.out_refund_no.clone(), plain, url);
    }
}

pub(super) async fn query_refund(
    State(sim): State<Arc<PaySimulator>>,
    Path(no): Path<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/v3/refund/domestic/refunds/{no}");
    if let Some(answer) = sim.authenticate("GET", &path, &headers, b"") {
        return answer;
    }
    if let Some(answer) = sim.injected(&path).await {
        return answer;
    }
    let state = sim.state();
    let Some(record) = state.refunds.get(&no) else {
        return error(StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS", "退款单不存在");
    };
    let txn = &state.txns[&record.out_trade_no];
    let body = refund_json(&sim, record, txn.total, txn.transaction_id.as_deref().unwrap_or_default());
    drop(state);
    sim.signed(&headers, StatusCode::OK, body.to_string().into_bytes())
}

#[derive(Deserialize)]
pub(super) struct BillQuery {
    bill_date: Option<String>,
}

fn yuan(fen: i64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

pub(super) async fn trade_bill(
    State(sim): State<Arc<PaySimulator>>,
    RawQuery(raw): RawQuery,
    Query(q): Query<BillQuery>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/v3/bill/tradebill?{}", raw.unwrap_or_default());
    if let Some(answer) = sim.authenticate("GET", &path, &headers, b"") {
        return answer;
    }
    if let Some(answer) = sim.injected("/v3/bill/tradebill").await {
        return answer;
    }
    let Some(date) =
        q.bill_date.filter(|d| time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]")).is_ok())
    else {
        return error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "bill_date参数错误");
    };
    let mut state = sim.state();
    if state.knobs.statement_creating {
        return error(StatusCode::BAD_REQUEST, "STATEMENT_CREATING", "账单生成中");
    }
    let rows: Vec<&LedgerRow> = state.ledger.iter().filter(|r| beijing(r.at).starts_with(&date)).collect();
    if rows.is_empty() {
        return error(StatusCode::BAD_REQUEST, "NO_STATEMENT_EXIST", "请求的账单文件不存在");
    }
    let mut text = String::from("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注\n");
    let (mut paid, mut refunded) = (0i64, 0i64);
    for row in &rows {
        let when = beijing(row.at).replace('T', " ").replace("+08:00", "");
        let (status, refund_id, out_refund_no, refund) = match &row.refund {
            Some((no, id, amount)) => ("REFUND", id.as_str(), no.as_str(), *amount),
            None => ("SUCCESS", "0", "0", 0),
        };
        if row.refund.is_some() {
            refunded += refund
        } else {
            paid += row.total
        }
        text.push_str(&format!(
            "`{when},`{},`{},`0,`,`{},`{},`{},`JSAPI,`{status},`OTHERS,`CNY,`{},`0.00,`{refund_id},`{out_refund_no},`{},`0.00,`{},`{},`wxshop order,`,`0.00000,`0.60%,`{},`{},`\n",
            sim.app_id, sim.mch_id, row.transaction_id, row.out_trade_no, row.openid,
            yuan(if row.refund.is_some() { 0 } else { row.total }), yuan(refund),
            if row.refund.is_some() { "ORIGINAL" } else { "" }, if row.refund.is_some() { "SUCCESS" } else { "" },
            yuan(row.total), yuan(refund),
        ));
    }
    text.push_str("总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\n");
    text.push_str(&format!(
        "`{},`{},`{},`0.00,`0.00000,`{},`{}\n",
        rows.len(),
        yuan(paid),
        yuan(refunded),
        yuan(paid),
        yuan(refunded)
    ));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = gz.write_all(text.as_bytes());
    let file = gz.finish().unwrap_or_default();
    use sha1::Digest;
    let mut hash: String = sha1::Sha1::digest(&file).iter().map(|b| format!("{b:02x}")).collect();
    if state.knobs.bill_tamper {
        hash = hash.chars().rev().collect();
    }
    let token = crate::crypto::random_token(24);
    state.bills.insert(token.clone(), file);
    drop(state);
    let body = json!({
        "hash_type": "SHA1",
        "hash_value": hash,
        "download_url": format!("{}/v3/billdownload/file?token={token}&tartype=gzip", sim.base_url),
    });
    sim.signed(&headers, StatusCode::OK, body.to_string().into_bytes())
}

#[derive(Deserialize)]
pub(super) struct DownloadQuery {
    token: Option<String>,
}

/// The bill file: a signed request, an unsigned answer (as WeChat does).
pub(super) async fn download_bill(
    State(sim): State<Arc<PaySimulator>>,
    RawQuery(raw): RawQuery,
    Query(q): Query<DownloadQuery>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/v3/billdownload/file?{}", raw.unwrap_or_default());
    if let Some(answer) = sim.authenticate("GET", &path, &headers, b"") {
        return answer;
    }
    match q.token.and_then(|t| sim.state().bills.get(&t).cloned()) {
        Some(file) => ([("content-type", "application/octet-stream")], Bytes::from(file)).into_response(),
        None => error(StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS", "账单不存在"),
    }
}

/// Public-key mode: no platform certificates to download (what new merchants get).
pub(super) async fn certificates(
    State(sim): State<Arc<PaySimulator>>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let path = match raw {
        Some(q) => format!("/v3/certificates?{q}"),
        None => "/v3/certificates".into(),
    };
    if let Some(answer) = sim.authenticate("GET", &path, &headers, b"") {
        return answer;
    }
    error(StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS", "无可用的平台证书，请在商户平台-API安全申请使用微信支付公钥")
}
