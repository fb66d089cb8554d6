//! Forged and malformed access tokens are refused with 401 and the right code, on user and admin routes alike.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::helpers::{backends, spawn_app, TestApp};

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

fn hs256(secret: &str, signing_input: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(signing_input.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// A token with any header and claims, HMAC-SHA256-signed with `secret` (whatever the header claims).
fn forge(header: Value, claims: &Value, secret: &str) -> String {
    let input = format!("{}.{}", b64(&header), b64(claims));
    let signature = hs256(secret, &input);
    format!("{input}.{signature}")
}

fn decode_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

async fn expect_401(app: &TestApp, path: &str, token: &str, code: &str, case: &str) {
    let (status, headers, body) = app.call(reqwest::Method::GET, path, None, Some(token)).await;
    assert_eq!(status, 401, "{case}: {body}");
    assert_eq!(body["code"], code, "{case}: {body}");
    assert!(headers["www-authenticate"].to_str().unwrap().starts_with("Bearer"), "{case}");
}

#[tokio::test]
async fn forged_tokens_are_refused() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let secret = app.config.auth.jwt_secret.expose().to_owned();
        let user = app.login("mallory").await;
        let claims = decode_claims(&user.access_token);
        // The genuine token works, and a correctly re-signed copy of its claims too: the forgeries below differ
        // from it only in what each case names.
        let resigned = forge(json!({"alg": "HS256", "typ": "JWT"}), &claims, &secret);
        assert_eq!(app.get_auth("/api/v1/me", &resigned).await.0, 200);

        let input = format!("{}.{}", b64(&json!({"alg": "HS256", "typ": "JWT"})), b64(&claims));
        let mut other_user = claims.clone();
        other_user["sub"] = json!("999");
        let tampered_payload = format!(
            "{}.{}.{}",
            user.access_token.split('.').next().unwrap(),
            b64(&other_user),
            user.access_token.split('.').nth(2).unwrap()
        );
        let hs384 = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS384),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap();
        let hs512 = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap();
        let cases = [
            ("alg none", format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&claims))),
            ("alg None", format!("{}.{}.", b64(&json!({"alg": "None", "typ": "JWT"})), b64(&claims))),
            ("alg none with a signature", forge(json!({"alg": "none"}), &claims, &secret)),
            ("HS384 with the right key", hs384),
            ("HS512 with the right key", hs512),
            (
                "RS256 signed with the HMAC key as public key",
                forge(json!({"alg": "RS256", "typ": "JWT"}), &claims, &secret),
            ),
            ("empty signature", format!("{input}.")),
            ("modified payload", tampered_payload),
            ("wrong key", forge(json!({"alg": "HS256"}), &claims, "another-secret-another-secret-another-secret")),
            ("garbage", "not.a.jwt".to_owned()),
            ("two parts", input.clone()),
        ];
        for (case, token) in cases {
            expect_401(&app, "/api/v1/me", &token, "token_invalid", case).await;
        }
    }
}

#[tokio::test]
async fn every_claim_is_required_and_checked() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let secret = app.config.auth.jwt_secret.expose().to_owned();
        let claims = decode_claims(&app.login("trent").await.access_token);
        let header = json!({"alg": "HS256", "typ": "JWT"});
        for claim in ["sub", "exp", "iat", "jti", "iss", "aud", "typ", "sid"] {
            let mut missing = claims.clone();
            missing.as_object_mut().unwrap().remove(claim);
            expect_401(&app, "/api/v1/me", &forge(header.clone(), &missing, &secret), "token_invalid", claim).await;
        }
        let now = claims["iat"].as_u64().unwrap();
        for (claim, value, code) in [
            ("iss", json!("someone-else"), "token_invalid"),
            ("aud", json!("wxshop-admin"), "token_invalid"),
            ("aud", json!("other-app"), "token_invalid"),
            ("typ", json!("refresh"), "token_invalid"),
            ("sub", json!("alice"), "token_invalid"),
            ("iat", json!(now + 3_600), "token_invalid"),
            ("exp", json!(now - 120), "token_expired"),
        ] {
            let mut wrong = claims.clone();
            wrong[claim] = value.clone();
            expect_401(&app, "/api/v1/me", &forge(header.clone(), &wrong, &secret), code, &format!("{claim}={value}"))
                .await;
        }
        // Within the 30 s leeway an expired token still passes; beyond it, not.
        let mut just_expired = claims.clone();
        just_expired["exp"] = json!(now - 10);
        assert_eq!(app.get_auth("/api/v1/me", &forge(header.clone(), &just_expired, &secret)).await.0, 200);
    }
}

#[tokio::test]
async fn tokens_only_work_where_they_belong() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let user = app.login("peggy").await;
        let admin = app.admin_token("admin").await;
        // A refresh token is not an access token.
        expect_401(&app, "/api/v1/me", &user.refresh_token, "token_invalid", "refresh as access").await;
        // An access token is not a refresh token.
        let (status, body) = app.post("/api/v1/auth/refresh", &json!({"refresh_token": user.access_token}), None).await;
        assert_eq!((status, body["code"].as_str()), (401, Some("token_invalid")));
        // Admin tokens on user routes, user tokens on admin routes.
        expect_401(&app, "/api/v1/me", &admin, "token_invalid", "admin on user route").await;
        expect_401(&app, "/admin/api/v1/me", &user.access_token, "token_invalid", "user on admin route").await;
        expect_401(&app, "/admin/api/v1/categories", &user.access_token, "token_invalid", "user on admin route").await;
        // An admin refresh token cannot refresh a user session and the reverse.
        let (status, _) =
            app.post("/admin/api/v1/auth/refresh", &json!({"refresh_token": user.refresh_token}), None).await;
        assert_eq!(status, 401);
        assert_eq!(app.get_auth("/admin/api/v1/me", &admin).await.0, 200);
    }
}

#[tokio::test]
async fn missing_or_malformed_authorization_is_token_missing() {
    let app = spawn_app(&crate::helpers::Backend::Embedded).await;
    let (status, headers, body) = app.call(reqwest::Method::GET, "/api/v1/me", None, None).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("token_missing")));
    assert!(headers.contains_key("www-authenticate"));
    for value in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "token abc"] {
        let response = app.client.get(app.url("/api/v1/me")).header("authorization", value).send().await.unwrap();
        assert_eq!(response.status(), 401, "{value}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "token_missing", "{value}");
    }
}
