//! The embedded store's HTTP side (`storage.provider = "local"`), at `/files/<bucket>/...` on the main port: it
//! accepts the **same** protocol as S3 so clients and tests have one code path.
//!
//! - `POST /files/<bucket>`: a multipart form upload under a SigV4 POST policy, checked as S3 checks it (signature,
//!   expiry, every condition, every field covered, `content-length-range`); the file must be the last field.
//! - `PUT /files/<bucket>/<key>`: a SigV4-presigned PUT (`Content-Type` signed).
//! - `GET`/`HEAD /files/<bucket>/img/...`: the content-addressed images only, with `nosniff`, the sniffed type, a
//!   sandboxing CSP, a strong ETag (the SHA-256 in the name), `Range` and immutable caching. Nothing else is served.
//!
//! These routes are storage, not the shop's API: they stay out of the OpenAPI document and the API middleware (no
//! 1 MiB body limit, no compression), with their own body cap.

use std::collections::BTreeMap;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Multipart, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::error::AppError;
use crate::state::AppState;
use crate::uploads::policy::{self, Refusal};
use crate::uploads::storage::FILES_PATH;
use crate::uploads::IMMUTABLE;

/// Largest body the embedded store reads (wx.uploadFile's 10 MB, plus the form's other fields).
const MAX_BODY: usize = 10 * 1024 * 1024 + 64 * 1024;
const MAX_FILE: usize = 10 * 1024 * 1024;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(&format!("{FILES_PATH}/{{bucket}}"), post(post_object))
        .route(&format!("{FILES_PATH}/{{bucket}}/{{*key}}"), get(get_object).put(put_object))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

fn refused(refusal: Refusal) -> AppError {
    metrics::counter!("storage_refusals_total").increment(1);
    match refusal {
        Refusal::AccessDenied(why) => AppError::forbidden("access_denied", why),
        Refusal::TooLarge => AppError::BadRequest {
            code: "entity_too_large",
            message: "the file is larger than the policy allows".into(),
        },
        Refusal::TooSmall => AppError::BadRequest {
            code: "entity_too_small",
            message: "the file is smaller than the policy allows".into(),
        },
        Refusal::Malformed(why) => AppError::BadRequest { code: "malformed_post_request", message: why },
    }
}

fn check_bucket(state: &AppState, bucket: &str) -> Result<(), AppError> {
    if bucket != state.storage.bucket {
        return Err(AppError::not_found("bucket"));
    }
    Ok(())
}

/// Only clients' incoming keys may be written, and only keys object_store accepts as a path.
fn writable_key(key: &str) -> bool {
    key.starts_with("incoming/")
        && key.len() <= 200
        && key.split('/').all(|s| !s.is_empty() && s != "." && s != "..")
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_'))
}

async fn post_object(
    State(state): State<AppState>,
    Path(bucket): Path<String>,
    mut form: Multipart,
) -> Result<Response, AppError> {
    check_bucket(&state, &bucket)?;
    let malformed = |why: &str| refused(Refusal::Malformed(why.to_owned()));
    let mut fields = BTreeMap::new();
    let mut file: Option<Vec<u8>> = None;
    while let Some(mut field) = form.next_field().await.map_err(|e| malformed(&e.body_text()))? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            let mut data = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(|e| malformed(&e.body_text()))? {
                if data.len() + chunk.len() > MAX_FILE {
                    return Err(refused(Refusal::TooLarge));
                }
                data.extend_from_slice(&chunk);
            }
            file = Some(data);
            // S3 ignores what follows the file.
            break;
        }
        if fields.len() >= 32 {
            return Err(malformed("too many form fields"));
        }
        let value = field.text().await.map_err(|e| malformed(&e.body_text()))?;
        fields.insert(name, value);
    }
    let file = file.ok_or_else(|| malformed("no file field (it must come last)"))?;
    let now = crate::db::now_ms() / 1000;
    policy::verify_post(&bucket, &fields, file.len() as u64, now, &state.storage.credentials()).map_err(refused)?;
    let key = fields.get("key").cloned().unwrap_or_default();
    if !writable_key(&key) {
        return Err(refused(Refusal::AccessDenied("key outside the upload prefix".into())));
    }
    let content_type = fields.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-type")).map(|(_, v)| v.as_str());
    state.storage.put(&key, Bytes::from(file), content_type.unwrap_or("application/octet-stream"), None).await?;
    let status = match fields.get("success_action_status").map(String::as_str) {
        Some("200") => StatusCode::OK,
        Some("201") => StatusCode::CREATED,
        _ => StatusCode::NO_CONTENT,
    };
    Ok(status.into_response())
}

async fn put_object(
    State(state): State<AppState>,
    Path((bucket, key)): Path<(String, String)>,
    request: Request,
) -> Result<Response, AppError> {
    check_bucket(&state, &bucket)?;
    let (parts, body) = request.into_parts();
    let headers = parts.headers.clone();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let now = crate::db::now_ms() / 1000;
    let query = parts.uri.query().unwrap_or_default();
    policy::verify_presigned("PUT", parts.uri.path(), query, &header, now, &state.storage.credentials())
        .map_err(refused)?;
    if !writable_key(&key) {
        return Err(refused(Refusal::AccessDenied("key outside the upload prefix".into())));
    }
    let data = axum::body::to_bytes(body, MAX_FILE).await.map_err(|_| refused(Refusal::TooLarge))?;
    if data.is_empty() {
        return Err(refused(Refusal::TooSmall));
    }
    let content_type = header("content-type").unwrap_or_else(|| "application/octet-stream".into());
    state.storage.put(&key, data, &content_type, None).await?;
    Ok(StatusCode::OK.into_response())
}

async fn get_object(
    State(state): State<AppState>,
    Path((bucket, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    check_bucket(&state, &bucket)?;
    // Only the checked, content-addressed images are public: `img/ab/<sha256>.<ext>`.
    let sha = key
        .strip_prefix("img/")
        .and_then(|rest| rest.split_once('/'))
        .and_then(|(_, name)| name.split_once('.'))
        .map(|(sha, _)| sha)
        .filter(|sha| sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()));
    let (Some(sha), Some(content_type)) = (sha, crate::uploads::service::sniffed_type(&key)) else {
        return Err(AppError::not_found("file"));
    };
    let etag = format!("\"{sha}\"");
    let mut response_headers = HeaderMap::new();
    response_headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response_headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response_headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox"));
    response_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    response_headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    response_headers.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex is a valid header"));
    let if_none_match = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok());
    if if_none_match.is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*")) {
        return Ok((StatusCode::NOT_MODIFIED, response_headers).into_response());
    }
    let Some(data) = state.storage.get(&key).await? else {
        return Err(AppError::not_found("file"));
    };
    let total = data.len() as u64;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    // A Range for another version (If-Range with another validator) gets the whole file.
    let if_range_ok = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()).is_none_or(|v| v.trim() == etag);
    match range.filter(|_| if_range_ok).map(|r| parse_range(r, total)) {
        None => Ok((StatusCode::OK, response_headers, Body::from(data)).into_response()),
        Some(Some((start, end))) => {
            let value = format!("bytes {start}-{end}/{total}");
            response_headers.insert(header::CONTENT_RANGE, HeaderValue::from_str(&value).expect("digits"));
            let part = data.slice(start as usize..=end as usize);
            Ok((StatusCode::PARTIAL_CONTENT, response_headers, Body::from(part)).into_response())
        }
        Some(None) => {
            let value = format!("bytes */{total}");
            response_headers.insert(header::CONTENT_RANGE, HeaderValue::from_str(&value).expect("digits"));
            Ok((StatusCode::RANGE_NOT_SATISFIABLE, response_headers).into_response())
        }
    }
}

/// One `bytes=` range within `total` (inclusive ends), or `None` when it cannot be satisfied.
fn parse_range(value: &str, total: u64) -> Option<(u64, u64)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || total == 0 {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let (start, end) = match (start.trim(), end.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().ok()?;
            if n == 0 {
                return None;
            }
            (total.saturating_sub(n), total - 1)
        }
        (start, "") => (start.parse().ok()?, total - 1),
        (start, end) => (start.parse().ok()?, end.parse::<u64>().ok()?.min(total - 1)),
    };
    (start <= end && start < total).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=95-200", 100), Some((95, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-1", 100), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }

    #[test]
    fn only_incoming_keys_are_writable() {
        assert!(writable_key("incoming/avatar/u1/0123abcd"));
        assert!(!writable_key("img/ab/x.jpg"));
        assert!(!writable_key("incoming/../img/x"));
        assert!(!writable_key("incoming/a//b"));
        assert!(!writable_key("incoming/a/b.html"));
    }
}
