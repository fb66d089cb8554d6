//! Refresh-token rotation, the grace window, reuse detection, lifetimes and logout, on one instance and two.

use std::time::Duration;

use serde_json::json;

use wxshop::auth::revocation::Answered;

use crate::helpers::{backends, eventually, scale_out_backend, spawn_app, spawn_app_with, TestApp};

async fn refresh(app: &TestApp, token: &str) -> (u16, serde_json::Value) {
    app.post("/api/v1/auth/refresh", &json!({ "refresh_token": token }), None).await
}

async fn family_size(app: &TestApp, refresh_token: &str) -> i64 {
    let hash = wxshop::crypto::sha256_hex(refresh_token.as_bytes());
    let family: i64 = sqlx::query_scalar("SELECT auth_family_id FROM refresh_token WHERE token_hash = ?")
        .bind(hash)
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    sqlx::query_scalar("SELECT COUNT(*) FROM refresh_token WHERE auth_family_id = ?")
        .bind(family)
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn refresh_rotates_and_a_retry_in_the_grace_window_gets_the_same_successor() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let user = app.login("rita").await;
        let (status, first) = refresh(&app, &user.refresh_token).await;
        assert_eq!(status, 200, "{first}");
        let successor = first["refresh_token"].as_str().unwrap();
        assert_ne!(successor, user.refresh_token);
        assert_ne!(first["access_token"], user.access_token.as_str());
        assert_eq!(app.get_auth("/api/v1/me", first["access_token"].as_str().unwrap()).await.0, 200);

        // The client lost the response and retries: same successor, no new family member.
        let (status, retry) = refresh(&app, &user.refresh_token).await;
        assert_eq!(status, 200, "{retry}");
        assert_eq!(retry["refresh_token"], successor);
        assert_eq!(family_size(&app, successor).await, 2);

        // The successor rotates in turn.
        let (status, next) = refresh(&app, successor).await;
        assert_eq!(status, 200, "{next}");
        assert_eq!(family_size(&app, successor).await, 3);
    }
}

#[tokio::test]
async fn reuse_after_the_grace_window_revokes_the_whole_family() {
    for backend in backends() {
        let app = spawn_app_with(&backend, |c| c.auth.refresh_grace_secs = 1).await;
        let user = app.login("sam").await;
        let (_, rotated) = refresh(&app, &user.refresh_token).await;
        let successor = rotated["refresh_token"].as_str().unwrap().to_owned();
        let new_access = rotated["access_token"].as_str().unwrap().to_owned();
        tokio::time::sleep(Duration::from_millis(2_100)).await;

        let (status, body) = refresh(&app, &user.refresh_token).await;
        assert_eq!((status, body["code"].as_str()), (401, Some("refresh_token_reused")), "{body}");
        // Every member of the family is dead: the successor and the access tokens of the session.
        let (status, body) = refresh(&app, &successor).await;
        assert_eq!((status, body["code"].as_str()), (401, Some("token_revoked")), "{body}");
        for access in [&new_access, &user.access_token] {
            let (status, body) = app.get_auth("/api/v1/me", access).await;
            assert_eq!((status, body["code"].as_str()), (401, Some("token_revoked")), "{body}");
        }
        // Another login of the same user is a separate family and unaffected.
        let other = app.login("sam:phone").await;
        assert_eq!(app.get_auth("/api/v1/me", &other.access_token).await.0, 200);
    }
}

#[tokio::test]
async fn fifty_concurrent_refreshes_yield_one_successor() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let user = app.login("tina").await;
        let attempts = (0..50).map(|_| refresh(&app, &user.refresh_token));
        let results = futures_util::future::join_all(attempts).await;
        let mut successors = std::collections::HashSet::new();
        for (status, body) in &results {
            assert_eq!(*status, 200, "{body}");
            successors.insert(body["refresh_token"].as_str().unwrap().to_owned());
        }
        assert_eq!(successors.len(), 1, "every caller got the same successor");
        let successor = successors.into_iter().next().unwrap();
        assert_eq!(family_size(&app, &successor).await, 2, "exactly one successor was stored");
        assert_eq!(refresh(&app, &successor).await.0, 200);
    }
}

#[tokio::test]
async fn refresh_tokens_expire_when_idle_and_at_the_absolute_limit() {
    for backend in backends() {
        let idle = spawn_app_with(&backend, |c| {
            c.auth.refresh_idle_ttl_secs = 1;
            c.auth.refresh_absolute_ttl_secs = 3_600;
        })
        .await;
        let user = idle.login("uma").await;
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        let (status, body) = refresh(&idle, &user.refresh_token).await;
        assert_eq!((status, body["code"].as_str()), (401, Some("token_expired")), "idle: {body}");

        let absolute = spawn_app_with(&backend, |c| {
            c.auth.refresh_idle_ttl_secs = 1;
            c.auth.refresh_absolute_ttl_secs = 1;
        })
        .await;
        let user = absolute.login("uma").await;
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        let (status, body) = refresh(&absolute, &user.refresh_token).await;
        assert_eq!((status, body["code"].as_str()), (401, Some("token_expired")), "absolute: {body}");

        for garbage in ["", "rt_nope", "eyJhbGciOi.x.y", &"rt_".repeat(60)] {
            let (status, body) = refresh(&absolute, garbage).await;
            assert_eq!((status, body["code"].as_str()), (401, Some("token_invalid")), "{garbage:?}");
        }
    }
}

#[tokio::test]
async fn logout_revokes_the_session_and_the_access_token() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let user = app.login("victor").await;
        let other_device = app.login("victor:tablet").await;
        // Used once before the logout: the instance has the verified token cached (it must still refuse it).
        assert_eq!(app.get_auth("/api/v1/me", &user.access_token).await.0, 200);
        let (status, _, _) =
            app.call(reqwest::Method::POST, "/api/v1/auth/logout", None, Some(&user.access_token)).await;
        assert_eq!(status, 204);
        let (status, body) = app.get_auth("/api/v1/me", &user.access_token).await;
        assert_eq!((status, body["code"].as_str()), (401, Some("token_revoked")));
        let (status, body) = refresh(&app, &user.refresh_token).await;
        assert_eq!((status, body["code"].as_str()), (401, Some("token_revoked")));
        // Only that session ended.
        assert_eq!(app.get_auth("/api/v1/me", &other_device.access_token).await.0, 200);
        assert_eq!(refresh(&app, &other_device.refresh_token).await.0, 200);
    }
}

/// Embedded mode persists the deny-list: a restart does not revive a logged-out token.
#[tokio::test]
async fn logout_survives_a_restart_on_the_embedded_backend() {
    let app = spawn_app(&crate::helpers::Backend::Embedded).await;
    let user = app.login("wendy").await;
    app.call(reqwest::Method::POST, "/api/v1/auth/logout", None, Some(&user.access_token)).await;
    let restarted = app.spawn_peer().await; // same database file, fresh process-local state
    let (status, body) = restarted.get_auth("/api/v1/me", &user.access_token).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("token_revoked")));
}

/// Scale-out: a logout on instance A is refused by instance B within a second.
#[tokio::test]
async fn logout_is_seen_by_every_instance() {
    let Some(backend) = scale_out_backend() else { return };
    let a = spawn_app(&backend).await;
    let b = a.spawn_peer().await;
    let user = a.login("xena").await;
    assert_eq!(b.get_auth("/api/v1/me", &user.access_token).await.0, 200);
    // B remembers the verified token (the same verdict is handed out again): the logout must reach it anyway.
    let (tokens, now) = (&b.state.tokens, wxshop::auth::tokens::now_secs());
    let remembered = tokens.verify(&user.access_token, wxshop::auth::USER_AUDIENCE, now).unwrap();
    let again = tokens.verify(&user.access_token, wxshop::auth::USER_AUDIENCE, now).unwrap();
    assert!(std::sync::Arc::ptr_eq(&remembered, &again), "instance B caches verified tokens");
    a.call(reqwest::Method::POST, "/api/v1/auth/logout", None, Some(&user.access_token)).await;
    let refused =
        eventually(Duration::from_secs(1), || async { b.get_auth("/api/v1/me", &user.access_token).await.0 == 401 })
            .await;
    assert!(refused, "instance B still accepts the logged-out token after 1 s");
    // A refresh rotated on B is a reuse on A after the grace window, as one system.
    let user = a.login("xena:2").await;
    assert_eq!(refresh(&b, &user.refresh_token).await.0, 200);
    assert_eq!(refresh(&a, &user.refresh_token).await.0, 200, "within grace, A returns B's successor");
}

/// Scale-out: an instance answers revocation checks from its in-process mirror of the deny-list once it has
/// loaded it, including entries written before it started, and follows new ones as they are announced.
#[tokio::test]
async fn the_deny_list_mirror_loads_earlier_entries_and_follows_new_ones() {
    let Some(backend) = scale_out_backend() else { return };
    let a = spawn_app(&backend).await;
    let early = a.login("mirror-early").await;
    a.call(reqwest::Method::POST, "/api/v1/auth/logout", None, Some(&early.access_token)).await;
    let b = a.spawn_peer().await;
    let current =
        eventually(Duration::from_secs(3), || async { b.state.revocations.answered() == Answered::Mirror }).await;
    assert!(current, "the mirror loads and subscribes");
    let tasks: serde_json::Value =
        b.client.get(format!("{}/debug/tasks", b.ops_address)).send().await.unwrap().json().await.unwrap();
    assert_eq!(tasks["deny_list"], "mirror", "{tasks}");
    let (status, body) = b.get_auth("/api/v1/me", &early.access_token).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("token_revoked")), "loaded from the database at start");

    let late = b.login("mirror-late").await;
    assert_eq!(b.get_auth("/api/v1/me", &late.access_token).await.0, 200);
    a.call(reqwest::Method::POST, "/api/v1/auth/logout", None, Some(&late.access_token)).await;
    let refused =
        eventually(Duration::from_secs(1), || async { b.get_auth("/api/v1/me", &late.access_token).await.0 == 401 })
            .await;
    assert!(refused, "the announcement reached B's mirror");
    assert_eq!(b.state.revocations.answered(), Answered::Mirror, "answered by the mirror, not by a fallback");
}
