//! WeChat server API client: `jscode2session` (login), `stable_token` (the app's access token, cached and
//! refreshed by one caller at a time, shared through Redis in scale-out) and `getuserphonenumber`.
//!
//! Real HTTP against `wechat.api_base`, so the same code talks to WeChat or to the built-in simulator. Response
//! bodies are never logged: they carry the `session_key`.

use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use tracing::Instrument;

use crate::config::Secret;
use crate::error::AppError;
use crate::kv::Redis;

/// What `jscode2session` returns. `session_key` stays server-side.
pub struct WechatSession {
    pub openid: String,
    pub unionid: Option<String>,
    pub session_key: String,
}

#[derive(Debug, thiserror::Error)]
pub enum WechatError {
    /// 40029 / 40163: the code is wrong, expired or already used.
    #[error("the WeChat code is invalid or already used")]
    CodeInvalid,
    /// 45011.
    #[error("WeChat rate limit reached")]
    RateLimited,
    /// -1 after a retry, timeouts, unreachable, malformed replies.
    #[error("WeChat is unavailable: {0}")]
    Unavailable(String),
    /// The user's side refused it for good (43101: no subscription to this template): not worth a retry.
    #[error("WeChat refused the message for this user (errcode {0})")]
    Refused(i64),
    /// Credential errors: the shop's app id or secret is wrong.
    #[error("WeChat rejected the shop's credentials (errcode {0}); check wechat.app_id and wechat.app_secret")]
    Misconfigured(i64),
}

impl From<WechatError> for AppError {
    fn from(error: WechatError) -> Self {
        match error {
            WechatError::CodeInvalid => AppError::unauthorized("wechat_code_invalid", error.to_string()),
            WechatError::RateLimited => AppError::TooManyRequests {
                code: "wechat_rate_limited",
                message: "WeChat is rate limiting this shop; retry shortly".into(),
                retry_after_secs: Some(1),
            },
            WechatError::Unavailable(ref cause) => {
                tracing::warn!(cause, "wechat unavailable");
                AppError::Unavailable {
                    code: "wechat_unavailable",
                    message: "WeChat is unavailable; retry shortly".into(),
                }
            }
            WechatError::Misconfigured(_) | WechatError::Refused(_) => AppError::Internal(anyhow::Error::new(error)),
        }
    }
}

/// Every WeChat reply may carry `errcode`/`errmsg`; 0 or absent is success.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    errcode: i64,
}

#[derive(Deserialize)]
struct SessionReply {
    openid: String,
    session_key: String,
    unionid: Option<String>,
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
    expires_in: u64,
}

#[derive(Deserialize)]
struct PhoneReply {
    phone_info: PhoneInfo,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PhoneInfo {
    phone_number: String,
}

struct CachedToken {
    token: String,
    refresh_after: Instant,
}

pub struct WechatClient {
    http: reqwest::Client,
    api_base: String,
    app_id: String,
    app_secret: Secret,
    redis: Option<Redis>,
    /// Held while refreshing: one refresh at a time in this process.
    token: tokio::sync::Mutex<Option<CachedToken>>,
}

impl WechatClient {
    pub fn new(
        api_base: &str,
        app_id: &str,
        app_secret: Secret,
        timeout: Duration,
        redis: Option<Redis>,
    ) -> anyhow::Result<WechatClient> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .user_agent(concat!("wxshop/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(WechatClient {
            http,
            api_base: api_base.trim_end_matches('/').to_owned(),
            app_id: app_id.to_owned(),
            app_secret,
            redis,
            token: tokio::sync::Mutex::new(None),
        })
    }

    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    /// Exchanges a `wx.login` code for the user's openid and session key.
    #[tracing::instrument(skip_all)]
    pub async fn code_to_session(&self, code: &str) -> Result<WechatSession, WechatError> {
        let url = format!("{}/sns/jscode2session", self.api_base);
        let query = [
            ("appid", self.app_id.as_str()),
            ("secret", self.app_secret.expose()),
            ("js_code", code),
            ("grant_type", "authorization_code"),
        ];
        let reply: SessionReply = self.call("jscode2session", || self.http.get(&url).query(&query)).await?;
        if reply.openid.is_empty() || reply.session_key.is_empty() {
            return Err(WechatError::Unavailable("jscode2session replied without openid or session_key".into()));
        }
        Ok(WechatSession { openid: reply.openid, unionid: reply.unionid, session_key: reply.session_key })
    }

    /// The phone number behind a `getPhoneNumber` button code.
    #[tracing::instrument(skip_all)]
    pub async fn phone_number(&self, code: &str) -> Result<String, WechatError> {
        let url = format!("{}/wxa/business/getuserphonenumber", self.api_base);
        for attempt in 0..2 {
            let token = self.access_token().await?;
            let result: Result<PhoneReply, WechatError> = self
                .call("getuserphonenumber", || {
                    self.http.post(&url).query(&[("access_token", token.as_str())]).json(&json!({ "code": code }))
                })
                .await;
            match result {
                Ok(reply) => return Ok(reply.phone_info.phone_number),
                // The access token was revoked or expired early: drop it and fetch a new one, once.
                Err(WechatError::Misconfigured(40001 | 42001)) if attempt == 0 => {
                    self.forget_access_token(&token).await
                }
                Err(other) => return Err(other),
            }
        }
        Err(WechatError::Unavailable("access token refused twice".into()))
    }

    /// Sends a subscribe message (订阅消息, `subscribeMessage.send`): `body` is WeChat's JSON (`touser`,
    /// `template_id`, `page`, `data`).
    #[tracing::instrument(skip_all)]
    pub async fn send_subscribe_message(&self, body: &serde_json::Value) -> Result<(), WechatError> {
        let url = format!("{}/cgi-bin/message/subscribe/send", self.api_base);
        for attempt in 0..2 {
            let token = self.access_token().await?;
            let result: Result<Envelope, WechatError> = self
                .call("subscribe_send", || self.http.post(&url).query(&[("access_token", token.as_str())]).json(body))
                .await;
            match result {
                Ok(_) => return Ok(()),
                Err(WechatError::Misconfigured(40001 | 42001)) if attempt == 0 => {
                    self.forget_access_token(&token).await
                }
                Err(other) => return Err(other),
            }
        }
        Err(WechatError::Unavailable("access token refused twice".into()))
    }

    /// Uploads an order's shipping information (`/wxa/sec/order/upload_shipping_info`), which WeChat requires of
    /// mini-program shops paid through WeChat Pay. `body` is WeChat's JSON (order key, logistics, payer).
    #[tracing::instrument(skip_all)]
    pub async fn upload_shipping_info(&self, body: &serde_json::Value) -> Result<(), WechatError> {
        let url = format!("{}/wxa/sec/order/upload_shipping_info", self.api_base);
        for attempt in 0..2 {
            let token = self.access_token().await?;
            let result: Result<Envelope, WechatError> = self
                .call("upload_shipping_info", || {
                    self.http.post(&url).query(&[("access_token", token.as_str())]).json(body)
                })
                .await;
            match result {
                Ok(_) => return Ok(()),
                Err(WechatError::Misconfigured(40001 | 42001)) if attempt == 0 => {
                    self.forget_access_token(&token).await
                }
                Err(other) => return Err(other),
            }
        }
        Err(WechatError::Unavailable("access token refused twice".into()))
    }

    /// The app's access token: cached until shortly before it expires; refreshed by one caller at a time, and in
    /// scale-out shared by every instance through Redis (under a lock, so the fleet refreshes it once).
    pub async fn access_token(&self) -> Result<String, WechatError> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| Instant::now() < t.refresh_after) {
            return Ok(token.token.clone());
        }
        let (token, valid_for) = match &self.redis {
            None => self.fetch_access_token().await?,
            Some(redis) => self.shared_access_token(redis).await?,
        };
        *cached = Some(CachedToken { token: token.clone(), refresh_after: Instant::now() + valid_for });
        Ok(token)
    }

    async fn shared_access_token(&self, redis: &Redis) -> Result<(String, Duration), WechatError> {
        let key = redis.key(&format!("wechat:access_token:{}", self.app_id));
        let lock = redis.key(&format!("wechat:access_token_lock:{}", self.app_id));
        let unavailable = |e: redis::RedisError| WechatError::Unavailable(format!("redis: {e}"));
        let mut conn = redis.conn();
        for _ in 0..100 {
            let (token, ttl_ms): (Option<String>, i64) = redis::pipe()
                .cmd("GET")
                .arg(&key)
                .cmd("PTTL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if let Some(token) = token.filter(|_| ttl_ms > 0) {
                return Ok((token, Duration::from_millis(ttl_ms as u64)));
            }
            let locked: Option<String> = redis::cmd("SET")
                .arg(&lock)
                .arg("1")
                .arg("NX")
                .arg("PX")
                .arg(10_000)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if locked.is_some() {
                let fetched = self.fetch_access_token().await;
                if let Ok((token, valid_for)) = &fetched {
                    let _: () = redis::cmd("SET")
                        .arg(&key)
                        .arg(token)
                        .arg("PX")
                        .arg(valid_for.as_millis().max(1) as u64)
                        .query_async(&mut conn)
                        .await
                        .map_err(unavailable)?;
                }
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&lock).query_async(&mut conn).await;
                return fetched;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(WechatError::Unavailable("timed out waiting for another instance to refresh the access token".into()))
    }

    /// Calls `stable_token`; returns the token and how long to use it (its lifetime less a safety margin).
    async fn fetch_access_token(&self) -> Result<(String, Duration), WechatError> {
        let url = format!("{}/cgi-bin/stable_token", self.api_base);
        let body = json!({
            "grant_type": "client_credential",
            "appid": self.app_id,
            "secret": self.app_secret.expose(),
            "force_refresh": false,
        });
        let reply: TokenReply = self.call("stable_token", || self.http.post(&url).json(&body)).await?;
        let margin = if reply.expires_in > 600 { 300 } else { reply.expires_in / 2 };
        Ok((reply.access_token, Duration::from_secs(reply.expires_in.saturating_sub(margin).max(1))))
    }

    async fn forget_access_token(&self, token: &str) {
        let mut cached = self.token.lock().await;
        if cached.as_ref().is_some_and(|c| c.token == token) {
            *cached = None;
        }
        if let Some(redis) = &self.redis {
            let mut conn = redis.conn();
            let key = redis.key(&format!("wechat:access_token:{}", self.app_id));
            let current: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut conn).await.unwrap_or(None);
            if current.as_deref() == Some(token) {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&key).query_async(&mut conn).await;
            }
        }
    }

    /// Sends a request built by `build`, retrying once when WeChat answers -1 (system busy), and maps errcodes.
    async fn call<T: DeserializeOwned>(
        &self,
        api: &'static str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<T, WechatError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let started = Instant::now();
            // A client span per attempt; WeChat (or the simulator) gets its `traceparent`.
            let span = tracing::info_span!(
                "wechat",
                otel.name = api,
                otel.kind = "client",
                otel.status_code = tracing::field::Empty,
                api,
                outcome = tracing::field::Empty,
            );
            let mut headers = reqwest::header::HeaderMap::new();
            crate::telemetry::inject_traceparent(&span, &mut headers);
            let outcome = self.send(build().headers(headers)).instrument(span.clone()).await;
            let label = match &outcome {
                Ok(_) => "ok",
                Err(WechatError::CodeInvalid) => "code_invalid",
                Err(WechatError::RateLimited) => "rate_limited",
                Err(WechatError::Unavailable(_)) => "unavailable",
                Err(WechatError::Misconfigured(_)) => "misconfigured",
                Err(WechatError::Refused(_)) => "refused",
            };
            span.record("outcome", label);
            if outcome.is_err() {
                span.record("otel.status_code", "ERROR");
            }
            metrics::counter!("wechat_requests_total", "api" => api, "outcome" => label).increment(1);
            metrics::histogram!("wechat_request_duration_seconds", "api" => api)
                .record(started.elapsed().as_secs_f64());
            match outcome {
                Ok(body) => {
                    return serde_json::from_slice(&body)
                        .map_err(|_| WechatError::Unavailable(format!("{api}: malformed reply")))
                }
                Err(WechatError::Unavailable(cause)) if cause == BUSY && attempt < 2 => {
                    tracing::info!(api, "WeChat busy (-1); retrying once");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Vec<u8>, WechatError> {
        let response = request.send().await.map_err(|e| {
            let kind = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "connection failed"
            } else {
                "request failed"
            };
            WechatError::Unavailable(kind.into())
        })?;
        if !response.status().is_success() {
            return Err(WechatError::Unavailable(format!("HTTP {}", response.status())));
        }
        let body = response.bytes().await.map_err(|_| WechatError::Unavailable("reading the reply failed".into()))?;
        let envelope: Envelope =
            serde_json::from_slice(&body).map_err(|_| WechatError::Unavailable("malformed reply".into()))?;
        match envelope.errcode {
            0 => Ok(body.to_vec()),
            -1 => Err(WechatError::Unavailable(BUSY.into())),
            40029 | 40163 => Err(WechatError::CodeInvalid),
            45011 => Err(WechatError::RateLimited),
            code @ (40001 | 40013 | 40125 | 42001) => Err(WechatError::Misconfigured(code)),
            43101 => Err(WechatError::Refused(43101)),
            other => Err(WechatError::Unavailable(format!("errcode {other}"))),
        }
    }
}

const BUSY: &str = "system busy (-1)";
