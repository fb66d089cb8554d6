//! The upload credential a client takes straight to storage: one POST policy document (key, size range, content
//! type, expiry), signed in the dialect of `storage.provider`, and the presigned PUT for clients that send an
//! ArrayBuffer instead of a multipart form.
//!
//! - `s3` (and the embedded store): AWS Signature V4 over the base64 policy (`x-amz-*` fields);
//! - `cos`: Tencent COS `q-sign-*` (HMAC-SHA1 of the policy's SHA-1 under a key derived from the key time);
//! - `oss`: Aliyun OSS V4 (`x-oss-*`, HMAC-SHA256 chain ending in `aliyun_v4_request`).
//!
//! No crate signs POST policies, so this is ours; the embedded store verifies with the same functions
//! ([`verify_post`], [`verify_presigned`]). The policy is built with a JSON serializer, never by concatenation.

use std::collections::BTreeMap;

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::uploads::config::Provider;

/// What one upload may be: decided by the server, pinned by the signature.
#[derive(Debug, Clone)]
pub struct UploadGrant<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub content_type: &'a str,
    pub max_bytes: u64,
    /// Unix seconds.
    pub now: i64,
    pub expires_at: i64,
}

/// The keys a dialect signs with.
#[derive(Debug, Clone)]
pub struct Credentials<'a> {
    pub access_key_id: &'a str,
    pub secret: &'a str,
    pub region: &'a str,
}

/// The status the storage answers a successful form upload with (what `wx.uploadFile` sees).
pub const SUCCESS_STATUS: &str = "204";

/// The form fields of a POST upload (the file goes last, after them), signed for `provider`.
pub fn post_fields(provider: Provider, grant: &UploadGrant<'_>, creds: &Credentials<'_>) -> BTreeMap<String, String> {
    let expiration = iso8601_millis(grant.expires_at);
    let mut conditions = vec![
        json!({"bucket": grant.bucket}),
        json!(["eq", "$key", grant.key]),
        json!(["content-length-range", 1, grant.max_bytes]),
        json!(["eq", "$Content-Type", grant.content_type]),
        json!({"success_action_status": SUCCESS_STATUS}),
    ];
    let mut fields = BTreeMap::new();
    fields.insert("key".to_owned(), grant.key.to_owned());
    fields.insert("Content-Type".to_owned(), grant.content_type.to_owned());
    fields.insert("success_action_status".to_owned(), SUCCESS_STATUS.to_owned());
    match provider {
        Provider::Local | Provider::S3 => {
            let date = amz_date(grant.now);
            let credential = format!("{}/{}/{}/s3/aws4_request", creds.access_key_id, &date[..8], creds.region);
            conditions.push(json!({"x-amz-algorithm": "AWS4-HMAC-SHA256"}));
            conditions.push(json!({"x-amz-credential": credential}));
            conditions.push(json!({"x-amz-date": date}));
            let policy = encode_policy(&expiration, conditions);
            let key = sigv4_key("AWS4", creds.secret, &date[..8], creds.region, "s3", "aws4_request");
            fields.insert("x-amz-signature".to_owned(), hex::encode(hmac256(&key, policy.as_bytes())));
            fields.insert("x-amz-algorithm".to_owned(), "AWS4-HMAC-SHA256".to_owned());
            fields.insert("x-amz-credential".to_owned(), credential);
            fields.insert("x-amz-date".to_owned(), date);
            fields.insert("policy".to_owned(), policy);
        }
        Provider::Cos => {
            let key_time = format!("{};{}", grant.now, grant.expires_at);
            conditions.push(json!({"q-sign-algorithm": "sha1"}));
            conditions.push(json!({"q-ak": creds.access_key_id}));
            conditions.push(json!({"q-sign-time": key_time}));
            let policy_json = policy_json(&expiration, conditions);
            fields.insert("q-signature".to_owned(), cos_signature(creds.secret, &key_time, &policy_json));
            fields.insert("q-sign-algorithm".to_owned(), "sha1".to_owned());
            fields.insert("q-ak".to_owned(), creds.access_key_id.to_owned());
            fields.insert("q-key-time".to_owned(), key_time);
            fields.insert("policy".to_owned(), base64::engine::general_purpose::STANDARD.encode(policy_json));
        }
        Provider::Oss => {
            let date = amz_date(grant.now);
            let credential = format!("{}/{}/{}/oss/aliyun_v4_request", creds.access_key_id, &date[..8], creds.region);
            conditions.push(json!({"x-oss-signature-version": "OSS4-HMAC-SHA256"}));
            conditions.push(json!({"x-oss-credential": credential}));
            conditions.push(json!({"x-oss-date": date}));
            let policy = encode_policy(&expiration, conditions);
            let key = sigv4_key("aliyun_v4", creds.secret, &date[..8], creds.region, "oss", "aliyun_v4_request");
            fields.insert("x-oss-signature".to_owned(), hex::encode(hmac256(&key, policy.as_bytes())));
            fields.insert("x-oss-signature-version".to_owned(), "OSS4-HMAC-SHA256".to_owned());
            fields.insert("x-oss-credential".to_owned(), credential);
            fields.insert("x-oss-date".to_owned(), date);
            fields.insert("policy".to_owned(), policy);
        }
    }
    fields
}

/// A presigned `PUT` URL (SigV4 query string, `UNSIGNED-PAYLOAD`) for `https?://host/<bucket>/<key>` (path style)
/// binding `Content-Type`; the client must send exactly that header.
pub fn presigned_put(endpoint: &url::Url, grant: &UploadGrant<'_>, creds: &Credentials<'_>) -> String {
    let path = format!("{}/{}/{}", endpoint.path().trim_end_matches('/'), grant.bucket, grant.key);
    let host = host_header(endpoint);
    let query = presign_query(
        "PUT",
        &host,
        &path,
        &[("content-type", grant.content_type)],
        grant.now,
        (grant.expires_at - grant.now).max(1),
        creds,
    );
    let mut url = endpoint.clone();
    url.set_path(&path);
    format!("{}?{query}", url.as_str().trim_end_matches('?'))
}

/// The `X-Amz-*` query string of a presigned request (the signature last), headers given lowercase.
pub fn presign_query(
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    now: i64,
    expires_secs: i64,
    creds: &Credentials<'_>,
) -> String {
    let date = amz_date(now);
    let credential = format!("{}/{}/{}/s3/aws4_request", creds.access_key_id, &date[..8], creds.region);
    let mut signed: Vec<(&str, &str)> = headers.to_vec();
    signed.push(("host", host));
    signed.sort();
    let signed_names = signed.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(";");
    let params = [
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256".to_owned()),
        ("X-Amz-Credential", credential),
        ("X-Amz-Date", date.clone()),
        ("X-Amz-Expires", expires_secs.to_string()),
        ("X-Amz-SignedHeaders", signed_names.clone()),
    ];
    let query = params.iter().map(|(k, v)| format!("{k}={}", uri_encode(v, true))).collect::<Vec<_>>().join("&");
    let signature = sigv4_query_signature(method, path, &query, &signed, &signed_names, &date, creds);
    format!("{query}&X-Amz-Signature={signature}")
}

fn sigv4_query_signature(
    method: &str,
    path: &str,
    canonical_query: &str,
    signed: &[(&str, &str)],
    signed_names: &str,
    date: &str,
    creds: &Credentials<'_>,
) -> String {
    let canonical_path = path.split('/').map(|segment| uri_encode(segment, true)).collect::<Vec<_>>().join("/");
    let canonical_headers: String = signed.iter().map(|(n, v)| format!("{n}:{}\n", v.trim())).collect();
    let canonical_request =
        format!("{method}\n{canonical_path}\n{canonical_query}\n{canonical_headers}\n{signed_names}\nUNSIGNED-PAYLOAD");
    let scope = format!("{}/{}/s3/aws4_request", &date[..8], creds.region);
    let string_to_sign =
        format!("AWS4-HMAC-SHA256\n{date}\n{scope}\n{}", hex::encode(Sha256::digest(canonical_request.as_bytes())));
    let key = sigv4_key("AWS4", creds.secret, &date[..8], creds.region, "s3", "aws4_request");
    hex::encode(hmac256(&key, string_to_sign.as_bytes()))
}

/// Why the embedded store refuses a request (S3's error codes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 403 `AccessDenied`: bad signature, unknown key id, expired, a condition not met, an uncovered field.
    AccessDenied(String),
    /// 400 `EntityTooLarge` / `EntityTooSmall`.
    TooLarge,
    TooSmall,
    /// 400 `InvalidArgument`/`MalformedPOSTRequest`.
    Malformed(String),
}

/// Checks a POST form (every field but `file`; names as sent) against its signed policy, as S3 does: the SigV4
/// signature, the expiry, every condition, every field covered by one. `size` is the file's length.
pub fn verify_post(
    bucket: &str,
    form: &BTreeMap<String, String>,
    size: u64,
    now: i64,
    creds: &Credentials<'_>,
) -> Result<(), Refusal> {
    // Field names are case-insensitive (S3 accepts `Policy`, `X-Amz-Signature`).
    let lower: BTreeMap<String, &String> = form.iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
    let get = |name: &str| lower.get(name).map(|v| v.as_str());
    let policy_b64 = get("policy").ok_or_else(|| Refusal::Malformed("no policy".into()))?;
    let signature = get("x-amz-signature").ok_or_else(|| Refusal::Malformed("no x-amz-signature".into()))?;
    let credential = get("x-amz-credential").ok_or_else(|| Refusal::Malformed("no x-amz-credential".into()))?;
    let date = get("x-amz-date").ok_or_else(|| Refusal::Malformed("no x-amz-date".into()))?;
    if get("x-amz-algorithm") != Some("AWS4-HMAC-SHA256") || date.len() != 16 {
        return Err(Refusal::Malformed("unsupported x-amz-algorithm or x-amz-date".into()));
    }
    let expected_credential = format!("{}/{}/{}/s3/aws4_request", creds.access_key_id, &date[..8], creds.region);
    if credential != expected_credential {
        return Err(Refusal::AccessDenied("unknown credential".into()));
    }
    let key = sigv4_key("AWS4", creds.secret, &date[..8], creds.region, "s3", "aws4_request");
    let expected = hmac256(&key, policy_b64.as_bytes());
    let given = hex::decode(signature).map_err(|_| Refusal::AccessDenied("bad signature".into()))?;
    if !constant_time_eq(&expected, &given) {
        return Err(Refusal::AccessDenied("signature does not match".into()));
    }
    let policy: Value = base64::engine::general_purpose::STANDARD
        .decode(policy_b64)
        .ok()
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .ok_or_else(|| Refusal::Malformed("policy is not base64 JSON".into()))?;
    let expiration = policy["expiration"].as_str().and_then(|e| crate::db::parse_rfc3339("expiration", e).ok());
    match expiration {
        Some(ms) if ms / 1000 > now => {}
        Some(_) => return Err(Refusal::AccessDenied("policy expired".into())),
        None => return Err(Refusal::Malformed("policy has no valid expiration".into())),
    }
    let conditions = policy["conditions"].as_array().ok_or_else(|| Refusal::Malformed("no conditions".into()))?;
    let mut covered: Vec<String> = Vec::new();
    let mut size_range = None;
    for condition in conditions {
        let (field, check) = match condition {
            Value::Object(map) if map.len() == 1 => {
                let (name, value) = map.iter().next().expect("one entry");
                (name.to_ascii_lowercase(), Check::Eq(value.as_str().unwrap_or_default().to_owned()))
            }
            Value::Array(items) if items.len() == 3 && items[0] == "content-length-range" => {
                let (min, max) = (items[1].as_u64(), items[2].as_u64());
                size_range = Some((min.unwrap_or(0), max.unwrap_or(0)));
                continue;
            }
            Value::Array(items) if items.len() == 3 => {
                let op = items[0].as_str().unwrap_or_default();
                let name = items[1].as_str().and_then(|n| n.strip_prefix('$')).unwrap_or_default();
                let value = items[2].as_str().unwrap_or_default().to_owned();
                let check = match op {
                    "eq" => Check::Eq(value),
                    "starts-with" => Check::StartsWith(value),
                    _ => return Err(Refusal::Malformed(format!("unknown condition {op}"))),
                };
                (name.to_ascii_lowercase(), check)
            }
            _ => return Err(Refusal::Malformed("malformed condition".into())),
        };
        let actual = if field == "bucket" { Some(bucket) } else { get(&field) };
        let ok = match (&check, actual) {
            (Check::Eq(want), Some(actual)) => actual == want,
            (Check::StartsWith(prefix), Some(actual)) => actual.starts_with(prefix.as_str()),
            (_, None) => false,
        };
        if !ok {
            return Err(Refusal::AccessDenied(format!("condition on {field} not met")));
        }
        covered.push(field);
    }
    // Every field must be covered by a condition, but the signature's own fields.
    for name in lower.keys() {
        let exempt = matches!(name.as_str(), "policy" | "x-amz-signature" | "file") || name.starts_with("x-ignore-");
        if !exempt && !covered.iter().any(|c| c == name) {
            return Err(Refusal::AccessDenied(format!("extra input field {name}")));
        }
    }
    if let Some((min, max)) = size_range {
        if size > max {
            return Err(Refusal::TooLarge);
        }
        if size < min {
            return Err(Refusal::TooSmall);
        }
    }
    Ok(())
}

enum Check {
    Eq(String),
    StartsWith(String),
}

/// Checks a presigned request (`X-Amz-*` query) for `method path`, with the request's headers (lowercase names).
pub fn verify_presigned(
    method: &str,
    path: &str,
    query: &str,
    headers: &dyn Fn(&str) -> Option<String>,
    now: i64,
    creds: &Credentials<'_>,
) -> Result<(), Refusal> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let denied = |why: &str| Refusal::AccessDenied(why.to_owned());
    let date = get("X-Amz-Date").filter(|d| d.len() == 16).ok_or_else(|| denied("no X-Amz-Date"))?;
    let expires: i64 = get("X-Amz-Expires").and_then(|e| e.parse().ok()).ok_or_else(|| denied("no X-Amz-Expires"))?;
    let signature = get("X-Amz-Signature").ok_or_else(|| denied("no X-Amz-Signature"))?;
    let signed_names = get("X-Amz-SignedHeaders").ok_or_else(|| denied("no X-Amz-SignedHeaders"))?;
    let expected_credential = format!("{}/{}/{}/s3/aws4_request", creds.access_key_id, &date[..8], creds.region);
    if get("X-Amz-Credential") != Some(expected_credential.as_str())
        || get("X-Amz-Algorithm") != Some("AWS4-HMAC-SHA256")
    {
        return Err(denied("unknown credential"));
    }
    let signed_at = time::PrimitiveDateTime::parse(date, AMZ_DATE)
        .map_err(|_| denied("bad X-Amz-Date"))?
        .assume_utc()
        .unix_timestamp();
    if !(1..=7 * 24 * 3600).contains(&expires) || now > signed_at + expires || now + 900 < signed_at {
        return Err(denied("request has expired"));
    }
    let mut canonical: Vec<(String, String)> = pairs.iter().filter(|(k, _)| k != "X-Amz-Signature").cloned().collect();
    canonical.sort();
    let canonical_query = canonical
        .iter()
        .map(|(k, v)| format!("{}={}", uri_encode(k, true), uri_encode(v, true)))
        .collect::<Vec<_>>()
        .join("&");
    let names: Vec<&str> = signed_names.split(';').collect();
    if !names.contains(&"host") {
        return Err(denied("host must be signed"));
    }
    let values: Vec<(String, String)> = names.iter().map(|n| (n.to_string(), headers(n).unwrap_or_default())).collect();
    let signed: Vec<(&str, &str)> = values.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let expected = sigv4_query_signature(method, path, &canonical_query, &signed, signed_names, date, creds);
    if !constant_time_eq(expected.as_bytes(), signature.as_bytes()) {
        return Err(denied("signature does not match"));
    }
    Ok(())
}

const AMZ_DATE: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");

/// `20261124T100000Z`.
pub fn amz_date(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .format(AMZ_DATE)
        .expect("a fixed format")
}

fn iso8601_millis(unix: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].000Z");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .format(format)
        .expect("a fixed format")
}

fn policy_json(expiration: &str, conditions: Vec<Value>) -> String {
    json!({"expiration": expiration, "conditions": conditions}).to_string()
}

fn encode_policy(expiration: &str, conditions: Vec<Value>) -> String {
    base64::engine::general_purpose::STANDARD.encode(policy_json(expiration, conditions))
}

/// The SigV4 signing key chain (also OSS V4's, with its own prefix and terminator).
pub fn sigv4_key(prefix: &str, secret: &str, day: &str, region: &str, service: &str, terminator: &str) -> [u8; 32] {
    let k_date = hmac256(format!("{prefix}{secret}").as_bytes(), day.as_bytes());
    let k_region = hmac256(&k_date, region.as_bytes());
    let k_service = hmac256(&k_region, service.as_bytes());
    hmac256(&k_service, terminator.as_bytes())
}

/// COS POST: `hex(HMAC-SHA1(hex(HMAC-SHA1(secret, key_time)), hex(SHA1(policy))))`.
pub fn cos_signature(secret: &str, key_time: &str, policy_json: &str) -> String {
    let sign_key = hex::encode(hmac_sha1(secret.as_bytes(), key_time.as_bytes()));
    let string_to_sign = hex::encode(Sha1::digest(policy_json.as_bytes()));
    hex::encode(hmac_sha1(sign_key.as_bytes(), string_to_sign.as_bytes()))
}

pub fn hmac256(key: &[u8], data: &[u8]) -> [u8; 32] {
    crate::crypto::hmac_sha256(key, data)
}

pub fn hmac_sha1(key: &[u8], data: &[u8]) -> [u8; 20] {
    let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// RFC 3986 encoding as SigV4 wants it: unreserved characters kept, `/` kept only in paths.
pub fn uri_encode(input: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(input.len());
    for byte in input.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(byte as char),
            b'/' if !encode_slash => out.push('/'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

fn host_header(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const AWS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
    const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    /// AWS's published POST example ("Example: Browser-Based Upload using HTTP POST (Using AWS Signature Version
    /// 4)"): its base64 policy signed with the example key gives the published signature.
    #[test]
    fn sigv4_post_signature_matches_the_aws_example() {
        let policy = "eyAiZXhwaXJhdGlvbiI6ICIyMDE1LTEyLTMwVDEyOjAwOjAwLjAwMFoiLA0KICAiY29uZGl0aW9ucyI6IFsNCiAgICB7ImJ1Y2tldCI6ICJzaWd2NGV4YW1wbGVidWNrZXQifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRrZXkiLCAidXNlci91c2VyMS8iXSwNCiAgICB7ImFjbCI6ICJwdWJsaWMtcmVhZCJ9LA0KICAgIHsic3VjY2Vzc19hY3Rpb25fcmVkaXJlY3QiOiAiaHR0cDovL3NpZ3Y0ZXhhbXBsZWJ1Y2tldC5zMy5hbWF6b25hd3MuY29tL3N1Y2Nlc3NmdWxfdXBsb2FkLmh0bWwifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRDb250ZW50LVR5cGUiLCAiaW1hZ2UvIl0sDQogICAgeyJ4LWFtei1tZXRhLXV1aWQiOiAiMTQzNjUxMjM2NTEyNzQifSwNCiAgICB7IngtYW16LXNlcnZlci1zaWRlLWVuY3J5cHRpb24iOiAiQUVTMjU2In0sDQogICAgWyJzdGFydHMtd2l0aCIsICIkeC1hbXotbWV0YS10YWciLCAiIl0sDQoNCiAgICB7IngtYW16LWNyZWRlbnRpYWwiOiAiQUtJQUlPU0ZPRE5ON0VYQU1QTEUvMjAxNTEyMjkvdXMtZWFzdC0xL3MzL2F3czRfcmVxdWVzdCJ9LA0KICAgIHsieC1hbXotYWxnb3JpdGhtIjogIkFXUzQtSE1BQy1TSEEyNTYifSwNCiAgICB7IngtYW16LWRhdGUiOiAiMjAxNTEyMjlUMDAwMDAwWiIgfQ0KICBdDQp9";
        let key = sigv4_key("AWS4", AWS_SECRET, "20151229", "us-east-1", "s3", "aws4_request");
        assert_eq!(
            hex::encode(hmac256(&key, policy.as_bytes())),
            "8afdbf4008c03f22c2cd3cdb72e4afbb1f6a588f3255ac628749a66d7f09699e"
        );
    }

    /// AWS's published presigned-URL example ("Authenticating Requests: Using Query Parameters"): GET
    /// `/test.txt` on `examplebucket.s3.amazonaws.com`, 2013-05-24, 86400 s.
    #[test]
    fn presigned_query_matches_the_aws_example() {
        let creds = Credentials { access_key_id: AWS_KEY_ID, secret: AWS_SECRET, region: "us-east-1" };
        let query = presign_query("GET", "examplebucket.s3.amazonaws.com", "/test.txt", &[], 1369353600, 86400, &creds);
        assert_eq!(
            query,
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
        let host = |name: &str| (name == "host").then(|| "examplebucket.s3.amazonaws.com".to_owned());
        assert_eq!(verify_presigned("GET", "/test.txt", &query, &host, 1369353600 + 10, &creds), Ok(()));
        assert!(verify_presigned("GET", "/test.txt", &query, &host, 1369353600 + 86401, &creds).is_err());
        assert!(verify_presigned("GET", "/other.txt", &query, &host, 1369353600 + 10, &creds).is_err());
        assert!(verify_presigned("PUT", "/test.txt", &query, &host, 1369353600 + 10, &creds).is_err());
    }

    fn grant(now: i64) -> UploadGrant<'static> {
        UploadGrant {
            bucket: "wxshop",
            key: "incoming/avatar/7/abc",
            content_type: "image/jpeg",
            max_bytes: 2_000_000,
            now,
            expires_at: now + 300,
        }
    }

    #[test]
    fn a_signed_form_verifies_and_every_tampering_is_refused() {
        let creds = Credentials { access_key_id: "local", secret: "s3cr3t", region: "us-east-1" };
        let now = 1_790_000_000;
        let fields = post_fields(Provider::Local, &grant(now), &creds);
        assert_eq!(verify_post("wxshop", &fields, 1000, now + 10, &creds), Ok(()));
        // Size outside the range.
        assert_eq!(verify_post("wxshop", &fields, 2_000_001, now + 10, &creds), Err(Refusal::TooLarge));
        assert_eq!(verify_post("wxshop", &fields, 0, now + 10, &creds), Err(Refusal::TooSmall));
        // Expired.
        assert!(matches!(verify_post("wxshop", &fields, 10, now + 301, &creds), Err(Refusal::AccessDenied(_))));
        // Another key, another type, another bucket, an extra field, a tampered signature.
        let mut other = fields.clone();
        other.insert("key".into(), "img/ab/evil.html".into());
        assert!(matches!(verify_post("wxshop", &other, 10, now, &creds), Err(Refusal::AccessDenied(_))));
        let mut other = fields.clone();
        other.insert("Content-Type".into(), "text/html".into());
        assert!(matches!(verify_post("wxshop", &other, 10, now, &creds), Err(Refusal::AccessDenied(_))));
        assert!(matches!(verify_post("other", &fields, 10, now, &creds), Err(Refusal::AccessDenied(_))));
        let mut other = fields.clone();
        other.insert("x-amz-meta-evil".into(), "1".into());
        assert!(matches!(verify_post("wxshop", &other, 10, now, &creds), Err(Refusal::AccessDenied(_))));
        let mut other = fields.clone();
        let sig = other["x-amz-signature"].clone();
        let flipped = match sig.strip_prefix('0') {
            Some(rest) => format!("1{rest}"),
            None => format!("0{}", &sig[1..]),
        };
        other.insert("x-amz-signature".into(), flipped);
        assert!(matches!(verify_post("wxshop", &other, 10, now, &creds), Err(Refusal::AccessDenied(_))));
        let wrong = Credentials { secret: "other", ..creds };
        assert!(matches!(verify_post("wxshop", &fields, 10, now, &wrong), Err(Refusal::AccessDenied(_))));
    }

    #[test]
    fn the_policy_pins_key_size_and_type_in_every_dialect() {
        let creds = Credentials { access_key_id: "AKID", secret: "secret", region: "ap-shanghai" };
        for provider in [Provider::S3, Provider::Cos, Provider::Oss] {
            let fields = post_fields(provider, &grant(1_790_000_000), &creds);
            let raw = base64::engine::general_purpose::STANDARD.decode(&fields["policy"]).unwrap();
            let policy: Value = serde_json::from_slice(&raw).unwrap();
            let conditions = policy["conditions"].as_array().unwrap();
            assert!(conditions.contains(&json!(["eq", "$key", "incoming/avatar/7/abc"])), "{provider:?}");
            assert!(conditions.contains(&json!(["content-length-range", 1, 2_000_000])), "{provider:?}");
            assert!(conditions.contains(&json!(["eq", "$Content-Type", "image/jpeg"])), "{provider:?}");
            assert_eq!(policy["expiration"], "2026-09-21T14:18:20.000Z", "{provider:?}");
        }
        let cos = post_fields(Provider::Cos, &grant(1_790_000_000), &creds);
        assert_eq!(cos["q-key-time"], "1790000000;1790000300");
        let policy_json = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(&cos["policy"]).unwrap());
        assert_eq!(cos["q-signature"], cos_signature("secret", "1790000000;1790000300", &policy_json.unwrap()));
        let oss = post_fields(Provider::Oss, &grant(1_790_000_000), &creds);
        assert_eq!(oss["x-oss-credential"], "AKID/20260921/ap-shanghai/oss/aliyun_v4_request");
        let key = sigv4_key("aliyun_v4", "secret", "20260921", "ap-shanghai", "oss", "aliyun_v4_request");
        assert_eq!(oss["x-oss-signature"], hex::encode(hmac256(&key, oss["policy"].as_bytes())));
    }

    #[test]
    fn a_key_with_injected_json_stays_one_string() {
        let creds = Credentials { access_key_id: "AKID", secret: "secret", region: "us-east-1" };
        let mut g = grant(1_790_000_000);
        g.key = r#"incoming/x"],["starts-with","$key",""#;
        let fields = post_fields(Provider::S3, &g, &creds);
        let raw = base64::engine::general_purpose::STANDARD.decode(&fields["policy"]).unwrap();
        let policy: Value = serde_json::from_slice(&raw).unwrap();
        assert!(!policy["conditions"].as_array().unwrap().contains(&json!(["starts-with", "$key", ""])));
    }
}
