//! After-sales and the end of the lifecycle, through the real client against the simulator: partial, rejected,
//! abnormal and closed refunds, reconciliation with the trade bill, shipping information, completion.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{backends, eventually, spawn_app, TestApp};
use crate::payments::{
    becomes, buyer, cashier, count, knobs, new_order, order_status, out_trade_no, pay_fully, start_payment,
};

async fn refund_status(app: &TestApp, refund: i64) -> String {
    sqlx::query_scalar("SELECT status FROM refund WHERE id = ?")
        .bind(refund)
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn partial_refunds_never_exceed_the_total_and_a_full_one_returns_the_stock() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let admin = app.admin_token("operator").await;
        let (token, address) = buyer(&app, "refunder").await;
        let stock_before: i64 = app.scalar("SELECT stock AS n FROM sku WHERE id = 1").await;
        let order = new_order(&app, &token, address).await;
        pay_fully(&app, &token, order).await;
        let total: i64 = count(&app, "SELECT total_fen FROM shop_order WHERE id = ?", order).await;
        let path = format!("/api/v1/orders/{order}/refund-requests");

        let (status, first) = app.post(&path, &json!({"reason": "少了一件", "amount_fen": 100}), Some(&token)).await;
        assert_eq!(status, 201, "{first}");
        assert_eq!(first["status"], "requested");
        let (status, body) = app.post(&path, &json!({"reason": "again"}), Some(&token)).await;
        assert_eq!((status, body["code"].as_str()), (409, Some("refund_in_progress")));
        let id = first["id"].as_i64().unwrap();
        let (status, approved) =
            app.post(&format!("/admin/api/v1/refunds/{id}/approve"), &json!({}), Some(&admin)).await;
        assert_eq!(status, 200, "{approved}");
        assert!(eventually(Duration::from_secs(10), || async { refund_status(&app, id).await == "succeeded" }).await);
        assert!(becomes(&app, order, "paid").await, "a partial refund puts the order back");

        let (status, body) = app.post(&path, &json!({"reason": "too much", "amount_fen": total}), Some(&token)).await;
        assert_eq!((status, body["code"].as_str()), (422, Some("validation_failed")), "only {total} - 100 is left");
        let (status, rest) = app.post(&path, &json!({"reason": "全部退了"}), Some(&token)).await;
        assert_eq!(status, 201);
        assert_eq!(rest["amount_fen"].as_i64(), Some(total - 100));
        let id = rest["id"].as_i64().unwrap();
        let (status, _) = app.post(&format!("/admin/api/v1/refunds/{id}/approve"), &json!({}), Some(&admin)).await;
        assert_eq!(status, 200);
        assert!(becomes(&app, order, "refunded").await);
        let stock_after: i64 = app.scalar("SELECT stock AS n FROM sku WHERE id = 1").await;
        assert_eq!(stock_after, stock_before, "refunded in full before shipping: the stock is back");
        let (status, body) = app.post(&path, &json!({"reason": "more"}), Some(&token)).await;
        assert_eq!((status, body["code"].as_str()), (409, Some("invalid_order_state")));
        let (_, txn) =
            app.get_json(&format!("/__simulator/pay/transactions/{}", out_trade_no(&app, order).await)).await;
        let refunded: i64 = txn["refunds"].as_array().unwrap().iter().map(|r| r["refund"].as_i64().unwrap()).sum();
        assert_eq!(refunded, total, "WeChat refunded exactly the total");

        // The same out_refund_no again (a retry) refunds nothing more.
        let body: String = sqlx::query_scalar("SELECT request_body FROM refund WHERE id = ?")
            .bind(id)
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
        let again = app.state.pay.client.refund(body.as_bytes()).await.unwrap();
        assert_eq!(again.amount.refund, total - 100);
        let (_, txn) =
            app.get_json(&format!("/__simulator/pay/transactions/{}", out_trade_no(&app, order).await)).await;
        assert_eq!(txn["refunds"].as_array().unwrap().len(), 2);
    }
}

#[tokio::test]
async fn rejected_abnormal_and_closed_refunds_leave_the_money_where_it_is() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let admin = app.admin_token("operator").await;
        let (token, address) = buyer(&app, "unlucky").await;
        let order = new_order(&app, &token, address).await;
        pay_fully(&app, &token, order).await;
        let path = format!("/api/v1/orders/{order}/refund-requests");
        let (_, request) = app.post(&path, &json!({"reason": "试试"}), Some(&token)).await;
        let id = request["id"].as_i64().unwrap();
        let (status, rejected) =
            app.post(&format!("/admin/api/v1/refunds/{id}/reject"), &json!({"reason": "已发货"}), Some(&admin)).await;
        assert_eq!((status, rejected["status"].as_str()), (200, Some("rejected")), "{rejected}");
        let (status, body) = app.post(&format!("/admin/api/v1/refunds/{id}/approve"), &json!({}), Some(&admin)).await;
        assert_eq!((status, body["code"].as_str()), (409, Some("invalid_refund_state")));

        knobs(&app, json!({"refund_outcome": "ABNORMAL"})).await;
        let (_, request) = app.post(&path, &json!({"reason": "卡冻结"}), Some(&token)).await;
        let id = request["id"].as_i64().unwrap();
        app.post(&format!("/admin/api/v1/refunds/{id}/approve"), &json!({}), Some(&admin)).await;
        assert!(eventually(Duration::from_secs(10), || async { refund_status(&app, id).await == "abnormal" }).await);
        assert_eq!(order_status(&app, order).await, "refunding", "ABNORMAL is not final");

        // A refund WeChat closes puts the order back where it was.
        let closed_order = new_order(&app, &token, address).await;
        pay_fully(&app, &token, closed_order).await;
        knobs(&app, json!({"refund_outcome": "CLOSED"})).await;
        let (_, request) = app
            .post(&format!("/api/v1/orders/{closed_order}/refund-requests"), &json!({"reason": "x"}), Some(&token))
            .await;
        let id = request["id"].as_i64().unwrap();
        app.post(&format!("/admin/api/v1/refunds/{id}/approve"), &json!({}), Some(&admin)).await;
        assert!(eventually(Duration::from_secs(10), || async { refund_status(&app, id).await == "closed" }).await);
        assert!(becomes(&app, closed_order, "paid").await, "a closed refund puts the order back");
    }
}

#[tokio::test]
async fn reconciliation_fixes_a_paid_but_pending_order_and_refuses_a_tampered_bill() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let admin = app.admin_token("operator").await;
        let (token, address) = buyer(&app, "reconciled").await;
        let order = new_order(&app, &token, address).await;
        let fields = start_payment(&app, &token, order).await;
        knobs(&app, json!({"notify_drop": true})).await;
        assert_eq!(cashier(&app, &fields, "pay").await, "requestPayment:ok");
        assert_eq!(order_status(&app, order).await, "pending_payment");
        let today = wxshop::db::rfc3339_beijing(wxshop::db::now_ms() / 1000)[..10].to_owned();
        let (status, run) = app.post("/admin/api/v1/payments/reconcile", &json!({"date": today}), Some(&admin)).await;
        assert_eq!(status, 200, "{run}");
        assert_eq!(run["status"], "done");
        assert_eq!(run["fixed_paid"], json!([out_trade_no(&app, order).await]));
        assert_eq!(order_status(&app, order).await, "paid");
        let (_, runs) = app.get_auth("/admin/api/v1/payments/reconcile", &admin).await;
        assert_eq!(runs[0]["id"], run["id"], "the report is stored");

        knobs(&app, json!({"bill_tamper": true})).await;
        let (status, run) = app.post("/admin/api/v1/payments/reconcile", &json!({"date": today}), Some(&admin)).await;
        assert_eq!((status, run["status"].as_str()), (200, Some("failed")), "{run}");
        assert!(run["error"].as_str().unwrap().contains("SHA-1"), "{run}");
        let (status, _) =
            app.post("/admin/api/v1/payments/reconcile", &json!({"date": "2099-01-01"}), Some(&admin)).await;
        assert_eq!(status, 422);
    }
}

#[tokio::test]
async fn shipping_information_is_uploaded_until_accepted_and_orders_complete_once() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let peer = app.spawn_peer().await;
        let admin = app.admin_token("operator").await;
        let (token, address) = buyer(&app, "shipped").await;
        let (other, _) = buyer(&app, "nosy").await;
        let order = new_order(&app, &token, address).await;
        pay_fully(&app, &token, order).await;
        // WeChat fails the upload twice over (the client's own retry of -1 included).
        let (status, _) = app.post("/__simulator/wechat/_control", &json!({"shipping_fail_next": 4}), None).await;
        assert_eq!(status, 200);
        let (status, shipped) = app
            .post(
                &format!("/admin/api/v1/orders/{order}/ship"),
                &json!({"carrier": "SF", "tracking_no": "SF100"}),
                Some(&admin),
            )
            .await;
        assert_eq!(status, 200, "{shipped}");
        for _ in 0..3 {
            sqlx::query("UPDATE shipping_upload SET next_attempt_at = 0").execute(&app.state.db.pool).await.unwrap();
            wxshop::payments::worker::pass(&app.state).await.unwrap();
        }
        let (_, uploads) = app.get_json("/__simulator/wechat/_shipping").await;
        assert_eq!(uploads.as_array().unwrap().len(), 1, "{uploads}");
        assert_eq!(uploads[0]["shipping_list"][0]["tracking_no"], "SF100");
        assert_eq!(uploads[0]["order_key"]["out_trade_no"], out_trade_no(&app, order).await.as_str());
        let attempts =
            count(&app, "SELECT attempts FROM shipping_upload WHERE order_id = ? AND state = 'done'", order).await;
        assert_eq!(attempts, 3, "failed, failed, accepted");

        // Confirming receipt: the owner only, once.
        let path = format!("/api/v1/orders/{order}/confirm-receipt");
        assert_eq!(app.post(&path, &json!({}), Some(&other)).await.0, 404);
        let second = new_order(&app, &token, address).await;
        pay_fully(&app, &token, second).await;
        app.post(
            &format!("/admin/api/v1/orders/{second}/ship"),
            &json!({"carrier": "YTO", "tracking_no": "Y1"}),
            Some(&admin),
        )
        .await;
        assert_eq!(app.post(&path, &json!({}), Some(&token)).await.0, 204);
        assert_eq!(order_status(&app, order).await, "completed");
        assert_eq!(app.post(&path, &json!({}), Some(&token)).await.0, 409);

        // Auto-completion after orders.auto_complete_days, by two instances at once: completed once.
        sqlx::query("UPDATE shop_order SET shipped_at = 1 WHERE id = ?")
            .bind(second)
            .execute(&app.state.db.pool)
            .await
            .unwrap();
        let (a, b) = tokio::join!(
            wxshop::orders::lifecycle::auto_complete(&app.state),
            wxshop::orders::lifecycle::auto_complete(&peer.state)
        );
        assert_eq!(a.unwrap() + b.unwrap(), 1);
        assert_eq!(order_status(&app, second).await, "completed");
        let completions =
            count(&app, "SELECT COUNT(*) FROM order_event WHERE order_id = ? AND to_status = 'completed'", second)
                .await;
        assert_eq!(completions, 1);
    }
}

#[tokio::test]
async fn concurrent_refund_requests_for_one_order_make_one() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let (token, address) = buyer(&app, "twice").await;
        let order = new_order(&app, &token, address).await;
        pay_fully(&app, &token, order).await;
        let path = format!("/api/v1/orders/{order}/refund-requests");
        let body = json!({"reason": "双击了"});
        let calls = (0..8).map(|_| app.post(&path, &body, Some(&token)));
        let mut statuses: Vec<u16> = futures_util::future::join_all(calls).await.into_iter().map(|(s, _)| s).collect();
        statuses.sort();
        assert_eq!(statuses, [201, 409, 409, 409, 409, 409, 409, 409]);
        assert_eq!(count(&app, "SELECT COUNT(*) FROM refund WHERE order_id = ?", order).await, 1);
    }
}
