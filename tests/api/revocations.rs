//! The deny-list survives Redis losing its data and keeps working while Redis is down (scale-out), against a
//! Redis server each test starts, flushes, stops and restarts itself.

use std::time::Duration;

use reqwest::Method;
use wxshop::auth::revocation::Answered;

use crate::helpers::{eventually, scale_out_backend, spawn_app_with, TestApp, UserSession};
use crate::servers::OwnRedis;

async fn refused(app: &TestApp, user: &UserSession) -> bool {
    let (status, body) = app.get_auth("/api/v1/me", &user.access_token).await;
    assert!(status == 200 || status == 401, "only 200 or 401, got {status}: {body}");
    status == 401 && body["code"] == "token_revoked"
}

async fn on_mirror(app: &TestApp) -> bool {
    eventually(Duration::from_secs(5), || async { app.state.revocations.answered() == Answered::Mirror }).await
}

/// A logout and a ban, then Redis flushed, then restarted empty: both tokens stay refused by the running
/// instance (at every moment of its reload) and by an instance started afterwards.
#[tokio::test]
async fn revocations_survive_redis_losing_its_data() {
    let Some(backend) = scale_out_backend() else { return };
    let mut redis = OwnRedis::start().await;
    let url = redis.url();
    let app = spawn_app_with(&backend, |c| c.redis_url = Some(wxshop::config::DsnUrl::new(url))).await;
    assert!(on_mirror(&app).await);
    let admin = app.admin_token("admin").await;
    let logged_out = app.login("rev-logout").await;
    let banned = app.login("rev-banned").await;
    let kept = app.login("rev-kept").await;
    let (status, _, _) = app.call(Method::POST, "/api/v1/auth/logout", None, Some(&logged_out.access_token)).await;
    assert_eq!(status, 204);
    let (status, _, body) =
        app.call(Method::POST, &format!("/admin/api/v1/users/{}/ban", banned.user_id), None, Some(&admin)).await;
    assert!(status == 200 || status == 204, "{status} {body}");
    assert!(refused(&app, &logged_out).await && refused(&app, &banned).await);

    redis.flush().await;
    assert!(refused(&app, &logged_out).await, "after FLUSHALL");
    assert!(refused(&app, &banned).await, "after FLUSHALL");

    redis.stop().await;
    redis.restart().await;
    // Poll through the reconnect and reload: not a single check may pass.
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    while std::time::Instant::now() < deadline {
        assert!(refused(&app, &logged_out).await, "while Redis restarts empty");
        assert!(refused(&app, &banned).await, "while Redis restarts empty");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(on_mirror(&app).await, "the follower resubscribes and reloads");
    assert!(refused(&app, &logged_out).await && refused(&app, &banned).await);
    assert!(!refused(&app, &kept).await, "an untouched session still works");

    let peer = app.spawn_peer().await;
    assert!(refused(&peer, &logged_out).await, "a new instance, before its copy loads");
    assert!(on_mirror(&peer).await);
    assert!(refused(&peer, &logged_out).await, "a new instance");
    assert!(refused(&peer, &banned).await, "a new instance");
    assert!(!refused(&peer, &kept).await);
}

/// Redis stopped: logged-in reads still work, revoked tokens stay refused, and a logout made during the outage
/// holds everywhere once Redis is back.
#[tokio::test]
async fn a_redis_outage_falls_back_to_the_database() {
    let Some(backend) = scale_out_backend() else { return };
    let mut redis = OwnRedis::start().await;
    let url = redis.url();
    let app = spawn_app_with(&backend, |c| c.redis_url = Some(wxshop::config::DsnUrl::new(url))).await;
    let peer = app.spawn_peer().await;
    assert!(on_mirror(&app).await && on_mirror(&peer).await);
    let revoked = app.login("outage-revoked").await;
    let active = app.login("outage-active").await;
    let late = app.login("outage-late").await;
    app.call(Method::POST, "/api/v1/auth/logout", None, Some(&revoked.access_token)).await;
    let address_id = app.address_id(&active.access_token).await;
    let body = serde_json::json!({"items": [{"sku_id": 1, "quantity": 1}], "address_id": address_id});
    let (status, _, order) = app.post_keyed("/api/v1/orders", &body, &active.access_token, "outage-order").await;
    assert_eq!(status, 201, "{order}");
    let order_path = format!("/api/v1/orders/{}", order["id"]);

    redis.stop().await;
    let fell_back =
        eventually(Duration::from_secs(6), || async { peer.state.revocations.answered() == Answered::Database }).await;
    assert!(fell_back, "the peer notices its subscription is gone");
    for instance in [&app, &peer] {
        let (status, body) = instance.get_auth("/api/v1/me", &active.access_token).await;
        assert_eq!(status, 200, "a logged-in read during the outage: {body}");
        let (status, _) = instance.get_auth("/api/v1/orders?limit=5", &active.access_token).await;
        assert_eq!(status, 200);
        let (status, body) = instance.get_auth(&order_path, &active.access_token).await;
        assert_eq!(status, 200, "a cached read during the outage: {body}");
        assert!(refused(instance, &revoked).await, "revoked stays revoked during the outage");
    }
    // Logged out during the outage on one instance: durable, so refused on the other at once.
    let (status, _, _) = app.call(Method::POST, "/api/v1/auth/logout", None, Some(&late.access_token)).await;
    assert_eq!(status, 204, "a logout is acknowledged without Redis");
    assert!(refused(&peer, &late).await);

    redis.restart().await;
    assert!(on_mirror(&peer).await, "back on the mirror once Redis returns");
    assert!(refused(&peer, &late).await && refused(&peer, &revoked).await);
    assert!(!refused(&peer, &active).await);
}
