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
use serde_json::{json, Value};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::crypto::{hmac_sha1, hmac_sha256 as hmac256, uri_encode};
use crate::uploads::config::Provider;

mod verify;

pub use verify::{verify_post, verify_presigned, Refusal};

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

fn host_header(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
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
