//! Tencent Cloud CDN, API 3.0: `PurgeUrlsCache` (≤ 1,000 URLs per call) and `DescribePurgeTasks`, signed with
//! TC3-HMAC-SHA256 (`X-TC-*` headers, JSON body). Errors come as HTTP 200 with `Response.Error`.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::cdn::{CallError, TaskState};
use crate::config::Secret;

pub const VERSION: &str = "2018-06-06";
pub const SERVICE: &str = "cdn";
pub const CONTENT_TYPE: &str = "application/json; charset=utf-8";

pub struct Tencent {
    http: reqwest::Client,
    endpoint: String,
    host: String,
    secret_id: String,
    secret_key: Secret,
}

impl Tencent {
    pub fn new(
        http: reqwest::Client,
        endpoint: &str,
        secret_id: String,
        secret_key: Secret,
    ) -> anyhow::Result<Tencent> {
        let url = url::Url::parse(endpoint)?;
        let host = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        Ok(Tencent { http, endpoint: endpoint.to_owned(), host, secret_id, secret_key })
    }

    async fn call(&self, action: &str, body: Value) -> Result<Value, CallError> {
        let payload = body.to_string();
        let timestamp = crate::db::now_ms() / 1000;
        let authorization =
            authorization(&self.secret_id, self.secret_key.expose(), &self.host, &payload, timestamp, SERVICE);
        let response = self
            .http
            .post(&self.endpoint)
            .header("Authorization", authorization)
            .header("Content-Type", CONTENT_TYPE)
            .header("Host", &self.host)
            .header("X-TC-Action", action)
            .header("X-TC-Version", VERSION)
            .header("X-TC-Timestamp", timestamp.to_string())
            .body(payload)
            .send()
            .await
            .map_err(CallError::transport)?;
        let status = response.status();
        if !status.is_success() {
            return Err(CallError {
                retryable: status.is_server_error() || status == 429,
                message: format!("HTTP {status}"),
            });
        }
        let body: Value = response.json().await.map_err(CallError::transport)?;
        let response = body.get("Response").cloned().unwrap_or(Value::Null);
        if let Some(error) = response.get("Error") {
            let code = error["Code"].as_str().unwrap_or_default();
            // Throttling and internal errors pass; a bad request or signature does not.
            let retryable = code.starts_with("InternalError")
                || code.starts_with("RequestLimitExceeded")
                || code == "LimitExceeded.CdnPurgeUrlExceedDayLimit"
                || code.starts_with("ResourceUnavailable");
            return Err(CallError {
                retryable,
                message: format!("{code}: {}", error["Message"].as_str().unwrap_or("")),
            });
        }
        Ok(response)
    }

    pub async fn purge(&self, urls: &[String]) -> Result<String, CallError> {
        let response = self.call("PurgeUrlsCache", json!({"Urls": urls})).await?;
        response["TaskId"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| CallError { retryable: true, message: "no TaskId in the answer".into() })
    }

    pub async fn task(&self, task_id: &str) -> Result<TaskState, CallError> {
        let response = self.call("DescribePurgeTasks", json!({"TaskId": task_id})).await?;
        let logs = response["PurgeLogs"].as_array().cloned().unwrap_or_default();
        let statuses: Vec<&str> = logs.iter().filter_map(|l| l["Status"].as_str()).collect();
        Ok(if statuses.iter().any(|s| *s == "fail" || *s == "invalid") {
            TaskState::Failed
        } else if !statuses.is_empty() && statuses.iter().all(|s| *s == "done") {
            TaskState::Done
        } else {
            TaskState::Running
        })
    }
}

/// The `Authorization` header of a TC3-HMAC-SHA256 POST with a JSON body (signed headers `content-type;host`).
pub fn authorization(
    secret_id: &str,
    secret_key: &str,
    host: &str,
    payload: &str,
    timestamp: i64,
    service: &str,
) -> String {
    let signature = signature(secret_key, host, CONTENT_TYPE, payload, timestamp, service);
    let date = utc_date(timestamp);
    format!(
        "TC3-HMAC-SHA256 Credential={secret_id}/{date}/{service}/tc3_request, SignedHeaders=content-type;host, Signature={signature}"
    )
}

pub fn signature(
    secret_key: &str,
    host: &str,
    content_type: &str,
    payload: &str,
    timestamp: i64,
    service: &str,
) -> String {
    let canonical_request = format!(
        "POST\n/\n\ncontent-type:{content_type}\nhost:{host}\n\ncontent-type;host\n{}",
        hex::encode(Sha256::digest(payload.as_bytes()))
    );
    let date = utc_date(timestamp);
    let string_to_sign = format!(
        "TC3-HMAC-SHA256\n{timestamp}\n{date}/{service}/tc3_request\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let hmac = crate::crypto::hmac_sha256;
    let secret_date = hmac(format!("TC3{secret_key}").as_bytes(), date.as_bytes());
    let secret_service = hmac(&secret_date, service.as_bytes());
    let secret_signing = hmac(&secret_service, b"tc3_request");
    hex::encode(hmac(&secret_signing, string_to_sign.as_bytes()))
}

fn utc_date(timestamp: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::OffsetDateTime::from_unix_timestamp(timestamp)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .format(format)
        .expect("a fixed format")
}

#[cfg(test)]
mod tests {
    /// Tencent Cloud's published signing example (API 3.0 "Signature v3"): CVM DescribeInstances on
    /// cvm.tencentcloudapi.com at 1551113065 with the documentation's example key.
    #[test]
    fn signature_matches_the_published_example() {
        let payload = r#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#;
        let signature = super::signature(
            "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
            "cvm.tencentcloudapi.com",
            "application/json; charset=utf-8",
            payload,
            1551113065,
            "cvm",
        );
        assert_eq!(signature, "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168");
    }
}
