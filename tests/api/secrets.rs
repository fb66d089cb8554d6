//! The WeChat `session_key` never leaves the server: not in any response, not in any log line (the real binary,
//! logging everything at TRACE), not in the clear in the database.

use serde_json::{json, Value};
use wxshop::crypto::SecretBox;

use crate::helpers::{backends, spawn_app, BinaryServer};

#[tokio::test]
async fn the_session_key_appears_in_no_response_and_no_log_line() {
    for backend in backends() {
        // The test app creates (and later drops) the database and Redis prefix; the binary shares them.
        let app = spawn_app(&backend).await;
        let config = &app.config;
        let database_url = config.database_url();
        let mut env = vec![
            ("RUST_LOG", "trace"),
            ("WXSHOP_DATABASE_URL", database_url.as_str()),
            ("WXSHOP_REDIS_PREFIX", config.redis_prefix.as_str()),
        ];
        if let Some(redis) = &config.redis_url {
            env.push(("WXSHOP_REDIS_URL", redis.expose()));
        }
        let mut server = BinaryServer::start(&env);
        let base = server.base.clone();
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let call = |method: reqwest::Method, path: &str, body: Option<Value>, token: Option<String>| {
            let mut request = client.request(method, format!("{base}{path}"));
            if let Some(body) = body {
                request = request.json(&body);
            }
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            async move {
                let response = request.send().await.unwrap();
                let headers = format!("{:?}", response.headers());
                (response.status().as_u16(), headers, response.text().await.unwrap())
            }
        };
        let mut responses = Vec::new();
        let (status, headers, login) =
            call(reqwest::Method::POST, "/api/v1/auth/wechat/login", Some(json!({"code": "sybil"})), None).await;
        assert_eq!(status, 200, "{login}");
        let body: Value = serde_json::from_str(&login).unwrap();
        let token = body["access_token"].as_str().unwrap().to_owned();
        let user_id = body["user"]["id"].as_i64().unwrap();
        responses.push(format!("{headers}{login}"));
        for (method, path, body) in [
            (reqwest::Method::GET, "/api/v1/me", None),
            (reqwest::Method::POST, "/api/v1/me/phone", Some(json!({"code": "phone-13800001234"}))),
            (reqwest::Method::PATCH, "/api/v1/me", Some(json!({"nickname": "sybil"}))),
            (reqwest::Method::POST, "/api/v1/auth/refresh", Some(json!({"refresh_token": body["refresh_token"]}))),
            (reqwest::Method::POST, "/api/v1/auth/wechat/login", Some(json!({"code": "sybil:2"}))),
        ] {
            let (_, headers, body) = call(method, path, body, Some(token.clone())).await;
            responses.push(format!("{headers}{body}"));
        }
        server.stop().await;

        let sealed: String = sqlx::query_scalar("SELECT session_key_enc FROM app_user WHERE id = ?")
            .bind(user_id)
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
        let session_key =
            String::from_utf8(SecretBox::new(&config.data_key().unwrap()).unwrap().open(&sealed).unwrap()).unwrap();
        assert_eq!(session_key.len(), 24, "a base64 16-byte key: {session_key}");
        assert!(!sealed.contains(&session_key), "stored sealed, not in the clear");
        for response in &responses {
            assert!(!response.contains(&session_key), "a response carries the session key: {response}");
            assert!(!response.contains("session_key"), "a response mentions session_key: {response}");
        }
        let logged = server.lines.lock().unwrap().join("\n");
        assert!(logged.lines().count() > 50, "the capture works: {} lines", logged.lines().count());
        assert!(logged.contains("jscode2session"), "the WeChat exchange itself was traced");
        assert!(!logged.contains(wxshop::simulator::SIM_APP_SECRET), "a log line carries the WeChat app secret");
        assert!(!logged.contains(&session_key), "a log line carries the session key");
        assert!(!logged.contains(&token), "a log line carries an access token");
        assert!(!logged.contains(config.auth.jwt_secret.expose()), "a log line carries the JWT key");
    }
}
