//! Coupon campaigns and coupons: claiming within the quota and the per-user limit under bursts, and spending a
//! coupon exactly once.

use std::collections::HashMap;

use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};
use wxshop::db::{now_ms, rfc3339};

use crate::helpers::{backends, spawn_app, spawn_app_with, TestApp};

async fn create_campaign(app: &TestApp, admin: &str, discount: i64, min_spend: i64, total: i64, limit: i64) -> i64 {
    let body = json!({
        "title": "满减券", "discount_fen": discount, "min_spend_fen": min_spend, "total": total,
        "per_user_limit": limit, "starts_at": rfc3339(now_ms() - 1_000), "ends_at": rfc3339(now_ms() + 3_600_000),
        "valid_days": 7,
    });
    let (status, campaign) = app.post("/admin/api/v1/coupon-campaigns", &body, Some(admin)).await;
    assert_eq!(status, 201, "{campaign}");
    campaign["id"].as_i64().unwrap()
}

async fn claim(app: &TestApp, campaign: i64, token: &str) -> (u16, Value) {
    app.post(&format!("/api/v1/coupon-campaigns/{campaign}/claim"), &json!({}), Some(token)).await
}

#[tokio::test]
async fn campaigns_claims_and_coupons_on_orders() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let admin = app.admin_token("operator").await;

        let bad = json!({"title": "", "discount_fen": 0, "min_spend_fen": -1, "total": 0, "per_user_limit": 0,
                         "starts_at": "soon", "ends_at": rfc3339(now_ms() + 1000), "valid_days": 0});
        let (status, body) = app.post("/admin/api/v1/coupon-campaigns", &bad, Some(&admin)).await;
        assert_eq!(status, 422, "{body}");
        assert!(body["fields"].as_array().unwrap().len() >= 6, "{body}");

        let campaign = create_campaign(&app, &admin, 500, 2_000, 2, 1).await;
        let (_, list) = app.get_json("/api/v1/coupon-campaigns").await;
        let listed = list["items"].as_array().unwrap().iter().find(|c| c["id"] == campaign).cloned().unwrap();
        assert_eq!((listed["status"].as_str(), listed["remaining"].as_i64()), (Some("active"), Some(2)));

        let alice = app.login("alice").await;
        let bob = app.login("bob").await;
        let carol = app.login("carol").await;
        let (status, coupon) = claim(&app, campaign, &alice.access_token).await;
        assert_eq!(status, 201, "{coupon}");
        assert_eq!((coupon["status"].as_str(), coupon["discount_fen"].as_i64()), (Some("unused"), Some(500)));
        let (status, body) = claim(&app, campaign, &alice.access_token).await;
        assert_eq!((status, body["code"].as_str()), (409, Some("limit_reached")), "{body}");
        assert_eq!(claim(&app, campaign, &bob.access_token).await.0, 201);
        let (status, body) = claim(&app, campaign, &carol.access_token).await;
        assert_eq!((status, body["code"].as_str()), (409, Some("exhausted")), "{body}");
        let (status, body) = claim(&app, 999_999, &carol.access_token).await;
        assert_eq!((status, body["code"].as_str()), (404, Some("campaign_not_found")), "{body}");
        let (status, mine) = app.get_auth("/api/v1/me/coupons", &alice.access_token).await;
        assert_eq!(status, 200);
        assert_eq!(mine["items"].as_array().unwrap().len(), 1, "{mine}");

        let stopped = create_campaign(&app, &admin, 100, 100, 10, 1).await;
        let (status, body) =
            app.post(&format!("/admin/api/v1/coupon-campaigns/{stopped}/stop"), &json!({}), Some(&admin)).await;
        assert_eq!((status, body["status"].as_str()), (200, Some("stopped")), "{body}");
        let (status, body) = claim(&app, stopped, &carol.access_token).await;
        assert_eq!((status, body["code"].as_str()), (409, Some("ended")), "{body}");

        // Using the coupon: minimum spend, the discount, used once, back on cancellation.
        let (status, address) = app
            .post(
                "/api/v1/addresses",
                &json!({"recipient": "A", "phone": "13800000000", "province": "浙江省",
                "city": "杭州市", "detail": "文三路 1 号"}),
                Some(&alice.access_token),
            )
            .await;
        assert_eq!(status, 201, "{address}");
        let sku = app.scalar("SELECT MIN(id) AS n FROM sku WHERE price_fen >= 100").await;
        let price = app.scalar(&format!("SELECT price_fen AS n FROM sku WHERE id = {sku}")).await;
        sqlx::query("UPDATE sku SET stock = 1000 WHERE id = ?").bind(sku).execute(&app.state.db.pool).await.unwrap();
        let coupon_id = coupon["id"].as_i64().unwrap();
        let order = |quantity: i64, key: &str| {
            let body = json!({"items": [{"sku_id": sku, "quantity": quantity}], "address_id": address["id"], "coupon_id": coupon_id});
            let key = key.to_owned();
            let app = &app;
            let token = alice.access_token.clone();
            async move { app.post_keyed("/api/v1/orders", &body, &token, &key).await }
        };
        let small = (2_000 + price - 1) / price - 1;
        if small >= 1 {
            let (status, _, body) = order(small, "o-small").await;
            assert_eq!((status, body["code"].as_str()), (422, Some("min_spend_not_met")), "{body}");
        }
        let quantity = (2_000 + price - 1) / price;
        let (status, _, placed) = order(quantity, "o-1").await;
        assert_eq!(status, 201, "{placed}");
        assert_eq!(placed["discount_fen"], 500);
        assert_eq!(placed["total_fen"].as_i64().unwrap(), price * quantity - 500);
        let (status, _, body) = order(quantity, "o-2").await;
        assert_eq!((status, body["code"].as_str()), (409, Some("coupon_used")), "{body}");
        let (_, bob_address) = app
            .post(
                "/api/v1/addresses",
                &json!({"recipient": "B", "phone": "13800000001", "province": "浙江省", "city": "杭州市", "detail": "2 号"}),
                Some(&bob.access_token),
            )
            .await;
        let bob_coupon = json!({"items": [{"sku_id": sku, "quantity": quantity}], "address_id": bob_address["id"],
                                "coupon_id": coupon_id});
        let (status, _, body) = app.post_keyed("/api/v1/orders", &bob_coupon, &bob.access_token, "b-1").await;
        assert_eq!((status, body["code"].as_str()), (404, Some("coupon_not_found")), "someone else's coupon: {body}");
        let (status, mine) = app.get_auth("/api/v1/me/coupons", &alice.access_token).await;
        assert_eq!((status, mine["items"][0]["status"].as_str()), (200, Some("used")), "{mine}");
        let order_id = placed["id"].as_i64().unwrap();
        let (status, _) =
            app.post(&format!("/api/v1/orders/{order_id}/cancel"), &json!({}), Some(&alice.access_token)).await;
        assert_eq!(status, 200);
        let (_, mine) = app.get_auth("/api/v1/me/coupons", &alice.access_token).await;
        assert_eq!(mine["items"][0]["status"], "unused", "{mine}");
        let (status, _, again) = order(quantity, "o-3").await;
        assert_eq!(status, 201, "the returned coupon is usable: {again}");
    }
}

#[tokio::test]
async fn one_coupon_under_20_concurrent_orders_is_used_exactly_once() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let admin = app.admin_token("operator").await;
        let campaign = create_campaign(&app, &admin, 100, 100, 10, 1).await;
        let buyer = app.buyers(1).await.remove(0);
        let (status, coupon) = claim(&app, campaign, &buyer.token).await;
        assert_eq!(status, 201, "{coupon}");
        let sku = app.scalar("SELECT MIN(id) AS n FROM sku").await;
        sqlx::query("UPDATE sku SET stock = 100 WHERE id = ?").bind(sku).execute(&app.state.db.pool).await.unwrap();
        let body = json!({"items": [{"sku_id": sku, "quantity": 1}], "address_id": buyer.address_id,
                          "coupon_id": coupon["id"]});
        let attempts = (0..20).map(|i| {
            let (app, body, token) = (&app, body.clone(), buyer.token.clone());
            async move { app.post_keyed("/api/v1/orders", &body, &token, &format!("c{i}")).await }
        });
        let results = futures_util::future::join_all(attempts).await;
        let mut by_status: HashMap<u16, usize> = HashMap::new();
        for (status, _, body) in &results {
            *by_status.entry(*status).or_default() += 1;
            if *status != 201 {
                assert_eq!((*status, body["code"].as_str()), (409, Some("coupon_used")), "{body}");
            }
        }
        assert_eq!(by_status.get(&201), Some(&1), "{by_status:?} ({})", backend.name());
        assert_eq!(
            app.scalar(&format!("SELECT stock AS n FROM sku WHERE id = {sku}")).await,
            99,
            "losers kept no stock"
        );
        assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM shop_order WHERE coupon_id IS NOT NULL").await, 1);
    }
}

#[tokio::test]
async fn a_quota_of_500_under_20000_claims_from_5000_users() {
    for backend in backends() {
        // 128 claims in flight queue for 8 SQLite connections, or for the campaign's row lock on MariaDB (one
        // commit at a time): on a busy CI machine a claim may wait more than the tests' usual 5 s for a connection,
        // and more than the default 15 s request limit in all. This test is about the quota, not latency: the
        // limits here are a minute, and the client waits longer than the server.
        let app = spawn_app_with(&backend, |c| {
            c.rate_limit.claim_per_ip = 0;
            c.db.acquire_timeout_ms = 60_000;
            c.http.request_timeout_ms = 60_000;
        })
        .await;
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(std::time::Duration::from_secs(90))
            .pool_idle_timeout(std::time::Duration::from_secs(5))
            .build()
            .unwrap();
        let peer = if backend.is_scale_out() { Some(app.spawn_peer().await) } else { None };
        let admin = app.admin_token("operator").await;
        let campaign = create_campaign(&app, &admin, 100, 100, 500, 2).await;
        let buyers = app.buyers(5_000).await;
        let targets: Vec<(reqwest::Client, String)> =
            [Some(&app), peer.as_ref()].into_iter().flatten().map(|a| (client.clone(), a.address.clone())).collect();
        let jobs: Vec<(usize, String)> =
            (0..4).flat_map(|_| buyers.iter().map(|b| b.token.clone())).enumerate().collect();
        let started = std::time::Instant::now();
        let statuses: Vec<(u16, String)> = stream::iter(jobs)
            .map(|(n, token)| {
                let (client, address) = targets[n % targets.len()].clone();
                async move {
                    let sent =
                        client.post(format!("{address}/api/v1/coupon-campaigns/{campaign}/claim")).bearer_auth(token);
                    // A transport error is counted (and fails the test below with the others), not a panic that
                    // hides what the rest of the claims got.
                    let response = match sent.send().await {
                        Ok(response) => response,
                        Err(error) => return (0, format!("transport error: {error:?}")),
                    };
                    let status = response.status().as_u16();
                    match response.json::<Value>().await {
                        Ok(body) => (status, body["code"].as_str().unwrap_or("").to_owned()),
                        Err(error) => (status, format!("unreadable body: {error:?}")),
                    }
                }
            })
            .buffer_unordered(128)
            .collect()
            .await;
        let mut counts: HashMap<String, usize> = HashMap::new();
        for (status, code) in statuses {
            *counts.entry(format!("{status} {code}")).or_default() += 1;
        }
        eprintln!("{}: 20000 claims in {:?}: {counts:?}", backend.name(), started.elapsed());
        assert_eq!(counts.get("201 "), Some(&500), "{counts:?}");
        assert_eq!(counts.keys().filter(|k| !k.starts_with("201") && !k.starts_with("409")).count(), 0, "{counts:?}");
        assert_eq!(
            app.scalar(&format!("SELECT COUNT(*) AS n FROM coupon WHERE coupon_campaign_id = {campaign}")).await,
            500
        );
        assert_eq!(app.scalar(&format!("SELECT issued AS n FROM coupon_campaign WHERE id = {campaign}")).await, 500);
        let most = app
            .scalar(&format!(
                "SELECT COALESCE(MAX(c), 0) AS n FROM (SELECT COUNT(*) AS c FROM coupon WHERE coupon_campaign_id = {campaign} GROUP BY user_id) t"
            ))
            .await;
        assert!(most <= 2, "a user has {most} coupons with a limit of 2");
    }
}
