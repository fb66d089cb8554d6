//! The WeChat Pay v3 client: real HTTP against `pay.api_base` (WeChat, or the simulator in dev mode).
//!
//! Every request is signed over the exact bytes sent and names the key we trust in `Wechatpay-Serial`; every 2xx
//! is verified (timestamp window, key by serial, signature) and one that does not verify is an *unknown outcome*,
//! never a success. Error answers are unsigned, so their codes are hints: callers confirm with a signed query
//! before moving money. Only what WeChat calls retryable (`SYSTEM_ERROR`, `BANK_ERROR`, `FREQUENCY_LIMITED`,
//! timeouts and other unknown outcomes) is retried here, with the same body.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::payments::config::PayKeys;
use crate::payments::model::{RefundInfo, Transaction};
use crate::payments::sign::{self, SignedHeaders};

/// What went wrong with a call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PayError {
    /// WeChat Pay answered with an error code (unsigned: a hint, never proof of anything about money).
    #[error("WeChat Pay answered {status} {code}: {message}")]
    Rejected { status: u16, code: String, message: String },
    /// Nobody knows what happened: a timeout, a refused connection, a 5xx without a code, or a 2xx whose signature
    /// does not verify. Resolved by a query, never by assuming failure.
    #[error("WeChat Pay outcome unknown: {0}")]
    Unknown(String),
}

impl PayError {
    pub fn code(&self) -> Option<&str> {
        match self {
            PayError::Rejected { code, .. } => Some(code),
            PayError::Unknown(_) => None,
        }
    }

    /// Retryable with the same parameters, per WeChat's error tables.
    fn retryable(&self) -> bool {
        match self {
            PayError::Rejected { code, .. } => {
                matches!(code.as_str(), "SYSTEM_ERROR" | "BANK_ERROR" | "FREQUENCY_LIMITED")
            }
            PayError::Unknown(_) => true,
        }
    }
}

/// What `GET /v3/bill/tradebill` answers.
#[derive(Debug, Deserialize)]
pub struct BillInfo {
    pub hash_type: String,
    pub hash_value: String,
    pub download_url: String,
}

#[derive(Deserialize)]
struct PrepayReply {
    prepay_id: String,
}

#[derive(Deserialize)]
struct ErrorReply {
    code: String,
    #[serde(default)]
    message: String,
}

pub struct PayClient {
    http: reqwest::Client,
    base: String,
    keys: Arc<PayKeys>,
    /// Attempts of a retryable call (1 = no retry).
    attempts: u32,
}

/// The canonical URL WeChat signs: the path and query relative to the API base.
fn canonical(base: &str, url: &str) -> String {
    if let Some(rest) = url.strip_prefix(base) {
        return rest.to_owned();
    }
    url::Url::parse(url)
        .map(|u| match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_owned(),
        })
        .unwrap_or_else(|_| url.to_owned())
}

impl PayClient {
    pub fn new(api_base: &str, keys: Arc<PayKeys>, timeout: Duration) -> anyhow::Result<PayClient> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .user_agent(concat!("wxshop/", env!("CARGO_PKG_VERSION"), " (WeChatPay-APIv3)"))
            .build()?;
        Ok(PayClient { http, base: api_base.trim_end_matches('/').to_owned(), keys, attempts: 3 })
    }

    pub fn keys(&self) -> &PayKeys {
        &self.keys
    }

    /// One signed request; a 2xx comes back only when its signature verifies.
    async fn send_once(&self, method: &str, url: &str, body: Option<&[u8]>) -> Result<(u16, Bytes), PayError> {
        let path = canonical(&self.base, url);
        let timestamp = crate::db::now_ms() / 1000;
        let nonce = sign::nonce();
        let authorization =
            self.keys.merchant.authorization(method, &path, timestamp, &nonce, body.unwrap_or_default());
        let mut request = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url),
        }
        .header("Authorization", authorization)
        .header("Accept", "application/json")
        .header("Wechatpay-Serial", &self.keys.accept_serial);
        if let Some(body) = body {
            request = request.header("Content-Type", "application/json").body(body.to_vec());
        }
        let response = request.send().await.map_err(|e| PayError::Unknown(format!("{method} {path}: {e}")))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        if let Some(id) = headers.get("request-id").and_then(|v| v.to_str().ok()) {
            tracing::debug!(request_id = id, status, path, "WeChat Pay answered");
        }
        let bytes = response.bytes().await.map_err(|e| PayError::Unknown(format!("{method} {path}: {e}")))?;
        if !(200..300).contains(&status) {
            return Err(match serde_json::from_slice::<ErrorReply>(&bytes) {
                Ok(reply) => PayError::Rejected { status, code: reply.code, message: reply.message },
                Err(_) if status >= 500 => PayError::Unknown(format!("{method} {path}: HTTP {status}")),
                Err(_) => PayError::Rejected { status, code: format!("HTTP_{status}"), message: String::new() },
            });
        }
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let signed = SignedHeaders {
            timestamp: header("wechatpay-timestamp"),
            nonce: header("wechatpay-nonce"),
            signature: header("wechatpay-signature"),
            serial: header("wechatpay-serial"),
        };
        sign::verify(signed, &bytes, crate::db::now_ms() / 1000, |serial| self.keys.trusted.get(serial).cloned())
            .map_err(|e| {
                metrics::counter!("pay_response_unverified_total").increment(1);
                PayError::Unknown(format!("{method} {path}: the {status} answer is not trusted: {e}"))
            })?;
        Ok((status, bytes))
    }

    /// A call, retried (same body) while the error is retryable and attempts remain.
    async fn send(&self, method: &str, url: &str, body: Option<&[u8]>, retry: bool) -> Result<(u16, Bytes), PayError> {
        let mut attempt = 1;
        loop {
            let started = std::time::Instant::now();
            let result = self.send_once(method, url, body).await;
            let outcome = match &result {
                Ok(_) => "ok",
                Err(PayError::Rejected { .. }) => "rejected",
                Err(PayError::Unknown(_)) => "unknown",
            };
            metrics::histogram!("pay_call_seconds", "outcome" => outcome).record(started.elapsed().as_secs_f64());
            match result {
                Err(error) if retry && error.retryable() && attempt < self.attempts => {
                    tracing::info!(%error, attempt, "WeChat Pay call failed; retrying with the same parameters");
                    tokio::time::sleep(Duration::from_millis(200 * 3u64.pow(attempt - 1))).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, PayError> {
        serde_json::from_slice(bytes).map_err(|e| PayError::Unknown(format!("a signed answer we cannot read: {e}")))
    }

    /// `POST /v3/pay/transactions/jsapi` with the exact `body`; the prepay id.
    pub async fn prepay_jsapi(&self, body: &[u8]) -> Result<String, PayError> {
        let url = format!("{}/v3/pay/transactions/jsapi", self.base);
        let (_, bytes) = self.send("POST", &url, Some(body), true).await?;
        Ok(Self::parse::<PrepayReply>(&bytes)?.prepay_id)
    }

    /// `GET /v3/pay/transactions/out-trade-no/{no}?mchid=`.
    pub async fn query(&self, out_trade_no: &str) -> Result<Transaction, PayError> {
        let url = format!(
            "{}/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid={}",
            self.base, self.keys.merchant.mch_id
        );
        let (_, bytes) = self.send("GET", &url, None, true).await?;
        Self::parse(&bytes)
    }

    /// `POST /v3/pay/transactions/out-trade-no/{no}/close`: Ok on 204. Not retried here: `FREQUENCY_LIMITED` on a
    /// close means the user may be paying right now, which the caller must settle by a query first.
    pub async fn close(&self, out_trade_no: &str) -> Result<(), PayError> {
        let url = format!("{}/v3/pay/transactions/out-trade-no/{out_trade_no}/close", self.base);
        let body = serde_json::to_vec(&serde_json::json!({ "mchid": self.keys.merchant.mch_id })).expect("serializes");
        self.send("POST", &url, Some(&body), false).await.map(|_| ())
    }

    /// `POST /v3/refund/domestic/refunds` with the exact `body` (same `out_refund_no` refunds once).
    pub async fn refund(&self, body: &[u8]) -> Result<RefundInfo, PayError> {
        let url = format!("{}/v3/refund/domestic/refunds", self.base);
        let (_, bytes) = self.send("POST", &url, Some(body), true).await?;
        Self::parse(&bytes)
    }

    /// `GET /v3/refund/domestic/refunds/{out_refund_no}`.
    pub async fn query_refund(&self, out_refund_no: &str) -> Result<RefundInfo, PayError> {
        let url = format!("{}/v3/refund/domestic/refunds/{out_refund_no}", self.base);
        let (_, bytes) = self.send("GET", &url, None, true).await?;
        Self::parse(&bytes)
    }

    /// `GET /v3/bill/tradebill?bill_date=&bill_type=ALL&tar_type=GZIP`, then the file itself: gunzipped, its SHA-1
    /// checked against the signed `hash_value` (the download itself is unsigned, by WeChat's design).
    pub async fn trade_bill(&self, date: &str) -> Result<String, PayError> {
        let url = format!("{}/v3/bill/tradebill?bill_date={date}&bill_type=ALL&tar_type=GZIP", self.base);
        let (_, bytes) = self.send("GET", &url, None, true).await?;
        let info: BillInfo = Self::parse(&bytes)?;
        let file = self.download(&info.download_url).await?;
        use sha1::Digest;
        let digest: String = sha1::Sha1::digest(&file).iter().map(|b| format!("{b:02x}")).collect();
        if !info.hash_type.eq_ignore_ascii_case("SHA1") || !digest.eq_ignore_ascii_case(&info.hash_value) {
            return Err(PayError::Unknown(format!("the bill of {date} does not match its SHA-1; refusing it")));
        }
        let mut text = String::new();
        flate2::read::GzDecoder::new(file.as_ref())
            .read_to_string(&mut text)
            .map_err(|e| PayError::Unknown(format!("the bill of {date} is not gzip text: {e}")))?;
        Ok(text)
    }

    /// A signed GET whose answer is unsigned (the bill file).
    async fn download(&self, url: &str) -> Result<Bytes, PayError> {
        if !url.starts_with(&self.base) {
            return Err(PayError::Unknown(format!("the bill download URL is not under {}", self.base)));
        }
        let path = canonical(&self.base, url);
        let timestamp = crate::db::now_ms() / 1000;
        let nonce = sign::nonce();
        let authorization = self.keys.merchant.authorization("GET", &path, timestamp, &nonce, b"");
        let response = self
            .http
            .get(url)
            .header("Authorization", authorization)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| PayError::Unknown(format!("bill download: {e}")))?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| PayError::Unknown(format!("bill download: {e}")))?;
        if status != 200 {
            return Err(PayError::Unknown(format!("bill download: HTTP {status}")));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::canonical;

    #[test]
    fn the_signed_url_is_relative_to_the_base() {
        let base = "http://127.0.0.1:1/__simulator/pay";
        assert_eq!(canonical(base, "http://127.0.0.1:1/__simulator/pay/v3/x?mchid=1"), "/v3/x?mchid=1");
        assert_eq!(canonical("https://api.mch.weixin.qq.com", "https://api.mch.weixin.qq.com/v3/y"), "/v3/y");
    }
}
