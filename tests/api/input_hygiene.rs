//! Bad input is decided by validation, the same way on both backends, before any write: text limits that match
//! the columns, no control or bidi-override characters in human text, JSON objects only where objects belong, no
//! duplicate keys, and a few rules of sense (a coupon worth more than its threshold, dates in year 1970).

use reqwest::Method;
use serde_json::{json, Value};
use wxshop::db::{now_ms, rfc3339};

use crate::helpers::{backends, spawn_app, TestApp};

/// Sends `body` as raw JSON text.
async fn raw(app: &TestApp, method: Method, path: &str, body: &str, token: Option<&str>) -> (u16, Value) {
    let mut request =
        app.client.request(method, app.url(path)).header("content-type", "application/json").body(body.to_owned());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn address(detail: &str) -> Value {
    let mut address = crate::shopping::address("甲");
    address["detail"] = detail.into();
    address
}

#[tokio::test]
async fn human_text_refuses_control_bidi_and_invisible_characters() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let user = app.login("hygiene-text").await;
        let token = Some(user.access_token.as_str());
        for bad in
            ["a\u{0}b", "line\nbreak", "\u{7}bell", "abc\u{202E}cba", "\u{200B}\u{200B}", "x".repeat(201).as_str()]
        {
            let (status, body) = app.post("/api/v1/addresses", &address(bad), token).await;
            assert_eq!((status, body["code"].as_str()), (422, Some("validation_failed")), "{bad:?}: {body}");
            assert_eq!(body["fields"][0]["field"], "detail", "{body}");
        }
        let (status, body) = raw(&app, Method::PATCH, "/api/v1/me", r#"{"nickname": "\u202Eevil"}"#, token).await;
        assert_eq!(status, 422, "{body}");

        // The longest address whose every character escapes in JSON still fits the order's snapshot.
        let worst = json!({"recipient": "\"".repeat(32), "phone": "+86 138-0000-1111", "province": "\\".repeat(32),
                           "city": "\"".repeat(32), "district": "\\".repeat(32), "detail": "\"".repeat(200)});
        let (status, saved) = app.post("/api/v1/addresses", &worst, token).await;
        assert_eq!(status, 201, "{saved}");
        let order = json!({"items": [{"sku_id": 1, "quantity": 1}], "address_id": saved["id"], "remark": "\\\""});
        let (status, _, placed) = app.post_keyed("/api/v1/orders", &order, &user.access_token, "worst-case").await;
        assert_eq!(status, 201, "{} {placed}", backend.name());
        let remark = json!({"items": [{"sku_id": 1, "quantity": 1}], "address_id": saved["id"], "remark": "a\u{1}"});
        let (status, _, body) = app.post_keyed("/api/v1/orders", &remark, &user.access_token, "bad-remark").await;
        assert_eq!((status, body["fields"][0]["field"].as_str()), (422, Some("remark")), "{body}");

        // An older row that does not fit the snapshot (written before these checks): a 422, not a failed insert.
        sqlx::query("UPDATE address SET detail = ? WHERE id = ?")
            .bind("\u{1}".repeat(200))
            .bind(saved["id"].as_i64().unwrap())
            .execute(&app.state.db.pool)
            .await
            .unwrap();
        let (status, _, body) = app.post_keyed("/api/v1/orders", &order, &user.access_token, "legacy").await;
        assert_eq!((status, body["fields"][0]["field"].as_str()), (422, Some("address_id")), "{body}");
        let orders =
            app.scalar(&format!("SELECT COUNT(*) AS n FROM shop_order WHERE user_id = {}", user.user_id)).await;
        assert_eq!(orders, 1, "nothing written for the refused order");
    }
}

#[tokio::test]
async fn arrays_where_objects_belong_and_duplicate_keys_are_422() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let user = app.login("hygiene-json").await;
        let admin = app.admin_token("operator").await;
        let token = Some(user.access_token.as_str());
        let cases: &[(Method, &str, &str, Option<&str>)] = &[
            (Method::PATCH, "/api/v1/me", "[null,null]", token),
            (Method::POST, "/api/v1/addresses", r#"["甲","13800001111","浙江省","杭州市","","1 号",false]"#, token),
            (Method::PUT, "/api/v1/cart/items/1", "[2]", token),
            (Method::POST, "/api/v1/orders", r#"{"items": [[1, 1]], "address_id": 1}"#, token),
            (Method::POST, "/api/v1/auth/wechat/login", r#"["somebody"]"#, None),
            (Method::POST, "/admin/api/v1/skus/1/stock", r#"[null, 1, "recount"]"#, Some(admin.as_str())),
            (Method::PATCH, "/api/v1/me", r#"{"nickname": "a", "nickname": "b"}"#, token),
            (Method::POST, "/api/v1/orders", r#"{"from_cart": true, "address_id": 1, "address_id": 2}"#, token),
            (Method::PATCH, "/admin/api/v1/skus/1", r#"{"attributes": {"a": 1, "a": 2}}"#, Some(admin.as_str())),
        ];
        for (method, path, body, token) in cases {
            let mut request =
                app.client.request(method.clone(), app.url(path)).header("content-type", "application/json");
            request = request.header("Idempotency-Key", "hygiene").body(body.to_string());
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let answer: Value = response.json().await.unwrap();
            assert_eq!(
                (status, answer["code"].as_str()),
                (422, Some("validation_failed")),
                "{method} {path} {body}: {answer}"
            );
        }
    }
}

#[tokio::test]
async fn sku_attributes_are_bounded_on_both_backends() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let admin = app.admin_token("operator").await;
        let huge = json!({"attributes": {"说明": "很".repeat(70_000)}});
        let (status, _, body) = app.call(Method::PATCH, "/admin/api/v1/skus/1", Some(&huge), Some(&admin)).await;
        assert_eq!((status, body["code"].as_str()), (422, Some("validation_failed")), "{body}");
        let many: serde_json::Map<String, Value> = (0..400).map(|i| (format!("k{i}"), json!("v".repeat(20)))).collect();
        let (status, _, body) =
            app.call(Method::PATCH, "/admin/api/v1/skus/1", Some(&json!({"attributes": many})), Some(&admin)).await;
        assert_eq!(status, 422, "{body}");
        let fine = json!({"attributes": {"规格": "100g", "产地": "杭州"}});
        let (status, _, body) = app.call(Method::PATCH, "/admin/api/v1/skus/1", Some(&fine), Some(&admin)).await;
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test]
async fn empty_cursors_stock_of_missing_skus_and_coupon_sense() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let user = app.login("hygiene-lists").await;
        let admin = app.admin_token("operator").await;
        for path in
            ["/api/v1/products?cursor=", "/api/v1/coupon-campaigns?cursor=&limit=5", "/api/v1/flash-sales?cursor="]
        {
            let (status, body) = app.get_json(path).await;
            assert_eq!(status, 200, "{path}: {body}");
        }
        for path in ["/api/v1/orders?cursor=", "/api/v1/me/coupons?cursor="] {
            assert_eq!(app.get_auth(path, &user.access_token).await.0, 200, "{path}");
        }
        for path in
            ["/admin/api/v1/orders?cursor=", "/admin/api/v1/products?cursor=", "/admin/api/v1/flash-sales?cursor="]
        {
            assert_eq!(app.get_auth(path, &admin).await.0, 200, "{path}");
        }

        let change = json!({"delta": 1, "reason": "recount"});
        let (status, body) = app.post("/admin/api/v1/skus/999999/stock", &change, Some(&admin)).await;
        assert_eq!((status, body["code"].as_str()), (404, Some("sku_not_found")), "{body}");

        let campaign = |discount: i64, min_spend: i64, starts: String, ends: String| {
            json!({"title": "券", "discount_fen": discount, "min_spend_fen": min_spend, "total": 10,
                   "per_user_limit": 1, "valid_days": 7, "starts_at": starts, "ends_at": ends})
        };
        let now = now_ms();
        let bad = [
            campaign(5_000, 1_000, rfc3339(now), rfc3339(now + 3_600_000)),
            campaign(100, 1_000, "1970-01-01T00:00:00Z".into(), rfc3339(now + 3_600_000)),
            campaign(100, 1_000, rfc3339(now), "9999-12-31T23:59:59Z".into()),
        ];
        for body in bad {
            let (status, answer) = app.post("/admin/api/v1/coupon-campaigns", &body, Some(&admin)).await;
            assert_eq!((status, answer["code"].as_str()), (422, Some("validation_failed")), "{body}: {answer}");
        }
        let good = campaign(1_000, 1_000, rfc3339(now), rfc3339(now + 3_600_000));
        assert_eq!(app.post("/admin/api/v1/coupon-campaigns", &good, Some(&admin)).await.0, 201);
    }
}
