//! WeChat Pay end to end, through the real client over HTTP against the simulator (real RSA signatures, real
//! AES-GCM): paying, notifications (duplicates, forgeries, probes, tampering), lost notifications, close before
//! cancel, late payments, refunds, reconciliation, shipping information, completion.

use std::time::Duration;

use serde_json::{json, Value};
use wxshop::payments::crypto::{ApiV3Key, MerchantKey};
use wxshop::simulator::pay::keys;

use crate::helpers::{backends, eventually, spawn_app, spawn_app_with, TestApp};

/// A signed-in buyer with an address: (token, address id).
pub async fn buyer(app: &TestApp, name: &str) -> (String, i64) {
    let token = app.login(name).await.access_token;
    let address = app.address_id(&token).await;
    (token, address)
}

/// A new unpaid order of one SKU 1; its id.
pub async fn new_order(app: &TestApp, token: &str, address_id: i64) -> i64 {
    let key = uuid::Uuid::new_v4().to_string();
    let body = json!({"items": [{"sku_id": 1, "quantity": 1}], "address_id": address_id});
    let (status, _, order) = app.post_keyed("/api/v1/orders", &body, token, &key).await;
    assert_eq!(status, 201, "{order}");
    order["id"].as_i64().unwrap()
}

/// `POST /api/v1/orders/{id}/pay`: the five `wx.requestPayment` fields.
pub async fn start_payment(app: &TestApp, token: &str, order_id: i64) -> Value {
    let (status, fields) = app.post(&format!("/api/v1/orders/{order_id}/pay"), &json!({}), Some(token)).await;
    assert_eq!(status, 200, "{fields}");
    fields
}

/// The simulator's cashier, as the phone: `pay` or `cancel`; the `errMsg`.
pub async fn cashier(app: &TestApp, fields: &Value, action: &str) -> String {
    let mut body = fields.clone();
    body["action"] = json!(action);
    let (status, answer) = app.post("/__simulator/pay/cashier", &body, None).await;
    assert_eq!(status, 200, "{answer}");
    answer["errMsg"].as_str().unwrap().to_owned()
}

/// Sets simulator fault switches.
pub async fn knobs(app: &TestApp, knobs: Value) {
    let (status, body) = app.post("/__simulator/pay/control", &knobs, None).await;
    assert_eq!(status, 200, "{body}");
}

pub async fn order_status(app: &TestApp, order_id: i64) -> String {
    sqlx::query_scalar("SELECT status FROM shop_order WHERE id = ?")
        .bind(order_id)
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap()
}

pub async fn out_trade_no(app: &TestApp, order_id: i64) -> String {
    sqlx::query_scalar("SELECT order_no FROM shop_order WHERE id = ?")
        .bind(order_id)
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap()
}

pub async fn count(app: &TestApp, sql: &str, order_id: i64) -> i64 {
    sqlx::query_scalar(sql).bind(order_id).fetch_one(&app.state.db.pool).await.unwrap()
}

async fn paid_transitions(app: &TestApp, order_id: i64) -> i64 {
    count(app, "SELECT COUNT(*) FROM order_event WHERE order_id = ? AND to_status = 'paid'", order_id).await
}

pub async fn becomes(app: &TestApp, order_id: i64, status: &str) -> bool {
    eventually(Duration::from_secs(10), || async { order_status(app, order_id).await == status }).await
}

async fn deliveries(app: &TestApp) -> Vec<Value> {
    let (_, body) = app.get_json("/__simulator/pay/notifications").await;
    body.as_array().unwrap().clone()
}

/// The simulator's deliveries once `n` are recorded (or what there is after 5 s). The simulator records a delivery
/// when our answer reaches it, which is after the order is paid: an order seen paid does not mean its notification's
/// answer has been recorded yet.
async fn deliveries_when(app: &TestApp, n: usize) -> Vec<Value> {
    eventually(Duration::from_secs(5), || async { deliveries(app).await.len() >= n }).await;
    deliveries(app).await
}

/// Moves an order's payment deadline into the past (for the sweep).
async fn expire(app: &TestApp, order_id: i64) {
    sqlx::query("UPDATE shop_order SET pay_deadline = 0 WHERE id = ?")
        .bind(order_id)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_order_is_paid_through_the_cashier_and_the_signed_notification() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let (token, address) = buyer(&app, "payer").await;
        let (other, _) = buyer(&app, "other").await;
        let order = new_order(&app, &token, address).await;

        let (status, view) = app.get_auth(&format!("/api/v1/orders/{order}/payment"), &token).await;
        assert_eq!((status, view["state"].as_str()), (200, Some("none")), "{view}");
        let fields = start_payment(&app, &token, order).await;
        assert_eq!(fields["signType"], "RSA");
        assert!(fields["package"].as_str().unwrap().starts_with("prepay_id=wx"), "{fields}");
        assert_eq!(fields["timeStamp"].as_str().unwrap().len(), 10, "seconds, as a string");
        // Paying again reuses the stored prepay (no second WeChat Pay order, no OUT_TRADE_NO_USED).
        let again = start_payment(&app, &token, order).await;
        assert_eq!(again["package"], fields["package"]);
        assert_ne!(again["nonceStr"], fields["nonceStr"]);
        // Someone else's order is a 404 on both routes.
        let (status, _) = app.post(&format!("/api/v1/orders/{order}/pay"), &json!({}), Some(&other)).await;
        assert_eq!(status, 404);
        assert_eq!(app.get_auth(&format!("/api/v1/orders/{order}/payment"), &other).await.0, 404);

        // A forged paySign is refused by the cashier as WeChat would.
        let mut forged = fields.clone();
        forged["paySign"] = again["paySign"].clone();
        assert_eq!(cashier(&app, &forged, "pay").await, "requestPayment:fail 支付验证签名失败");
        assert_eq!(cashier(&app, &fields, "cancel").await, "requestPayment:fail cancel");
        assert_eq!(order_status(&app, order).await, "pending_payment");
        assert_eq!(cashier(&app, &fields, "pay").await, "requestPayment:ok");
        assert!(becomes(&app, order, "paid").await);

        let (status, view) = app.get_auth(&format!("/api/v1/orders/{order}/payment"), &token).await;
        assert_eq!(status, 200);
        assert_eq!(view["state"], "paid");
        assert_eq!(view["order_status"], "paid");
        assert!(view["transaction_id"].as_str().unwrap().starts_with("4200"));
        assert_eq!(paid_transitions(&app, order).await, 1);
        let sent = deliveries_when(&app, 1).await;
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!((sent[0]["kind"].as_str(), sent[0]["status"].as_u64()), (Some("valid"), Some(204)));
        // Paid: no second payment.
        let (status, body) = app.post(&format!("/api/v1/orders/{order}/pay"), &json!({}), Some(&token)).await;
        assert_eq!((status, body["code"].as_str()), (409, Some("invalid_order_state")), "{body}");
    }
}

#[tokio::test]
async fn no_prepay_when_the_window_is_closing_or_the_order_is_not_payable() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let (token, address) = buyer(&app, "late").await;
        let order = new_order(&app, &token, address).await;
        let soon = wxshop::db::now_ms() + 60_000;
        sqlx::query("UPDATE shop_order SET pay_deadline = ? WHERE id = ?")
            .bind(soon)
            .bind(order)
            .execute(&app.state.db.pool)
            .await
            .unwrap();
        let (status, body) = app.post(&format!("/api/v1/orders/{order}/pay"), &json!({}), Some(&token)).await;
        assert_eq!((status, body["code"].as_str()), (409, Some("payment_window_closed")), "{body}");
        let cancelled = new_order(&app, &token, address).await;
        let (status, _) = app.post(&format!("/api/v1/orders/{cancelled}/cancel"), &json!({}), Some(&token)).await;
        assert_eq!(status, 200);
        let (status, body) = app.post(&format!("/api/v1/orders/{cancelled}/pay"), &json!({}), Some(&token)).await;
        assert_eq!((status, body["code"].as_str()), (409, Some("invalid_order_state")), "{body}");
        assert_eq!(count(&app, "SELECT COUNT(*) FROM payment WHERE order_id = ?", cancelled).await, 0);
    }
}

#[tokio::test]
async fn forged_stale_unknown_key_and_probe_notifications_are_refused_then_the_real_one_applies() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let (token, address) = buyer(&app, "probed").await;
        let order = new_order(&app, &token, address).await;
        let fields = start_payment(&app, &token, order).await;
        knobs(
            &app,
            json!({"time_scale": 0.001, "probe_next": 1, "bad_signature_next": 1, "stale_timestamp_next": 1, "unknown_serial_next": 1}),
        )
        .await;
        assert_eq!(cashier(&app, &fields, "pay").await, "requestPayment:ok");
        assert!(becomes(&app, order, "paid").await);
        let sent = deliveries_when(&app, 5).await;
        let kinds: Vec<(&str, u64)> =
            sent.iter().map(|d| (d["kind"].as_str().unwrap(), d["status"].as_u64().unwrap())).collect();
        assert_eq!(
            kinds,
            [("probe", 401), ("bad_signature", 401), ("stale_timestamp", 401), ("unknown_serial", 401), ("valid", 204)],
            "each untrusted delivery is refused (nothing applied), WeChat's retry is accepted"
        );
        assert!(sent.iter().all(|d| d["accepted_invalid"] == false));
        assert_eq!(paid_transitions(&app, order).await, 1);

        // Hand-made forgeries: no headers, and a body that does not match its signature.
        let response = app.client.post(app.url("/api/v1/payments/wechat/notify")).body("{}").send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401);
        let (headers, body) = notification(&app, "TRANSACTION.SUCCESS", "transaction", &json!({"x": 1}), 0);
        let mut request = app.client.post(app.url("/api/v1/payments/wechat/notify"));
        for (name, value) in &headers {
            request = request.header(*name, value);
        }
        let response = request.body(body.replace("encrypt-resource", "encrypt-resourcE")).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "invalid_signature");
    }
}

/// A notification as WeChat Pay makes it, with the simulator's (public) keys: headers and body.
fn notification(
    app: &TestApp,
    event_type: &str,
    original: &str,
    plain: &Value,
    skew: i64,
) -> (Vec<(&'static str, String)>, String) {
    let _ = app;
    let nonce12 = "abcdefghijkl";
    let sealed =
        ApiV3Key::new(keys::API_V3_KEY.as_bytes()).unwrap().seal(nonce12, original, &plain.to_string()).unwrap();
    let body = json!({
        "id": uuid::Uuid::new_v4().to_string(),
        "create_time": "2026-12-01T10:00:00+08:00",
        "resource_type": "encrypt-resource",
        "event_type": event_type,
        "summary": "支付成功",
        "resource": {"original_type": original, "algorithm": "AEAD_AES_256_GCM", "ciphertext": sealed,
                     "associated_data": original, "nonce": nonce12},
    })
    .to_string();
    let timestamp = (wxshop::db::now_ms() / 1000 + skew).to_string();
    let nonce = wxshop::payments::sign::nonce();
    let platform = MerchantKey::from_pkcs8_pem(keys::PUBLIC_KEY_PRIVATE_PEM).unwrap();
    let signature = platform.sign(&wxshop::payments::sign::response_message(&timestamp, &nonce, body.as_bytes()));
    let headers = vec![
        ("wechatpay-timestamp", timestamp),
        ("wechatpay-nonce", nonce),
        ("wechatpay-signature", signature),
        ("wechatpay-serial", keys::PUBLIC_KEY_ID.to_owned()),
        ("wechatpay-signature-type", "WECHATPAY2-SHA256-RSA2048".to_owned()),
    ];
    (headers, body)
}

async fn post_notification(app: &TestApp, headers: &[(&'static str, String)], body: &str) -> u16 {
    let mut request =
        app.client.post(app.url("/api/v1/payments/wechat/notify")).header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    request.body(body.to_owned()).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn fifty_identical_notifications_over_two_instances_make_one_paid_transition() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let peer = app.spawn_peer().await;
        let (token, address) = buyer(&app, "burst").await;
        let order = new_order(&app, &token, address).await;
        let fields = start_payment(&app, &token, order).await;
        knobs(&app, json!({"notify_drop": true})).await;
        assert_eq!(cashier(&app, &fields, "pay").await, "requestPayment:ok");
        // What WeChat's query says now, delivered fifty times at once as one notification, to both instances.
        let (_, mut txn) =
            app.get_json(&format!("/__simulator/pay/transactions/{}", out_trade_no(&app, order).await)).await;
        txn.as_object_mut().unwrap().retain(|k, _| !matches!(k.as_str(), "refunds" | "prepay_id"));
        let (headers, body) = notification(&app, "TRANSACTION.SUCCESS", "transaction", &txn, 0);
        let calls = (0..50).map(|i| {
            let target = if i % 2 == 0 { &app } else { &peer };
            post_notification(target, &headers, &body)
        });
        let statuses = futures_util::future::join_all(calls).await;
        assert!(statuses.iter().all(|s| *s == 204), "{statuses:?}");
        assert_eq!(order_status(&app, order).await, "paid");
        assert_eq!(paid_transitions(&app, order).await, 1);
        assert_eq!(count(&app, "SELECT COUNT(*) FROM payment WHERE order_id = ?", order).await, 1);
        assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM pay_event").await, 1);
        // A stale copy is refused even though its signature is right.
        let (headers, body) = notification(&app, "TRANSACTION.SUCCESS", "transaction", &txn, -400);
        assert_eq!(post_notification(&peer, &headers, &body).await, 401);
    }
}

#[tokio::test]
async fn a_tampered_amount_is_an_anomaly_and_the_order_stays_unpaid() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let (token, address) = buyer(&app, "tamper").await;
        let order = new_order(&app, &token, address).await;
        let fields = start_payment(&app, &token, order).await;
        knobs(&app, json!({"amount_tamper_next": 1})).await;
        assert_eq!(cashier(&app, &fields, "pay").await, "requestPayment:ok");
        let admin = app.admin_token("viewer").await;
        let anomaly = eventually(Duration::from_secs(10), || async {
            let (_, page) = app.get_auth("/admin/api/v1/payments/anomalies", &admin).await;
            page["items"].as_array().is_some_and(|i| i.len() == 1)
        })
        .await;
        assert!(anomaly, "the tampered notification is stored as an anomaly");
        let (_, page) = app.get_auth("/admin/api/v1/payments/anomalies", &admin).await;
        assert_eq!(page["items"][0]["kind"], "amount_mismatch");
        assert_eq!(page["items"][0]["source"], "notify");
        assert_eq!(order_status(&app, order).await, "pending_payment", "not paid on a mismatch");
        assert_eq!(deliveries(&app).await[0]["status"], 204, "stored, so acknowledged");
    }
}

#[tokio::test]
async fn a_lost_notification_costs_a_query_not_the_order() {
    for backend in backends() {
        let app = spawn_app_with(&backend, |c| c.pay.query_min_interval_ms = 0).await;
        let (token, address) = buyer(&app, "lost").await;
        // The poller: the notification never comes; the worker's query finds the payment.
        let order = new_order(&app, &token, address).await;
        let fields = start_payment(&app, &token, order).await;
        knobs(&app, json!({"notify_drop": true})).await;
        assert_eq!(cashier(&app, &fields, "pay").await, "requestPayment:ok");
        sqlx::query("UPDATE payment SET next_check_at = 0 WHERE order_id = ?")
            .bind(order)
            .execute(&app.state.db.pool)
            .await
            .unwrap();
        let paid = wxshop::payments::worker::poll_pending(&app.state).await.unwrap();
        assert_eq!(paid, 1);
        assert_eq!(order_status(&app, order).await, "paid");
        // The front end's return: GET .../payment asks WeChat while pending.
        let second = new_order(&app, &token, address).await;
        let fields = start_payment(&app, &token, second).await;
        assert_eq!(cashier(&app, &fields, "pay").await, "requestPayment:ok");
        let (status, view) = app.get_auth(&format!("/api/v1/orders/{second}/payment"), &token).await;
        assert_eq!(status, 200);
        assert_eq!((view["state"].as_str(), view["order_status"].as_str()), (Some("paid"), Some("paid")), "{view}");
    }
}

#[tokio::test]
async fn the_sweep_closes_before_it_cancels_and_never_cancels_a_payment_in_progress() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let (token, address) = buyer(&app, "sweep").await;
        // Closed at WeChat, then cancelled: the prepay can no longer be paid.
        let closed = new_order(&app, &token, address).await;
        let fields = start_payment(&app, &token, closed).await;
        expire(&app, closed).await;
        wxshop::orders::worker::sweep(&app.state).await.unwrap();
        assert_eq!(order_status(&app, closed).await, "cancelled");
        assert_eq!(cashier(&app, &fields, "pay").await, "requestPayment:fail 该订单已关闭");

        // The user is entering the password as the close comes in: USER_PAYING → not cancelled, then paid.
        let paying = new_order(&app, &token, address).await;
        let fields = start_payment(&app, &token, paying).await;
        expire(&app, paying).await;
        knobs(&app, json!({"user_paying": true})).await;
        wxshop::orders::worker::sweep(&app.state).await.unwrap();
        assert_eq!(order_status(&app, paying).await, "pending_payment", "not cancelled while WeChat says paying");
        knobs(&app, json!({"user_paying": false})).await;
        assert_eq!(cashier(&app, &fields, "pay").await, "requestPayment:ok");
        assert!(becomes(&app, paying, "paid").await);

        // FREQUENCY_LIMITED on close while the payment completes: queried, paid, never cancelled.
        let racing = new_order(&app, &token, address).await;
        start_payment(&app, &token, racing).await;
        expire(&app, racing).await;
        knobs(&app, json!({"pay_during_close": true, "notify_drop": true})).await;
        wxshop::orders::worker::sweep(&app.state).await.unwrap();
        assert_eq!(order_status(&app, racing).await, "paid");
        assert_eq!(
            count(&app, "SELECT COUNT(*) FROM order_event WHERE order_id = ? AND to_status = 'cancelled'", racing)
                .await,
            0
        );

        // The user's own cancel closes first too.
        knobs(&app, json!({"pay_during_close": false})).await;
        let mine = new_order(&app, &token, address).await;
        let fields = start_payment(&app, &token, mine).await;
        let (status, _) = app.post(&format!("/api/v1/orders/{mine}/cancel"), &json!({}), Some(&token)).await;
        assert_eq!(status, 200);
        assert_eq!(cashier(&app, &fields, "pay").await, "requestPayment:fail 该订单已关闭");
    }
}

#[tokio::test]
async fn a_payment_after_cancellation_is_refunded_in_full_exactly_once() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let (token, address) = buyer(&app, "latecomer").await;
        let order = new_order(&app, &token, address).await;
        let fields = start_payment(&app, &token, order).await;
        expire(&app, order).await;
        // WeChat answers the close with 204 but has not closed yet (its state sync lag): the order is cancelled,
        // its stock returned, and then the user pays.
        knobs(&app, json!({"close_ignored_next": 1, "notify_duplicates": 3})).await;
        wxshop::orders::worker::sweep(&app.state).await.unwrap();
        assert_eq!(order_status(&app, order).await, "cancelled");
        assert_eq!(cashier(&app, &fields, "pay").await, "requestPayment:ok");
        let no = out_trade_no(&app, order).await;
        let refunded = eventually(Duration::from_secs(10), || async {
            let (_, txn) = app.get_json(&format!("/__simulator/pay/transactions/{no}")).await;
            txn["trade_state"] == "REFUND"
        })
        .await;
        assert!(refunded, "the money went back");
        let (_, txn) = app.get_json(&format!("/__simulator/pay/transactions/{no}")).await;
        let refunds = txn["refunds"].as_array().unwrap();
        assert_eq!(refunds.len(), 1, "{txn}");
        assert_eq!(refunds[0]["out_refund_no"], format!("C{no}"));
        assert_eq!(refunds[0]["refund"], txn["amount"]["total"]);
        assert_eq!(order_status(&app, order).await, "cancelled", "the order stays cancelled");
        let state: String = sqlx::query_scalar("SELECT state FROM payment WHERE order_id = ?")
            .bind(order)
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
        assert_eq!(state, "refunded_after_cancel");
        assert!(
            eventually(Duration::from_secs(10), || async {
                count(&app, "SELECT COUNT(*) FROM refund WHERE order_id = ? AND status = 'succeeded'", order).await == 1
            })
            .await
        );
        assert_eq!(count(&app, "SELECT COUNT(*) FROM refund WHERE order_id = ?", order).await, 1);
    }
}

/// Pays `order` through the cashier and waits until it is paid.
pub async fn pay_fully(app: &TestApp, token: &str, order: i64) {
    let fields = start_payment(app, token, order).await;
    assert_eq!(cashier(app, &fields, "pay").await, "requestPayment:ok");
    assert!(becomes(app, order, "paid").await);
}

#[tokio::test]
async fn notifications_signed_by_either_key_are_accepted_during_a_migration() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let (token, address) = buyer(&app, "migrating").await;
        // The gray switch from platform certificate to public key: WeChat signs with one or the other.
        for key in ["certificate", "public_key"] {
            knobs(&app, json!({"sign_with": key})).await;
            let order = new_order(&app, &token, address).await;
            pay_fully(&app, &token, order).await;
        }
        let sent = deliveries_when(&app, 2).await;
        let serials: Vec<&str> = sent.iter().map(|d| d["serial"].as_str().unwrap()).collect();
        assert_eq!(serials, [keys::CERTIFICATE_SERIAL, keys::PUBLIC_KEY_ID]);
        assert!(sent.iter().all(|d| d["status"] == 204 && d["kind"] == "valid"), "{sent:?}");
    }
}

#[tokio::test]
async fn retryable_errors_are_retried_with_the_same_body_and_others_are_not() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let (token, address) = buyer(&app, "retried").await;
        let order = new_order(&app, &token, address).await;
        let jsapi = "/v3/pay/transactions/jsapi";
        // One SYSTEM_ERROR: retried at once with the same body, the buyer never sees it.
        knobs(&app, json!({"fail_next": [{"path": jsapi, "status": 500, "code": "SYSTEM_ERROR", "count": 1}]})).await;
        let fields = start_payment(&app, &token, order).await;
        // Three in a row: the attempts run out; 503, and the stored body works on the next try.
        let second = new_order(&app, &token, address).await;
        knobs(&app, json!({"fail_next": [{"path": jsapi, "status": 429, "code": "FREQUENCY_LIMITED", "count": 3}]}))
            .await;
        let (status, body) = app.post(&format!("/api/v1/orders/{second}/pay"), &json!({}), Some(&token)).await;
        assert_eq!((status, body["code"].as_str()), (503, Some("wechat_pay_unavailable")), "{body}");
        start_payment(&app, &token, second).await;
        // A non-retryable error is not retried: the next (armed) failure is still there afterwards.
        let third = new_order(&app, &token, address).await;
        let failures = json!([{"path": jsapi, "status": 400, "code": "PARAM_ERROR", "count": 2}]);
        knobs(&app, json!({"fail_next": failures})).await;
        let (status, _) = app.post(&format!("/api/v1/orders/{third}/pay"), &json!({}), Some(&token)).await;
        assert_eq!(status, 503);
        let (_, armed) = app.post("/__simulator/pay/control", &json!({}), None).await;
        assert_eq!(armed["fail_next"][0]["count"], 1, "one call, no retry: {armed}");
        knobs(&app, json!({"fail_next": []})).await;
        assert_eq!(cashier(&app, &fields, "pay").await, "requestPayment:ok");
        assert!(becomes(&app, order, "paid").await);
    }
}

#[tokio::test]
async fn flash_sale_orders_are_paid_and_closed_before_cancel_like_any_other() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let admin = app.admin_token("operator").await;
        let sale = crate::flash_sales::create_sale(&app, &admin, 2, 2, 1, 0).await;
        let sale_id = sale["id"].as_i64().unwrap();
        let buyers = app.buyers(2).await;
        let mut orders = Vec::new();
        for (i, buyer) in buyers.iter().enumerate() {
            let (status, won) = crate::flash_sales::purchase(&app, sale_id, buyer, &format!("flash-pay-{i}")).await;
            assert_eq!(status, 202, "{won}");
            let done =
                crate::flash_sales::wait_for_order(&app, won["purchase_id"].as_str().unwrap(), &buyer.token).await;
            orders.push(done["order_id"].as_i64().unwrap());
        }
        // The first winner pays at the sale's price.
        pay_fully(&app, &buyers[0].token, orders[0]).await;
        let paid: i64 = count(&app, "SELECT amount_fen FROM payment WHERE order_id = ?", orders[0]).await;
        assert_eq!(paid, 990);
        // The second prepays and never pays: closed at WeChat first, then cancelled, the unit back to the sale.
        let fields = start_payment(&app, &buyers[1].token, orders[1]).await;
        expire(&app, orders[1]).await;
        wxshop::orders::worker::sweep(&app.state).await.unwrap();
        assert_eq!(order_status(&app, orders[1]).await, "cancelled");
        assert_eq!(cashier(&app, &fields, "pay").await, "requestPayment:fail 该订单已关闭");
        let back = eventually(Duration::from_secs(10), || async {
            let (_, sale) = app.get_auth(&format!("/admin/api/v1/flash-sales/{sale_id}"), &admin).await;
            sale["remaining"] == 1
        })
        .await;
        assert!(back, "the unpaid unit is on sale again");
    }
}
