//! Aliyun CDN (RPC style, version 2018-05-10): `RefreshObjectCaches` (≤ 1,000 URLs per call, newline-separated)
//! and `DescribeRefreshTasks`, signed with the RPC signature (HMAC-SHA1 over the sorted, percent-encoded
//! parameters; key = secret + `&`), sent as a form POST.

use base64::Engine;
use serde_json::Value;

use crate::cdn::{CallError, TaskState};
use crate::config::Secret;

pub const VERSION: &str = "2018-05-10";

pub struct Aliyun {
    http: reqwest::Client,
    endpoint: String,
    access_key_id: String,
    secret: Secret,
}

impl Aliyun {
    pub fn new(http: reqwest::Client, endpoint: &str, access_key_id: String, secret: Secret) -> Aliyun {
        Aliyun { http, endpoint: endpoint.to_owned(), access_key_id, secret }
    }

    async fn call(&self, action: &str, params: &[(&str, String)]) -> Result<Value, CallError> {
        let timestamp = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z"))
            .expect("a fixed format");
        let mut all: Vec<(String, String)> = vec![
            ("Action".into(), action.into()),
            ("Format".into(), "JSON".into()),
            ("Version".into(), VERSION.into()),
            ("AccessKeyId".into(), self.access_key_id.clone()),
            ("SignatureMethod".into(), "HMAC-SHA1".into()),
            ("SignatureVersion".into(), "1.0".into()),
            ("SignatureNonce".into(), uuid::Uuid::new_v4().to_string()),
            ("Timestamp".into(), timestamp),
        ];
        all.extend(params.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let signature = sign("POST", &all, self.secret.expose());
        all.push(("Signature".into(), signature));
        let body: String = all
            .iter()
            .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let response = self
            .http
            .post(&self.endpoint)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(CallError::transport)?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let code = body["Code"].as_str().unwrap_or_default();
            let retryable = status.is_server_error() || status == 429 || code.starts_with("Throttling");
            return Err(CallError {
                retryable,
                message: format!("HTTP {status} {code}: {}", body["Message"].as_str().unwrap_or("")),
            });
        }
        Ok(body)
    }

    pub async fn purge(&self, urls: &[String]) -> Result<String, CallError> {
        let params = [("ObjectPath", urls.join("\n")), ("ObjectType", "File".to_owned())];
        let body = self.call("RefreshObjectCaches", &params).await?;
        body["RefreshTaskId"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| CallError { retryable: true, message: "no RefreshTaskId in the answer".into() })
    }

    pub async fn task(&self, task_id: &str) -> Result<TaskState, CallError> {
        let body = self.call("DescribeRefreshTasks", &[("TaskId", task_id.to_owned())]).await?;
        let tasks = body["Tasks"]["CDNTask"].as_array().cloned().unwrap_or_default();
        let statuses: Vec<&str> = tasks.iter().filter_map(|t| t["Status"].as_str()).collect();
        Ok(if statuses.contains(&"Failed") {
            TaskState::Failed
        } else if !statuses.is_empty() && statuses.iter().all(|s| *s == "Complete") {
            TaskState::Done
        } else {
            TaskState::Running
        })
    }
}

/// The RPC signature of `params` (without `Signature`) for `method`.
pub fn sign(method: &str, params: &[(String, String)], secret: &str) -> String {
    let mut sorted: Vec<(String, String)> =
        params.iter().map(|(k, v)| (percent_encode(k), percent_encode(v))).collect();
    sorted.sort();
    let canonical = sorted.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
    let string_to_sign = format!("{method}&{}&{}", percent_encode("/"), percent_encode(&canonical));
    let mac = crate::crypto::hmac_sha1(format!("{secret}&").as_bytes(), string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac)
}

/// Aliyun's percent-encoding: RFC 3986 unreserved characters kept, everything else `%XX` (so a space is `%20`).
pub fn percent_encode(value: &str) -> String {
    crate::crypto::uri_encode(value, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Aliyun's published RPC signature example (ECS DescribeRegions with `testid`/`testsecret`).
    #[test]
    fn signature_matches_the_published_example() {
        let params: Vec<(String, String)> = [
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Format", "XML"),
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("Version", "2014-05-26"),
            ("SignatureVersion", "1.0"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(sign("GET", &params, "testsecret"), "OLeaidS1JvxuMvnyHOwuJ+uX5qY=");
    }
}
