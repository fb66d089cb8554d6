//! Orders: creation, stock, idempotency, ownership, the state machine, the cache, the timeout sweep, paging.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{backends, scale_out_backend, spawn_app, spawn_app_with, TestApp};
use crate::shopping::address;

async fn set_stock(app: &TestApp, sku: i64, stock: i64) {
    sqlx::query("UPDATE sku SET stock = ? WHERE id = ?")
        .bind(stock)
        .bind(sku)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
}

async fn stock(app: &TestApp, sku: i64) -> i64 {
    sqlx::query_scalar("SELECT stock FROM sku WHERE id = ?").bind(sku).fetch_one(&app.state.db.pool).await.unwrap()
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&app.state.db.pool).await.unwrap()
}

/// A user with an address: (token, address id).
async fn shopper(app: &TestApp, name: &str) -> (String, i64) {
    let token = app.login(name).await.access_token;
    let (status, address) = app.post("/api/v1/addresses", &address(name), Some(&token)).await;
    assert_eq!(status, 201, "{address}");
    (token, address["id"].as_i64().unwrap())
}

/// POST /api/v1/orders with an Idempotency-Key: status, raw body.
async fn order(app: &TestApp, token: &str, key: &str, body: &Value) -> (u16, String) {
    let response = app
        .client
        .post(app.url("/api/v1/orders"))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test]
async fn an_order_takes_stock_at_server_prices_and_belongs_to_its_owner() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let (token, address_id) = shopper(&app, "olive").await;
        let (thief, _) = shopper(&app, "thief").await;
        let (before1, before2) = (stock(&app, 1).await, stock(&app, 2).await);
        let price1: i64 =
            sqlx::query_scalar("SELECT price_fen FROM sku WHERE id = 1").fetch_one(&app.state.db.pool).await.unwrap();
        let price2: i64 =
            sqlx::query_scalar("SELECT price_fen FROM sku WHERE id = 2").fetch_one(&app.state.db.pool).await.unwrap();
        let body = json!({"items": [{"sku_id": 1, "quantity": 2}, {"sku_id": 2, "quantity": 1}, {"sku_id": 1, "quantity": 1}],
                          "address_id": address_id, "remark": "请尽快发货"});
        let (status, text) = order(&app, &token, "k-1", &body).await;
        assert_eq!(status, 201, "{text}");
        let created = json_of(&text);
        assert_eq!(created["status"], "pending_payment");
        assert_eq!(created["total_fen"].as_i64(), Some(price1 * 3 + price2), "server prices, duplicate lines merged");
        assert_eq!(created["items"].as_array().unwrap().len(), 2);
        assert_eq!(created["address"]["id"].as_i64(), Some(address_id));
        assert!(created["order_no"].as_str().unwrap().len() >= 20);
        assert!(created["pay_deadline"].as_str().unwrap() > created["created_at"].as_str().unwrap());
        assert_eq!((stock(&app, 1).await, stock(&app, 2).await), (before1 - 3, before2 - 1));

        let id = created["id"].as_i64().unwrap();
        let (status, shown) = app.get_auth(&format!("/api/v1/orders/{id}"), &token).await;
        assert_eq!(status, 200);
        assert_eq!(shown, created, "the read is the created order");
        let (_, list) = app.get_auth("/api/v1/orders", &token).await;
        assert_eq!(list["items"][0]["id"].as_i64(), Some(id));

        // Someone else's order does not exist for them: read, cancel, list.
        let (status, body) = app.get_auth(&format!("/api/v1/orders/{id}"), &thief).await;
        assert_eq!((status, body["code"].as_str()), (404, Some("order_not_found")));
        let (status, body) = app.post(&format!("/api/v1/orders/{id}/cancel"), &json!({}), Some(&thief)).await;
        assert_eq!((status, body["code"].as_str()), (404, Some("order_not_found")));
        assert!(app.get_auth("/api/v1/orders", &thief).await.1["items"].as_array().unwrap().is_empty());
        // Unknown ids are the same 404.
        assert_eq!(app.get_auth("/api/v1/orders/99999999", &token).await.0, 404);

        // Prices from the client are not accepted at all.
        let sneaky = json!({"items": [{"sku_id": 1, "quantity": 1, "price_fen": 1}], "address_id": address_id});
        assert_eq!(order(&app, &token, "k-2", &sneaky).await.0, 422);
        // Someone else's address cannot be used.
        let (_, theirs) = app.post("/api/v1/addresses", &address("thief"), Some(&thief)).await;
        let body = json!({"items": [{"sku_id": 1, "quantity": 1}], "address_id": theirs["id"]});
        let (status, text) = order(&app, &token, "k-3", &body).await;
        assert_eq!(status, 404, "{text}");
        assert!(text.contains("address_not_found"), "{text}");
    }
}

/// Order numbers are the second and 8 random digits: at 500 orders/s two share one about once in 13 minutes (the
/// bench's promotion burst met it once as a 500). A number already taken is drawn again within the transaction.
#[tokio::test]
async fn an_order_number_already_taken_is_drawn_again() {
    use wxshop::orders::store::{insert_order, NewOrder};
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let (token, address_id) = shopper(&app, "twin").await;
        let body = json!({"items": [{"sku_id": 1, "quantity": 1}], "address_id": address_id});
        let (status, text) = order(&app, &token, "k-twin", &body).await;
        assert_eq!(status, 201, "{text}");
        let first = json_of(&text);
        let taken = first["order_no"].as_str().unwrap().to_owned();
        let user_id: i64 = sqlx::query_scalar("SELECT user_id FROM shop_order WHERE id = ?")
            .bind(first["id"].as_i64().unwrap())
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();

        let now = wxshop::db::now_ms();
        let mut tx = app.state.db.pool.begin().await.unwrap();
        let mut twin = NewOrder {
            order_no: taken.clone(),
            user_id,
            status: "pending_payment",
            total_fen: 100,
            address: "{}",
            remark: "",
            pay_deadline: now + 60_000,
            flash_sale_id: None,
            coupon_id: None,
            discount_fen: 0,
        };
        let id = insert_order(&mut tx, &mut twin, now).await.expect("a taken number is drawn again, not an error");
        assert_ne!(twin.order_no, taken);
        assert_eq!(twin.order_no.len(), taken.len());
        let stored: String = sqlx::query_scalar("SELECT order_no FROM shop_order WHERE id = ?")
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(stored, twin.order_no, "the number stored is the one the caller now holds");
        tx.commit().await.unwrap();
        let numbers: i64 = sqlx::query_scalar("SELECT COUNT(DISTINCT order_no) FROM shop_order WHERE user_id = ?")
            .bind(user_id)
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
        assert_eq!(numbers, 2);
    }
}

#[tokio::test]
async fn an_order_is_all_or_nothing() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let (token, address_id) = shopper(&app, "paul").await;
        set_stock(&app, 4, 10).await;
        set_stock(&app, 5, 1).await;
        let body =
            json!({"items": [{"sku_id": 4, "quantity": 2}, {"sku_id": 5, "quantity": 2}], "address_id": address_id});
        let (status, text) = order(&app, &token, "a", &body).await;
        let error = json_of(&text);
        assert_eq!((status, error["code"].as_str()), (409, Some("insufficient_stock")), "{text}");
        assert!(error["message"].as_str().unwrap().contains("sku 5"), "names the SKU: {error}");
        assert_eq!((stock(&app, 4).await, stock(&app, 5).await), (10, 1), "nothing taken");
        assert_eq!(count(&app, "SELECT COUNT(*) FROM shop_order").await, 0);
        // The failed request released its key: the same key works once stock allows.
        set_stock(&app, 5, 2).await;
        assert_eq!(order(&app, &token, "a", &body).await.0, 201);
    }
}

/// The outbox rows since `after_seq`: (aggregate type, aggregate id, short type, data), in `seq` order.
async fn events_after(app: &TestApp, after_seq: i64) -> Vec<(String, String, String, Value)> {
    let rows = sqlx::query("SELECT aggregatetype, aggregateid, type, payload FROM outbox WHERE seq > ? ORDER BY seq")
        .bind(after_seq)
        .fetch_all(&app.state.db.pool)
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            use sqlx::Row;
            let kind: String = r.try_get("type").unwrap();
            let payload: Value = serde_json::from_str(&wxshop::db::get_text(r, "payload").unwrap()).unwrap();
            (
                r.try_get("aggregatetype").unwrap(),
                r.try_get("aggregateid").unwrap(),
                kind.trim_start_matches("cn.wxshop.").trim_end_matches(".v1").to_owned(),
                payload["data"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn an_order_records_its_events_after_its_changes_and_a_failed_one_none() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let (token, address_id) = shopper(&app, "evan").await;
        set_stock(&app, 4, 10).await;
        set_stock(&app, 5, 10).await;
        let before = count(&app, "SELECT COALESCE(MAX(seq), 0) FROM outbox").await;
        let body =
            json!({"items": [{"sku_id": 5, "quantity": 3}, {"sku_id": 4, "quantity": 2}], "address_id": address_id});
        let (status, text) = order(&app, &token, "evented", &body).await;
        assert_eq!(status, 201, "{text}");
        let id = json_of(&text)["id"].as_i64().unwrap();
        let events = events_after(&app, before).await;
        let kinds: Vec<(&str, &str, &str)> =
            events.iter().map(|(a, i, k, _)| (a.as_str(), i.as_str(), k.as_str())).collect();
        let id_text = id.to_string();
        assert_eq!(
            kinds,
            [
                ("order", id_text.as_str(), "order.created"),
                ("sku", "4", "sku.stock_changed"),
                ("sku", "5", "sku.stock_changed")
            ],
            "the order's event, then each line's in ascending SKU order"
        );
        assert_eq!(events[0].3["total_fen"], json_of(&text)["total_fen"]);
        assert_eq!(events[0].3["items"].as_array().unwrap().len(), 2);
        assert_eq!(events[1].3, json!({"sku_id": 4, "delta": -2, "reason": "order"}));
        assert_eq!(events[2].3, json!({"sku_id": 5, "delta": -3, "reason": "order"}));

        // Short on one line: no order, no stock taken, no event.
        set_stock(&app, 5, 1).await;
        let before = count(&app, "SELECT COALESCE(MAX(seq), 0) FROM outbox").await;
        let (status, text) = order(&app, &token, "short", &body).await;
        assert_eq!((status, json_of(&text)["code"].as_str()), (409, Some("insufficient_stock")), "{text}");
        assert!(events_after(&app, before).await.is_empty(), "no event of an order that was not made");
        assert_eq!((stock(&app, 4).await, stock(&app, 5).await), (8, 1));
    }
}

const STOCK_EVENTS_OF_SKU_7: &str =
    "SELECT COUNT(*) FROM outbox WHERE type = 'cn.wxshop.sku.stock_changed.v1' AND aggregateid = '7'";

#[tokio::test]
async fn concurrent_orders_never_oversell() {
    for backend in backends() {
        let app = spawn_app_with(&backend, |c| c.db.acquire_timeout_ms = 10_000).await;
        let peer = if backend.is_scale_out() { Some(app.spawn_peer().await) } else { None };
        set_stock(&app, 7, 50).await;
        let stock_events_before = count(&app, STOCK_EVENTS_OF_SKU_7).await;
        let mut buyers = Vec::new();
        for i in 0..40 {
            buyers.push(shopper(&app, &format!("buyer-{i}")).await);
        }
        let attempts = (0..200).map(|i| {
            let (token, address_id) = buyers[i % buyers.len()].clone();
            // Half the requests go to the second instance when there is one.
            let target = if i % 2 == 1 { peer.as_ref().unwrap_or(&app) } else { &app };
            async move {
                order(
                    target,
                    &token,
                    &format!("burst-{i}"),
                    &json!({"items": [{"sku_id": 7, "quantity": 1}], "address_id": address_id}),
                )
                .await
            }
        });
        let results = futures_util::future::join_all(attempts).await;
        let created = results.iter().filter(|(s, _)| *s == 201).count();
        let refused = results.iter().filter(|(s, t)| *s == 409 && t.contains("insufficient_stock")).count();
        assert_eq!(created, 50, "exactly the stock was sold");
        assert_eq!(refused, 150, "{:?}", results.iter().find(|(s, _)| *s != 201 && *s != 409));
        assert_eq!(stock(&app, 7).await, 0);
        assert_eq!(count(&app, "SELECT COUNT(*) FROM shop_order").await, 50);
        assert_eq!(
            count(&app, "SELECT CAST(COALESCE(SUM(quantity), 0) AS SIGNED) FROM order_item WHERE sku_id = 7").await,
            50
        );
        // The stock is taken last, after the order's rows and events: a request that lost the race there rolled
        // all of them back, its events too.
        let created_events = "SELECT COUNT(*) FROM outbox WHERE type = 'cn.wxshop.order.created.v1'";
        assert_eq!(count(&app, created_events).await, 50);
        assert_eq!(count(&app, STOCK_EVENTS_OF_SKU_7).await, stock_events_before + 50);
        assert_eq!(count(&app, "SELECT COUNT(*) FROM order_event").await, 50);
    }
}

#[tokio::test]
async fn idempotency_keys_replay_refuse_and_serialise() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let (token, address_id) = shopper(&app, "quinn").await;
        let body = json!({"items": [{"sku_id": 9, "quantity": 1}], "address_id": address_id});
        let (status, first) = order(&app, &token, "same-key", &body).await;
        assert_eq!(status, 201);
        // The same key and body: the first response, byte for byte, and no second order.
        let reordered = json!({"address_id": address_id, "items": [{"quantity": 1, "sku_id": 9}]});
        let (status, replay) = order(&app, &token, "same-key", &reordered).await;
        assert_eq!((status, replay.as_str()), (201, first.as_str()));
        assert_eq!(count(&app, "SELECT COUNT(*) FROM shop_order").await, 1);
        // The same key, another body.
        let other = json!({"items": [{"sku_id": 9, "quantity": 2}], "address_id": address_id});
        let (status, text) = order(&app, &token, "same-key", &other).await;
        assert_eq!((status, json_of(&text)["code"].as_str()), (422, Some("idempotency_key_mismatch")));
        // Keys are per user: another user's identical key is theirs.
        let (token2, address2) = shopper(&app, "rosa").await;
        let (status, _) =
            order(&app, &token2, "same-key", &json!({"items": [{"sku_id": 9, "quantity": 1}], "address_id": address2}))
                .await;
        assert_eq!(status, 201);
        // No key.
        let response = app.client.post(app.url("/api/v1/orders")).bearer_auth(&token).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 400);

        // 50 concurrent requests with one key (split over two instances in scale-out): one order; each answer is
        // that order or "in progress".
        let peer = if backend.is_scale_out() { Some(app.spawn_peer().await) } else { None };
        let attempts = (0..50).map(|i| {
            let target = if i % 2 == 1 { peer.as_ref().unwrap_or(&app) } else { &app };
            order(target, &token, "storm", &body)
        });
        let results = futures_util::future::join_all(attempts).await;
        let created: HashSet<&String> = results.iter().filter(|(s, _)| *s == 201).map(|(_, t)| t).collect();
        assert_eq!(created.len(), 1, "every 201 is the same response");
        for (status, text) in &results {
            assert!(*status == 201 || (*status == 409 && text.contains("request_in_progress")), "{status} {text}");
        }
        assert_eq!(count(&app, "SELECT COUNT(*) FROM shop_order").await, 3);
    }
}

#[tokio::test]
async fn the_state_machine_is_enforced_and_recorded() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let operator = app.admin_token("operator").await;
        let (token, address_id) = shopper(&app, "sven").await;
        let before = stock(&app, 11).await;
        let body = json!({"items": [{"sku_id": 11, "quantity": 3}], "address_id": address_id});
        let (_, text) = order(&app, &token, "s-1", &body).await;
        let id = json_of(&text)["id"].as_i64().unwrap();
        assert_eq!(stock(&app, 11).await, before - 3);
        // Shipping an unpaid order is illegal.
        let ship = json!({"carrier": "顺丰", "tracking_no": "SF1234567890"});
        let (status, body) = app.post(&format!("/admin/api/v1/orders/{id}/ship"), &ship, Some(&operator)).await;
        assert_eq!((status, body["code"].as_str()), (409, Some("invalid_order_state")));
        // Cancel returns the stock, once.
        let (status, cancelled) = app.post(&format!("/api/v1/orders/{id}/cancel"), &json!({}), Some(&token)).await;
        assert_eq!((status, cancelled["status"].as_str()), (200, Some("cancelled")));
        assert_eq!(stock(&app, 11).await, before);
        let (status, body) = app.post(&format!("/api/v1/orders/{id}/cancel"), &json!({}), Some(&token)).await;
        assert_eq!((status, body["code"].as_str()), (409, Some("invalid_order_state")));
        assert_eq!(stock(&app, 11).await, before, "a second cancel returns nothing");

        // Paid (payments come later: driven through the service) → shipped, with history.
        let (_, text) =
            order(&app, &token, "s-2", &json!({"items": [{"sku_id": 11, "quantity": 1}], "address_id": address_id}))
                .await;
        let id = json_of(&text)["id"].as_i64().unwrap();
        wxshop::orders::lifecycle::advance(
            &app.state,
            id,
            wxshop::orders::OrderStatus::Paid,
            wxshop::orders::lifecycle::Actor::User(1),
        )
        .await
        .unwrap();
        let (status, _) = app.post(&format!("/api/v1/orders/{id}/cancel"), &json!({}), Some(&token)).await;
        assert_eq!(status, 409, "a paid order cannot be cancelled");
        let (status, shipped) = app.post(&format!("/admin/api/v1/orders/{id}/ship"), &ship, Some(&operator)).await;
        assert_eq!(status, 200, "{shipped}");
        assert_eq!((shipped["status"].as_str(), shipped["carrier"].as_str()), (Some("shipped"), Some("顺丰")));
        let transitions: Vec<(Value, Value)> = shipped["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["from_status"].clone(), e["to_status"].clone()))
            .collect();
        assert_eq!(
            transitions,
            vec![
                (Value::Null, json!("pending_payment")),
                (json!("pending_payment"), json!("paid")),
                (json!("paid"), json!("shipped"))
            ]
        );
        assert!(shipped["events"][2]["actor"].as_str().unwrap().starts_with("admin:"));
        assert_eq!(
            app.get_auth(&format!("/api/v1/orders/{id}"), &token).await.1["status"],
            "shipped",
            "the cache was invalidated"
        );

        // The back office finds it by status, owner and number.
        let user_id = shipped["user_id"].as_i64().unwrap();
        let order_no = shipped["order_no"].as_str().unwrap();
        for query in
            ["status=shipped".to_owned(), format!("user_id={user_id}&status=shipped"), format!("order_no={order_no}")]
        {
            let (status, page) = app.get_auth(&format!("/admin/api/v1/orders?{query}"), &operator).await;
            assert_eq!(status, 200, "{page}");
            assert_eq!(page["items"].as_array().unwrap().len(), 1, "{query}: {page}");
        }
        let (status, _) = app.get_auth("/admin/api/v1/orders?from=yesterday", &operator).await;
        assert_eq!(status, 422);
    }
}

#[tokio::test]
async fn a_cold_order_under_a_stampede_is_loaded_once() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let (token, address_id) = shopper(&app, "tara").await;
        let (_, text) =
            order(&app, &token, "c-1", &json!({"items": [{"sku_id": 12, "quantity": 1}], "address_id": address_id}))
                .await;
        let id = json_of(&text)["id"].as_i64().unwrap();
        let loads = app.state.order_cache.loads();
        let reads = (0..100).map(|_| app.get_auth_owned(format!("/api/v1/orders/{id}"), token.clone()));
        for (status, _) in futures_util::future::join_all(reads).await {
            assert_eq!(status, 200);
        }
        assert_eq!(app.state.order_cache.loads() - loads, 1, "100 concurrent cold reads, one database load");

        // Ids that do not exist are cached as such.
        let loads = app.state.order_cache.loads();
        for _ in 0..20 {
            assert_eq!(app.get_auth("/api/v1/orders/77777777", &token).await.0, 404);
        }
        assert_eq!(app.state.order_cache.loads() - loads, 1, "negative caching");

        // Two instances: a stampede split over both costs at most one load per instance (single flight in each,
        // and the second usually finds the first's value in Redis).
        if backend.is_scale_out() {
            let peer = app.spawn_peer().await;
            let (_, text) = order(
                &app,
                &token,
                "c-2",
                &json!({"items": [{"sku_id": 12, "quantity": 1}], "address_id": address_id}),
            )
            .await;
            let id = json_of(&text)["id"].as_i64().unwrap();
            let before = app.state.order_cache.loads() + peer.state.order_cache.loads();
            let reads = (0..100).map(|i| {
                let target = if i % 2 == 1 { &peer } else { &app };
                target.get_auth_owned(format!("/api/v1/orders/{id}"), token.clone())
            });
            for (status, _) in futures_util::future::join_all(reads).await {
                assert_eq!(status, 200);
            }
            let loads = app.state.order_cache.loads() + peer.state.order_cache.loads() - before;
            assert!((1..=2).contains(&loads), "{loads} database loads for 100 reads over two instances");
        }
    }
}

/// Scale-out: after a transition through instance A, instance B's next read shows it.
#[tokio::test]
async fn a_status_change_on_one_instance_is_seen_by_the_next_read_on_another() {
    let Some(backend) = scale_out_backend() else { return };
    let a = spawn_app(&backend).await;
    let b = a.spawn_peer().await;
    let (token, address_id) = shopper(&a, "uwe").await;
    for round in 0..10 {
        let (_, text) = order(
            &a,
            &token,
            &format!("x-{round}"),
            &json!({"items": [{"sku_id": 13, "quantity": 1}], "address_id": address_id}),
        )
        .await;
        let id = json_of(&text)["id"].as_i64().unwrap();
        // Warm both levels on B.
        assert_eq!(b.get_auth(&format!("/api/v1/orders/{id}"), &token).await.1["status"], "pending_payment");
        assert_eq!(b.get_auth(&format!("/api/v1/orders/{id}"), &token).await.1["status"], "pending_payment");
        let (status, _) = a.post(&format!("/api/v1/orders/{id}/cancel"), &json!({}), Some(&token)).await;
        assert_eq!(status, 200);
        assert_eq!(b.get_auth(&format!("/api/v1/orders/{id}"), &token).await.1["status"], "cancelled", "round {round}");
    }
}

#[tokio::test]
async fn unpaid_orders_are_cancelled_once_at_their_deadline() {
    for backend in backends() {
        let app = spawn_app_with(&backend, |c| {
            c.orders.payment_timeout_secs = 1;
            c.orders.sweep_interval_ms = 100;
        })
        .await;
        // A second sweeper on the same data: another instance (scale-out), or a second sweep task (embedded).
        let peer = if backend.is_scale_out() { Some(app.spawn_peer().await) } else { None };
        let extra = {
            let state = app.state.clone();
            tokio::spawn(async move {
                for _ in 0..30 {
                    let _ = wxshop::orders::worker::sweep(&state).await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        let (token, address_id) = shopper(&app, "vera").await;
        let before = stock(&app, 14).await;
        let mut ids = Vec::new();
        for i in 0..10 {
            let (_, text) = order(
                &app,
                &token,
                &format!("t-{i}"),
                &json!({"items": [{"sku_id": 14, "quantity": 2}], "address_id": address_id}),
            )
            .await;
            ids.push(json_of(&text)["id"].as_i64().unwrap());
        }
        assert_eq!(stock(&app, 14).await, before - 20);
        let all_cancelled = crate::helpers::eventually(Duration::from_secs(5), || async {
            count(&app, "SELECT COUNT(*) FROM shop_order WHERE status = 'cancelled'").await == 10
        })
        .await;
        assert!(all_cancelled, "every unpaid order was cancelled after its deadline");
        extra.await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(stock(&app, 14).await, before, "stock returned exactly once");
        assert_eq!(
            count(&app, "SELECT COUNT(*) FROM order_event WHERE to_status = 'cancelled' AND actor = 'system:timeout'")
                .await,
            10
        );
        let (_, shown) = app.get_auth(&format!("/api/v1/orders/{}", ids[0]), &token).await;
        assert_eq!(shown["status"], "cancelled");
        drop(peer);
    }
}

#[tokio::test]
async fn keyset_pages_return_every_order_once_while_new_ones_arrive() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let (token, address_id) = shopper(&app, "wolf").await;
        let line = json!({"items": [{"sku_id": 15, "quantity": 1}], "address_id": address_id});
        let mut existing = Vec::new();
        for i in 0..23 {
            let (_, text) = order(&app, &token, &format!("p-{i}"), &line).await;
            existing.push(json_of(&text)["id"].as_i64().unwrap());
        }
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut extra = 0;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/orders?limit=5&cursor={c}"),
                None => "/api/v1/orders?limit=5".to_owned(),
            };
            let (status, page) = app.get_auth(&path, &token).await;
            assert_eq!(status, 200, "{page}");
            seen.extend(page["items"].as_array().unwrap().iter().map(|o| o["id"].as_i64().unwrap()));
            // New orders keep arriving between pages.
            order(&app, &token, &format!("new-{extra}"), &line).await;
            extra += 1;
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        let unique: HashSet<i64> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "no order twice");
        for id in &existing {
            assert!(unique.contains(id), "order {id} missing");
        }
        let (_, filtered) = app.get_auth("/api/v1/orders?status=cancelled", &token).await;
        assert!(filtered["items"].as_array().unwrap().is_empty());
        assert_eq!(app.get_auth("/api/v1/orders?status=lost", &token).await.0, 422);
        assert_eq!(app.get_auth("/api/v1/orders?cursor=bogus", &token).await.0, 400);
    }
}

#[tokio::test]
async fn ordering_from_the_cart_empties_those_lines() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let (token, address_id) = shopper(&app, "xia").await;
        for (sku, quantity) in [(16, 2), (17, 1)] {
            app.call(
                reqwest::Method::PUT,
                &format!("/api/v1/cart/items/{sku}"),
                Some(&json!({"quantity": quantity})),
                Some(&token),
            )
            .await;
        }
        let (status, text) = order(&app, &token, "cart-1", &json!({"from_cart": true, "address_id": address_id})).await;
        assert_eq!(status, 201, "{text}");
        let created = json_of(&text);
        let lines: Vec<(i64, i64)> = created["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (i["sku_id"].as_i64().unwrap(), i["quantity"].as_i64().unwrap()))
            .collect();
        assert_eq!(lines, vec![(16, 2), (17, 1)]);
        assert!(app.get_auth("/api/v1/cart", &token).await.1["items"].as_array().unwrap().is_empty());
        let (status, text) = order(&app, &token, "cart-2", &json!({"from_cart": true, "address_id": address_id})).await;
        assert_eq!(status, 422, "an empty cart: {text}");
    }
}

/// shop_order's indexes and their columns, on MySQL (none listed on SQLite).
async fn shop_order_indexes(app: &crate::helpers::TestApp) -> Vec<(String, Vec<u8>)> {
    if app.state.db.dialect != wxshop::db::Dialect::MySql {
        return Vec::new();
    }
    let rows = sqlx::query(
        "SELECT INDEX_NAME AS name, GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX) AS columns \
         FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'shop_order' \
         GROUP BY INDEX_NAME ORDER BY INDEX_NAME",
    )
    .fetch_all(&app.state.db.pool)
    .await
    .unwrap();
    use sqlx::Row;
    let indexes: Vec<(String, Vec<u8>)> =
        rows.iter().map(|r| (r.get::<String, _>("name"), r.get::<Vec<u8>, _>("columns"))).collect();
    assert!(indexes.len() >= 7, "{indexes:?}");
    indexes
}

/// `seed-demo --users --orders`: the counts asked for, historical orders only, readable through the API.
#[tokio::test]
async fn load_test_data_seeds_users_and_orders() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let stock_before = count(&app, "SELECT CAST(COALESCE(SUM(stock), 0) AS SIGNED) FROM sku").await;
        let indexes_before = shop_order_indexes(&app).await;
        // With the index builds deferred (as from 200k orders on MySQL): the same indexes afterwards.
        let done = wxshop::demo_data::seed_load_test_data_deferring(
            &app.state.db,
            wxshop::simulator::SIM_APP_ID,
            50,
            2_300,
            1,
        )
        .await
        .unwrap();
        assert_eq!(shop_order_indexes(&app).await, indexes_before, "every index is back, as it was");
        assert_eq!((done.users, done.orders), (50, 2_300));
        assert_eq!(count(&app, "SELECT COUNT(*) FROM shop_order").await, 2_300);
        assert_eq!(count(&app, "SELECT COUNT(*) FROM app_user").await, 50);
        assert_eq!(count(&app, "SELECT COUNT(*) FROM order_item").await as usize, done.items);
        assert_eq!(count(&app, "SELECT COUNT(*) FROM shop_order WHERE status = 'pending_payment'").await, 0);
        assert_eq!(
            count(&app, "SELECT CAST(COALESCE(SUM(stock), 0) AS SIGNED) FROM sku").await,
            stock_before,
            "stock untouched"
        );
        // A seeded user's orders through the API, with a token as the benchmark mints them.
        let user_id: i64 =
            sqlx::query_scalar("SELECT MIN(id) FROM app_user").fetch_one(&app.state.db.pool).await.unwrap();
        let token = app
            .state
            .tokens
            .issue(user_id, wxshop::auth::USER_AUDIENCE, 1, None, wxshop::auth::tokens::now_secs())
            .unwrap()
            .token;
        let (status, page) = app.get_auth("/api/v1/orders?limit=100", &token).await;
        assert_eq!(status, 200);
        assert_eq!(page["items"].as_array().unwrap().len(), 46, "2,300 orders round-robin over 50 users");
        let id = page["items"][0]["id"].as_i64().unwrap();
        assert_eq!(app.get_auth(&format!("/api/v1/orders/{id}"), &token).await.0, 200);
        // A second run into a database with orders is refused.
        assert!(wxshop::demo_data::seed_load_test_data(&app.state.db, "x", 1, 1).await.is_err());
    }
}

/// Scale-out: a user's first page lives in level 2 as long as an order does (`orders.cache_ttl_secs`, here not the
/// default): every change drops both, so the life only bounds a missed invalidation, and a hot page runs the query
/// once per life.
#[tokio::test]
async fn a_first_page_lives_in_level_two_as_long_as_an_order() {
    let Some(backend) = scale_out_backend() else { return };
    let app = spawn_app_with(&backend, |c| c.orders.cache_ttl_secs = 120).await;
    let Some(redis) = app.state.redis.clone() else { return };
    let user = app.login("wendy").await;
    let (status, page) = app.get_auth("/api/v1/orders", &user.access_token).await;
    assert_eq!((status, page["items"].clone()), (200, json!([])), "{page}");

    let key = redis.key(&format!("cache:order_list:d:{}", user.user_id));
    let stored: Vec<u8> = redis::cmd("GET").arg(&key).query_async(&mut redis.conn()).await.unwrap();
    let deadline = i64::from_be_bytes(stored[..8].try_into().unwrap());
    let left = deadline - wxshop::db::now_ms();
    assert!((96_000..=132_000).contains(&left), "{left} ms left of a 120 s life (±10%)");
}

/// Scale-out: level 2 holds an order with its deadline in front (one `GET` answers both). A fresh instance reads it
/// without a database load; a value not in that layout, or past its deadline, is a miss that loads again, never an
/// error or a stale answer.
#[tokio::test]
async fn a_level_two_value_out_of_layout_or_past_its_deadline_is_a_miss() {
    let Some(backend) = scale_out_backend() else { return };
    let a = spawn_app(&backend).await;
    let Some(redis) = a.state.redis.clone() else { return };
    let (token, address_id) = shopper(&a, "vera").await;
    let (_, text) =
        order(&a, &token, "l2-1", &json!({"items": [{"sku_id": 14, "quantity": 1}], "address_id": address_id})).await;
    let id = json_of(&text)["id"].as_i64().unwrap();
    let path = format!("/api/v1/orders/{id}");
    assert_eq!(a.get_auth(&path, &token).await.0, 200);

    let key = redis.key(&format!("cache:order:d:{}", wxshop::orders::query::cache_key(id)));
    let mut conn = redis.conn();
    let stored: Vec<u8> = redis::cmd("GET").arg(&key).query_async(&mut conn).await.unwrap();
    let deadline = i64::from_be_bytes(stored[..8].try_into().unwrap());
    let ttl_ms = a.config.orders.cache_ttl_secs as i64 * 1000;
    let left = deadline - wxshop::db::now_ms();
    assert!(left > ttl_ms * 8 / 10 && left <= ttl_ms * 11 / 10, "{left} ms left of a {ttl_ms} ms TTL (±10%)");

    let b = a.spawn_peer().await;
    let (status, body) = b.get_auth(&path, &token).await;
    assert_eq!((status, body["id"].as_i64()), (200, Some(id)), "{body}");
    assert_eq!(b.state.order_cache.loads(), 0, "a fresh instance reads the order from level 2");

    let mut expired = (wxshop::db::now_ms() - 1).to_be_bytes().to_vec();
    expired.extend_from_slice(&stored[8..]);
    for (what, bogus) in [("too short", vec![1u8, 2, 3]), ("past its deadline", expired)] {
        let () = redis::cmd("SET").arg(&key).arg(bogus).query_async(&mut conn).await.unwrap();
        let c = a.spawn_peer().await;
        let (status, body) = c.get_auth(&path, &token).await;
        assert_eq!((status, body["id"].as_i64()), (200, Some(id)), "{what}: {body}");
        assert_eq!(c.state.order_cache.loads(), 1, "{what}: a miss, loaded from the database");
    }
}
