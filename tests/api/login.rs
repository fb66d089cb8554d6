//! WeChat login through the simulator: users, codes, errcodes, timeouts, phone binding, profile.

use std::time::{Duration, Instant};

use serde_json::json;
use wxshop::config::Secret;
use wxshop::simulator;

use crate::helpers::{backends, spawn_app, spawn_app_with, stalling_server, Backend};

#[tokio::test]
async fn login_creates_the_user_once_per_name() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let (status, first) = app.post("/api/v1/auth/wechat/login", &json!({"code": "alice"}), None).await;
        assert_eq!(status, 200, "{first}");
        assert_eq!(first["is_new_user"], true);
        assert_eq!(first["token_type"], "Bearer");
        assert_eq!(first["expires_in"], 900);
        assert!(first["refresh_token"].as_str().unwrap().starts_with("rt_"));
        assert_eq!(first["user"]["phone_bound"], false);

        let (_, again) = app.post("/api/v1/auth/wechat/login", &json!({"code": "alice:second-device"}), None).await;
        assert_eq!(again["is_new_user"], false);
        assert_eq!(again["user"]["id"], first["user"]["id"], "same NAME, same user");
        let (_, bob) = app.post("/api/v1/auth/wechat/login", &json!({"code": "bob"}), None).await;
        assert_ne!(bob["user"]["id"], first["user"]["id"]);

        let (status, me) = app.get_auth("/api/v1/me", first["access_token"].as_str().unwrap()).await;
        assert_eq!(status, 200);
        assert_eq!(me["id"], first["user"]["id"]);
    }
}

#[tokio::test]
async fn concurrent_first_logins_create_one_user() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let logins = (0..20).map(|i| {
            let app = &app;
            async move { app.post("/api/v1/auth/wechat/login", &json!({"code": format!("carol:{i}")}), None).await }
        });
        let results = futures_util::future::join_all(logins).await;
        let mut ids = std::collections::HashSet::new();
        let mut new_users = 0;
        for (status, body) in results {
            assert_eq!(status, 200, "{body}");
            ids.insert(body["user"]["id"].as_i64().unwrap());
            new_users += usize::from(body["is_new_user"] == true);
        }
        assert_eq!(ids.len(), 1, "one user");
        assert_eq!(new_users, 1, "exactly one login created it");
        let users: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM app_user").fetch_one(&app.state.db.pool).await.unwrap();
        assert_eq!(users, 1);
    }
}

#[tokio::test]
async fn a_code_works_once() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        app.login("dave:1").await;
        let (status, _, body) =
            app.call(reqwest::Method::POST, "/api/v1/auth/wechat/login", Some(&json!({"code": "dave:1"})), None).await;
        assert_eq!((status, body["code"].as_str()), (401, Some("wechat_code_invalid")));
    }
}

#[tokio::test]
async fn simulator_errcodes_map_to_clear_errors() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        for (code, status, error) in [
            ("invalid", 401, "wechat_code_invalid"),
            ("ratelimit", 429, "wechat_rate_limited"),
            ("busy", 503, "wechat_unavailable"),
        ] {
            let (got, headers, body) =
                app.call(reqwest::Method::POST, "/api/v1/auth/wechat/login", Some(&json!({"code": code})), None).await;
            assert_eq!((got, body["code"].as_str()), (status, Some(error)), "{code}: {body}");
            if status == 429 {
                assert!(headers.contains_key("retry-after"));
            }
        }
        // -1 is retried once: a code that fails once logs in, with two calls to WeChat.
        let before = app.simulator_calls("jscode2session").await;
        app.login("flaky-erin").await;
        assert_eq!(app.simulator_calls("jscode2session").await - before, 2);
        // `busy` keeps failing: one call and one retry, no more.
        let before = app.simulator_calls("jscode2session").await;
        app.post("/api/v1/auth/wechat/login", &json!({"code": "busy"}), None).await;
        assert_eq!(app.simulator_calls("jscode2session").await - before, 2);
        // Bad input never reaches WeChat.
        let (status, body) = app.post("/api/v1/auth/wechat/login", &json!({"code": ""}), None).await;
        assert_eq!((status, body["code"].as_str()), (422, Some("validation_failed")));
        let (status, body) = app.post("/api/v1/auth/wechat/login", &json!({"kode": "x"}), None).await;
        assert_eq!((status, body["code"].as_str()), (422, Some("validation_failed")));
    }
}

/// WeChat that accepts the connection and never answers: 503 `wechat_unavailable` within the 3 s budget.
#[tokio::test]
async fn a_stalling_wechat_is_503_within_the_timeout() {
    let (address, _server) = stalling_server().await;
    let app = spawn_app_with(&Backend::Embedded, |c| {
        c.wechat.app_id = Some("wx-stalled".into());
        c.wechat.app_secret = Some(Secret::new("secret"));
        c.wechat.api_base = format!("http://{address}");
        c.wechat.timeout_ms = 500;
    })
    .await;
    let started = Instant::now();
    let (status, body) = app.post("/api/v1/auth/wechat/login", &json!({"code": "frank"}), None).await;
    assert_eq!((status, body["code"].as_str()), (503, Some("wechat_unavailable")), "{body}");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
}

/// The standalone simulator (`wxshop simulator`) speaks the same protocol to a server configured with an app.
#[tokio::test]
async fn a_separately_running_simulator_serves_a_configured_app() {
    let wechat = std::sync::Arc::new(simulator::wechat::WechatSimulator::new("wx-standalone", "standalone-secret"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/wechat", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, simulator::router(Some(wechat), None, None)).await.unwrap() });
    for backend in backends() {
        let base = base.clone();
        let app = spawn_app_with(&backend, |c| {
            c.wechat.app_id = Some("wx-standalone".into());
            c.wechat.app_secret = Some(Secret::new("standalone-secret"));
            c.wechat.api_base = base;
        })
        .await;
        let session = app.login(&format!("grace:{}", uuid::Uuid::new_v4())).await;
        assert!(session.user_id > 0);
        // The mounted simulator is off when an app is configured.
        assert_eq!(app.get("/__simulator/wechat/_stats").await.status(), 404);

        // A wrong secret is the shop's misconfiguration: a 500, not the user's fault.
        let base = app.config.wechat.api_base.clone();
        let wrong = spawn_app_with(&backend, |c| {
            c.wechat.app_id = Some("wx-standalone".into());
            c.wechat.app_secret = Some(Secret::new("wrong"));
            c.wechat.api_base = base;
        })
        .await;
        let (status, body) = wrong.post("/api/v1/auth/wechat/login", &json!({"code": "heidi"}), None).await;
        assert_eq!((status, body["code"].as_str()), (500, Some("internal_error")));
    }
}

#[tokio::test]
async fn phone_binding_and_profile_edits() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let user = app.login("ivan").await;
        let token = user.access_token.as_str();
        let (status, body) = app.post("/api/v1/me/phone", &json!({"code": "phone-13812348000"}), Some(token)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!((body["phone_bound"].as_bool(), body["phone"].as_str()), (Some(true), Some("138****8000")));
        let (status, body) = app.post("/api/v1/me/phone", &json!({"code": "not-a-phone-code"}), Some(token)).await;
        assert_eq!((status, body["code"].as_str()), (401, Some("wechat_code_invalid")));
        // The app's access token was fetched once and reused.
        app.post("/api/v1/me/phone", &json!({"code": "phone-13900001111"}), Some(token)).await;
        assert_eq!(app.simulator_calls("stable_token").await, 1);

        let patch = |body: serde_json::Value| {
            let app = &app;
            async move { app.call(reqwest::Method::PATCH, "/api/v1/me", Some(&body), Some(token)).await }
        };
        let (status, _, body) = patch(json!({"nickname": "小明"})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["nickname"].as_str(), Some("小明"));
        for (body, field) in [
            (json!({"phone": "13800000000"}), "phone"),
            (json!({"id": 5}), "id"),
            (json!({"nickname": ""}), "nickname"),
            (json!({"nickname": "x".repeat(33)}), "nickname"),
            // Avatars are committed uploads only (tests/api/uploads.rs), never a URL.
            (json!({"avatar_url": "https://img.example.com/a.png"}), "avatar_url"),
        ] {
            let (status, _, error) = patch(body.clone()).await;
            assert_eq!(status, 422, "{body}: {error}");
            assert_eq!(error["fields"][0]["field"], field, "{error}");
        }
        let (_, me) = app.get_auth("/api/v1/me", token).await;
        assert_eq!(me["nickname"], "小明", "refused edits changed nothing");
    }
}

/// Many first phone bindings at once: the app's access token is fetched once (single flight), in scale-out once
/// for all instances sharing Redis.
#[tokio::test]
async fn the_app_access_token_is_fetched_once_under_concurrency() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let mut tokens = Vec::new();
        for i in 0..10 {
            tokens.push(app.login(&format!("judy-{i}")).await.access_token);
        }
        let binds =
            tokens.iter().enumerate().map(|(i, token)| {
                let app = &app;
                async move {
                    app.post("/api/v1/me/phone", &json!({"code": format!("phone-1380000{i:04}")}), Some(token)).await
                }
            });
        for (status, body) in futures_util::future::join_all(binds).await {
            assert_eq!(status, 200, "{body}");
        }
        assert_eq!(app.simulator_calls("stable_token").await, 1);
        if backend.is_scale_out() {
            // Two instances of one shop talk to the same WeChat: the first instance's simulator.
            let simulator_base = format!("{}/__simulator/wechat", app.address);
            let peer = app
                .spawn_peer_with(|c| {
                    c.wechat.app_id = Some(simulator::SIM_APP_ID.into());
                    c.wechat.app_secret = Some(Secret::new(simulator::SIM_APP_SECRET));
                    c.wechat.api_base = simulator_base;
                })
                .await;
            let token = peer.login("judy-peer").await.access_token;
            let (status, _) = peer.post("/api/v1/me/phone", &json!({"code": "phone-13800009999"}), Some(&token)).await;
            assert_eq!(status, 200);
            // The peer took the first instance's token from Redis instead of asking WeChat again.
            assert_eq!(app.simulator_calls("stable_token").await, 1);
        }
    }
}
