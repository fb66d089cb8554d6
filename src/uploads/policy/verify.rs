//! The embedded store's side: checking a POST form against its signed policy and a presigned request against its
//! signature, with the same functions that sign them, as S3 does.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::Value;

use super::*;
use crate::crypto::constant_time_eq;

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
