//! The back office: admin login and lockout, roles, bans, catalog management.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{backends, eventually, scale_out_backend, spawn_app, spawn_app_with, Backend, TestApp};

async fn admin_login(app: &TestApp, username: &str, password: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let body = json!({"username": username, "password": password});
    app.call(reqwest::Method::POST, "/admin/api/v1/auth/login", Some(&body), None).await
}

#[tokio::test]
async fn lockout_after_ten_failures_until_the_window_passes() {
    for backend in backends() {
        let app = spawn_app_with(&backend, |c| c.admin.lockout_window_secs = 2).await;
        wxshop::admins::service::create_admin(&app.state.db, "olga", "admin", "olga-password-1").await.unwrap();
        wxshop::admins::service::create_admin(&app.state.db, "pete", "viewer", "pete-password-1").await.unwrap();
        for attempt in 1..=10 {
            let (status, _, body) = admin_login(&app, "olga", "wrong-password").await;
            assert_eq!((status, body["code"].as_str()), (401, Some("invalid_credentials")), "attempt {attempt}");
        }
        let (status, headers, body) = admin_login(&app, "olga", "olga-password-1").await;
        assert_eq!((status, body["code"].as_str()), (429, Some("too_many_attempts")), "even the right password");
        assert!(headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
        // Other accounts are not locked.
        assert_eq!(admin_login(&app, "pete", "pete-password-1").await.0, 200);
        // The window passes.
        tokio::time::sleep(Duration::from_millis(2_200)).await;
        assert_eq!(admin_login(&app, "olga", "olga-password-1").await.0, 200);
        // Unknown usernames lock too (nothing tells them apart from real ones).
        for _ in 0..10 {
            assert_eq!(admin_login(&app, "nobody", "x").await.0, 401);
        }
        assert_eq!(admin_login(&app, "nobody", "x").await.0, 429);
    }
}

/// An unknown username costs the same password check as a wrong password.
#[tokio::test]
async fn unknown_user_and_wrong_password_take_the_same_time() {
    let app = spawn_app(&Backend::Embedded).await;
    wxshop::admins::service::create_admin(&app.state.db, "quinn", "admin", "quinn-password-1").await.unwrap();
    // Interleaved, so load from other tests running at the same time falls on both alike; medians of 7.
    let mut unknown_samples = Vec::new();
    let mut known_samples = Vec::new();
    for _ in 0..7 {
        for (username, samples) in [("nobody-here", &mut unknown_samples), ("quinn", &mut known_samples)] {
            let started = Instant::now();
            assert_eq!(admin_login(&app, username, "wrong-password").await.0, 401);
            samples.push(started.elapsed());
        }
    }
    unknown_samples.sort();
    known_samples.sort();
    let (unknown, known) = (unknown_samples[3], known_samples[3]);
    let ratio = unknown.as_secs_f64() / known.as_secs_f64();
    assert!((0.33..3.0).contains(&ratio), "unknown {unknown:?} vs wrong password {known:?}");
    assert!(unknown > Duration::from_millis(2), "the unknown-user path does a real password check: {unknown:?}");
}

#[tokio::test]
async fn roles_decide_who_may_write() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let viewer = app.admin_token("viewer").await;
        let operator = app.admin_token("operator").await;
        let admin = app.admin_token("admin").await;
        let user = app.login("uma").await;
        let category = json!({"name": "礼盒"});

        assert_eq!(app.get_auth("/admin/api/v1/categories", &viewer).await.0, 200, "viewers read");
        let (status, body) = app.post("/admin/api/v1/categories", &category, Some(&viewer)).await;
        assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "viewers do not write");
        assert_eq!(app.post("/admin/api/v1/categories", &category, Some(&operator)).await.0, 201);
        let ban = format!("/admin/api/v1/users/{}/ban", user.user_id);
        assert_eq!(app.post(&ban, &json!({}), Some(&operator)).await.0, 403, "operators do not ban");
        assert_eq!(app.post(&ban, &json!({}), Some(&viewer)).await.0, 403);
        assert_eq!(app.post(&ban, &json!({}), Some(&admin)).await.0, 200);
        assert_eq!(app.post("/admin/api/v1/users/999999/ban", &json!({}), Some(&admin)).await.0, 404);
    }
}

#[tokio::test]
async fn a_ban_stops_the_users_tokens_and_logins() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let admin = app.admin_token("admin").await;
        let user = app.login("victor").await;
        let (status, body) =
            app.post(&format!("/admin/api/v1/users/{}/ban", user.user_id), &json!({}), Some(&admin)).await;
        assert_eq!((status, body["status"].as_str()), (200, Some("banned")));
        let (status, body) = app.get_auth("/api/v1/me", &user.access_token).await;
        assert_eq!((status, body["code"].as_str()), (401, Some("token_revoked")));
        let (status, _) = app.post("/api/v1/auth/refresh", &json!({"refresh_token": user.refresh_token}), None).await;
        assert_eq!(status, 401);
        let (status, body) = app.post("/api/v1/auth/wechat/login", &json!({"code": "victor:again"}), None).await;
        assert_eq!((status, body["code"].as_str()), (403, Some("user_banned")));
        // Unban: a new login works.
        assert_eq!(
            app.post(&format!("/admin/api/v1/users/{}/unban", user.user_id), &json!({}), Some(&admin)).await.0,
            200
        );
        let again = app.login("victor:third").await;
        assert_eq!(app.get_auth("/api/v1/me", &again.access_token).await.0, 200);
    }
}

/// Scale-out: a ban issued through instance A is enforced by instance B within a second.
#[tokio::test]
async fn a_ban_is_seen_by_every_instance() {
    let Some(backend) = scale_out_backend() else { return };
    let a = spawn_app(&backend).await;
    let b = a.spawn_peer().await;
    let admin = a.admin_token("admin").await;
    let user = a.login("walter").await;
    assert_eq!(b.get_auth("/api/v1/me", &user.access_token).await.0, 200);
    a.post(&format!("/admin/api/v1/users/{}/ban", user.user_id), &json!({}), Some(&admin)).await;
    let refused =
        eventually(Duration::from_secs(1), || async { b.get_auth("/api/v1/me", &user.access_token).await.0 == 401 })
            .await;
    assert!(refused, "instance B still accepts a banned user's token after 1 s");
}

#[tokio::test]
async fn admin_sessions_refresh_and_log_out() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        wxshop::admins::service::create_admin(&app.state.db, "yara", "operator", "yara-password-1").await.unwrap();
        let (status, _, login) = admin_login(&app, "yara", "yara-password-1").await;
        assert_eq!(status, 200);
        assert_eq!(login["admin"]["role"], "operator");
        let (status, pair) =
            app.post("/admin/api/v1/auth/refresh", &json!({"refresh_token": login["refresh_token"]}), None).await;
        assert_eq!(status, 200, "{pair}");
        let access = pair["access_token"].as_str().unwrap();
        let (status, me) = app.get_auth("/admin/api/v1/me", access).await;
        assert_eq!((status, me["username"].as_str()), (200, Some("yara")));
        let (status, _, _) = app.call(reqwest::Method::POST, "/admin/api/v1/auth/logout", None, Some(access)).await;
        assert_eq!(status, 204);
        assert_eq!(app.get_auth("/admin/api/v1/me", access).await.0, 401);
    }
}

#[tokio::test]
async fn catalog_changes_are_visible_to_the_mini_program_at_once() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let operator = app.admin_token("operator").await;
        // Warm the storefront caches first: changes must not wait for them to expire.
        app.get_json("/api/v1/categories").await;

        let (status, category) =
            app.post("/admin/api/v1/categories", &json!({"name": "节日礼盒", "sort_order": 1}), Some(&operator)).await;
        assert_eq!(status, 201, "{category}");
        let category_id = category["id"].as_i64().unwrap();
        let (_, categories) = app.get_json("/api/v1/categories").await;
        assert_eq!(categories["items"][0]["name"], "节日礼盒", "new category listed first");

        let product = json!({
            "category_id": category_id,
            "title": "中秋月饼礼盒",
            "subtitle": "六枚装",
            "skus": [
                {"title": "蛋黄莲蓉", "price_fen": 16800, "stock": 5, "attributes": {"口味": "蛋黄莲蓉"}},
                {"title": "五仁", "price_fen": 12800, "stock": 0},
            ],
        });
        let (status, created) = app.post("/admin/api/v1/products", &product, Some(&operator)).await;
        assert_eq!(status, 201, "{created}");
        let product_id = created["id"].as_i64().unwrap();
        let sku_id = created["skus"][0]["id"].as_i64().unwrap();
        let (status, shown) = app.get_json(&format!("/api/v1/products/{product_id}")).await;
        assert_eq!(status, 200);
        assert_eq!(shown["price_fen"], 12800);
        let (_, listed) = app.get_json(&format!("/api/v1/products?category_id={category_id}")).await;
        assert_eq!(listed["items"][0]["id"], product_id);

        // Edits show at once, through the warm cache.
        let patch = json!({"title": "中秋月饼礼盒（限定）"});
        let (status, _, _) = app
            .call(
                reqwest::Method::PATCH,
                &format!("/admin/api/v1/products/{product_id}"),
                Some(&patch),
                Some(&operator),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(app.get_json(&format!("/api/v1/products/{product_id}")).await.1["title"], "中秋月饼礼盒（限定）");
        let patch = json!({"price_fen": 9900});
        let (status, _, _) = app
            .call(reqwest::Method::PATCH, &format!("/admin/api/v1/skus/{sku_id}"), Some(&patch), Some(&operator))
            .await;
        assert_eq!(status, 200);
        assert_eq!(app.get_json(&format!("/api/v1/products/{product_id}")).await.1["price_fen"], 9900);
        let (status, added) = app
            .post(
                &format!("/admin/api/v1/products/{product_id}/skus"),
                &json!({"title": "豆沙", "price_fen": 8800, "stock": 3}),
                Some(&operator),
            )
            .await;
        assert_eq!(status, 201, "{added}");
        assert_eq!(
            app.get_json(&format!("/api/v1/products/{product_id}")).await.1["skus"].as_array().unwrap().len(),
            3
        );

        // Stock: set and adjust, each recorded with who, when and why.
        let stock = |body: Value| {
            let (app, operator) = (&app, &operator);
            async move { app.post(&format!("/admin/api/v1/skus/{sku_id}/stock"), &body, Some(operator)).await }
        };
        let (status, changed) = stock(json!({"set": 50, "reason": "inbound shipment"})).await;
        assert_eq!((status, changed["stock"].as_i64()), (200, Some(50)), "{changed}");
        let (_, changed) = stock(json!({"delta": -8, "reason": "damaged"})).await;
        assert_eq!(changed["stock"], 42);
        let (status, error) = stock(json!({"delta": -43, "reason": "too many"})).await;
        assert_eq!((status, error["code"].as_str()), (409, Some("insufficient_stock")));
        for bad in [
            json!({"set": 1, "delta": 1, "reason": "x"}),
            json!({"reason": "x"}),
            json!({"set": -1, "reason": "x"}),
            json!({"set": 1, "reason": " "}),
        ] {
            assert_eq!(stock(bad.clone()).await.0, 422, "{bad}");
        }
        let shown = app.get_json(&format!("/api/v1/products/{product_id}")).await.1;
        assert_eq!(shown["skus"][0]["stock"], 42);
        let (_, history) = app.get_auth(&format!("/admin/api/v1/skus/{sku_id}/stock-adjustments"), &operator).await;
        let items = history["items"].as_array().unwrap();
        assert_eq!(items.len(), 2, "the refused change left no record");
        assert_eq!((items[0]["delta"].as_i64(), items[0]["reason"].as_str()), (Some(-8), Some("damaged")));
        assert_eq!((items[1]["delta"].as_i64(), items[1]["stock_after"].as_i64()), (Some(45), Some(50)));
        assert!(items[0]["admin_user_id"].as_i64().unwrap() > 0 && items[0]["created_at"].is_string());

        // Delisting hides the product from the mini-program, not from the back office.
        let patch = json!({"status": "delisted"});
        app.call(
            reqwest::Method::PATCH,
            &format!("/admin/api/v1/products/{product_id}"),
            Some(&patch),
            Some(&operator),
        )
        .await;
        assert_eq!(app.get_json(&format!("/api/v1/products/{product_id}")).await.0, 404);
        let (_, listed) = app.get_json(&format!("/api/v1/products?category_id={category_id}")).await;
        assert!(listed["items"].as_array().unwrap().is_empty());
        assert_eq!(
            app.get_auth(&format!("/admin/api/v1/products/{product_id}"), &operator).await.1["status"],
            "delisted"
        );
        let (_, all) = app.get_auth("/admin/api/v1/products?status=delisted", &operator).await;
        assert_eq!(all["items"][0]["id"], product_id);
    }
}

#[tokio::test]
async fn catalog_input_is_validated() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let operator = app.admin_token("operator").await;
        // A category that does not exist is a 404, as the product's own id would be.
        let unknown =
            json!({"category_id": 999999, "title": "x", "skus": [{"title": "a", "price_fen": 1, "stock": 1}]});
        let (status, error) = app.post("/admin/api/v1/products", &unknown, Some(&operator)).await;
        assert_eq!((status, error["code"].as_str()), (404, Some("category_not_found")), "{error}");
        for (body, field) in [
            (json!({"category_id": 1, "title": "", "skus": [{"title": "a", "price_fen": 1, "stock": 1}]}), "title"),
            (json!({"category_id": 1, "title": "x", "skus": []}), "skus"),
            (
                json!({"category_id": 1, "title": "x", "skus": [{"title": "a", "price_fen": -1, "stock": 1}]}),
                "skus[0].price_fen",
            ),
            (
                json!({"category_id": 1, "title": "x", "skus": [{"title": "a", "price_fen": 1, "stock": -5}]}),
                "skus[0].stock",
            ),
            (
                json!({"category_id": 1, "title": "x", "image_urls": ["https://x.example/a.jpg"], "skus": [{"title": "a", "price_fen": 1, "stock": 1}]}),
                "image_urls",
            ),
            (
                json!({"category_id": 1, "title": "x", "price": 5, "skus": [{"title": "a", "price_fen": 1, "stock": 1}]}),
                "price",
            ),
            (
                json!({"category_id": 1, "title": "x", "skus": [{"title": "a", "price_fen": 1.5, "stock": 1}]}),
                "skus[0].price_fen",
            ),
        ] {
            let (status, error) = app.post("/admin/api/v1/products", &body, Some(&operator)).await;
            assert_eq!(status, 422, "{body}: {error}");
            assert_eq!(error["fields"][0]["field"], field, "{error}");
        }
        let before: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM product").fetch_one(&app.state.db.pool).await.unwrap();
        assert_eq!(before, 30, "no partial writes");
        let patch = json!({"status": "gone"});
        let (status, _, _) =
            app.call(reqwest::Method::PATCH, "/admin/api/v1/products/1", Some(&patch), Some(&operator)).await;
        assert_eq!(status, 422);
        let (status, _, body) = app
            .call(
                reqwest::Method::PATCH,
                "/admin/api/v1/products/999999",
                Some(&json!({"title": "y"})),
                Some(&operator),
            )
            .await;
        assert_eq!((status, body["code"].as_str()), (404, Some("product_not_found")));
        let (status, body) =
            app.post("/admin/api/v1/skus/999999/stock", &json!({"delta": 1, "reason": "x"}), Some(&operator)).await;
        assert_eq!((status, body["code"].as_str()), (404, Some("sku_not_found")));
    }
}

/// Scale-out: a change made through instance A is what instance B serves next, cache or not.
#[tokio::test]
async fn catalog_changes_reach_every_instance() {
    let Some(backend) = scale_out_backend() else { return };
    let a = spawn_app(&backend).await;
    let b = a.spawn_peer().await;
    let operator = a.admin_token("operator").await;
    assert_eq!(b.get_json("/api/v1/products/2").await.1["title"], "云南普洱 熟茶饼");
    let patch = json!({"title": "普洱 新包装"});
    a.call(reqwest::Method::PATCH, "/admin/api/v1/products/2", Some(&patch), Some(&operator)).await;
    assert_eq!(b.get_json("/api/v1/products/2").await.1["title"], "普洱 新包装");
}

/// `wxshop admin create` reads the password from stdin and the account logs in.
#[tokio::test]
async fn admin_create_command_makes_a_working_account() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wxshop"))
        .args(["admin", "create", "--username", "zoe", "--role", "operator"])
        .env("WXSHOP_DATA_DIR", dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"zoe-password-123\n").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let data_dir = dir.path().to_path_buf();
    let app = spawn_app_with(&Backend::Embedded, |c| c.data_dir = data_dir).await;
    let (status, _, body) = admin_login(&app, "zoe", "zoe-password-123").await;
    assert_eq!((status, body["admin"]["role"].as_str()), (200, Some("operator")), "{body}");
    // Weak passwords and unknown roles are refused.
    for args in [["--role", "operator"], ["--role", "superuser"]] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_wxshop"))
            .args(["admin", "create", "--username", "zed"])
            .args(args)
            .args(["--password-file", "/dev/null"])
            .env("WXSHOP_DATA_DIR", dir.path())
            .output()
            .unwrap();
        assert!(!output.status.success());
    }
}
