//! Addresses and the cart.

use serde_json::{json, Value};

use crate::helpers::{backends, spawn_app, TestApp};

pub fn address(recipient: &str) -> Value {
    json!({"recipient": recipient, "phone": "13800001111", "province": "浙江省", "city": "杭州市", "district": "西湖区", "detail": "文三路 1 号"})
}

async fn patch(app: &TestApp, path: &str, body: Value, token: &str) -> (u16, Value) {
    let (status, _, body) = app.call(reqwest::Method::PATCH, path, Some(&body), Some(token)).await;
    (status, body)
}

async fn delete(app: &TestApp, path: &str, token: &str) -> u16 {
    app.call(reqwest::Method::DELETE, path, None, Some(token)).await.0
}

#[tokio::test]
async fn addresses_keep_exactly_one_default_and_stay_private() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let user = app.login("anna").await.access_token;
        let other = app.login("boris").await.access_token;
        let (status, first) = app.post("/api/v1/addresses", &address("安娜"), Some(&user)).await;
        assert_eq!(status, 201, "{first}");
        assert_eq!(first["is_default"], true, "the first address is the default");
        let (_, second) = app.post("/api/v1/addresses", &address("安娜公司"), Some(&user)).await;
        assert_eq!(second["is_default"], false);
        let (status, moved) =
            patch(&app, &format!("/api/v1/addresses/{}", second["id"]), json!({"is_default": true}), &user).await;
        assert_eq!((status, moved["is_default"].as_bool()), (200, Some(true)));
        let (_, list) = app.get_auth("/api/v1/addresses", &user).await;
        let defaults: Vec<i64> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["is_default"] == true)
            .map(|a| a["id"].as_i64().unwrap())
            .collect();
        assert_eq!(defaults, vec![second["id"].as_i64().unwrap()]);
        assert_eq!(list["items"][0]["id"], second["id"], "the default is listed first");

        // Deleting the default promotes another.
        assert_eq!(delete(&app, &format!("/api/v1/addresses/{}", second["id"]), &user).await, 204);
        let (_, list) = app.get_auth("/api/v1/addresses", &user).await;
        assert_eq!(list["items"][0]["is_default"], true);

        // Someone else's address does not exist for you.
        let path = format!("/api/v1/addresses/{}", first["id"]);
        assert_eq!(patch(&app, &path, json!({"city": "上海市"}), &other).await.0, 404);
        assert_eq!(delete(&app, &path, &other).await, 404);
        assert_eq!(app.get_auth("/api/v1/addresses", &other).await.1["items"].as_array().unwrap().len(), 0);

        let (status, error) =
            app.post("/api/v1/addresses", &json!({"recipient": "", "phone": "abc"}), Some(&user)).await;
        assert_eq!(status, 422);
        let fields: Vec<&str> =
            error["fields"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap()).collect();
        assert!(fields.contains(&"recipient") && fields.contains(&"phone") && fields.contains(&"detail"), "{fields:?}");
    }
}

#[tokio::test]
async fn the_cart_shows_current_prices_and_flags_what_cannot_be_bought() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let user = app.login("clara").await.access_token;
        let operator = app.admin_token("operator").await;
        let put = |sku: i64, quantity: i64| {
            let (app, user) = (&app, &user);
            async move {
                let (status, _, body) = app
                    .call(
                        reqwest::Method::PUT,
                        &format!("/api/v1/cart/items/{sku}"),
                        Some(&json!({"quantity": quantity})),
                        Some(user),
                    )
                    .await;
                (status, body)
            }
        };
        let (status, cart) = put(1, 2).await;
        assert_eq!(status, 200, "{cart}");
        let price1 = cart["items"][0]["price_fen"].as_i64().unwrap();
        assert_eq!(cart["total_fen"].as_i64(), Some(price1 * 2));
        put(3, 1).await;
        let (_, cart) = put(1, 3).await;
        assert_eq!(cart["items"].as_array().unwrap().len(), 2);

        // The price changes: the cart shows today's.
        let (status, _, _) = app
            .call(reqwest::Method::PATCH, "/admin/api/v1/skus/1", Some(&json!({"price_fen": 100})), Some(&operator))
            .await;
        assert_eq!(status, 200);
        // The SKU 3 is delisted: flagged, not counted.
        app.call(reqwest::Method::PATCH, "/admin/api/v1/skus/3", Some(&json!({"status": "delisted"})), Some(&operator))
            .await;
        let (_, cart) = app.get_auth("/api/v1/cart", &user).await;
        let line = |sku: i64| cart["items"].as_array().unwrap().iter().find(|l| l["sku_id"] == sku).unwrap().clone();
        assert_eq!(line(1)["price_fen"], 100);
        assert_eq!(
            (line(3)["available"].as_bool(), line(3)["unavailable_reason"].as_str()),
            (Some(false), Some("delisted"))
        );
        assert_eq!(cart["total_fen"], 300);
        // Stock below the quantity.
        app.post("/admin/api/v1/skus/1/stock", &json!({"set": 2, "reason": "count"}), Some(&operator)).await;
        let (_, cart) = app.get_auth("/api/v1/cart", &user).await;
        assert_eq!(
            cart["items"].as_array().unwrap().iter().find(|l| l["sku_id"] == 1).unwrap()["unavailable_reason"],
            "insufficient_stock"
        );

        assert_eq!(put(3, 1).await.0, 409, "delisted SKUs cannot be added");
        assert_eq!(put(999_999, 1).await.0, 404);
        assert_eq!(put(1, 1_000).await.0, 422);
        let (_, cart) = put(1, 0).await;
        assert_eq!(cart["items"].as_array().unwrap().len(), 1, "0 removes the line");
        assert_eq!(app.call(reqwest::Method::DELETE, "/api/v1/cart", None, Some(&user)).await.0, 204);
        assert_eq!(app.get_auth("/api/v1/cart", &user).await.1["items"].as_array().unwrap().len(), 0);
    }
}
