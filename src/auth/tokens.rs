//! Access tokens: JWT, HS256 only (the verifier pins the algorithm), with `sub`, `exp`, `iat`, `jti`, `iss`,
//! `aud`, `typ` and `sid` (the refresh-token family, so logout and reuse detection reach the access token too).
//! `auth.jwt_previous_keys` verify only, so the signing key can be rotated without logging everyone out.
//!
//! Verified tokens are remembered (`auth.verified_token_cache` entries per instance): the key is a SHA-256 of the
//! audience and the whole token, so only the very token that verified can hit; an entry never outlives the
//! token's `exp` (plus leeway), and a hit is checked against the clock again. What the cache holds is the
//! signature's verdict only: the deny-list (logout, bans, reuse detection) is asked on every request.

use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::AuthConfig;
use crate::error::AppError;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    pub iat: u64,
    pub jti: String,
    pub iss: String,
    pub aud: String,
    /// Always `access`: refresh tokens are opaque and never JWTs.
    pub typ: String,
    /// The refresh-token family (login session) this token belongs to.
    pub sid: i64,
    /// Back-office role, on admin tokens only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

pub const ACCESS_TYPE: &str = "access";

/// A verified access token, compact because the cache keeps one per live token: what requests use of its
/// claims (subject, login session, expiry, role) and the deny-list keys every request checks (the token, its
/// login session, its subject), formatted once. ~190 bytes with its allocations (allocator size classes),
/// where the decoded claims and keys took ~470.
#[derive(Debug)]
pub struct Verified {
    pub subject: i64,
    /// The refresh-token family (login session) the token belongs to.
    pub sid: i64,
    pub exp: u64,
    /// Back-office role, on admin tokens only.
    pub role: Option<Box<str>>,
    /// `jti:<jti>`, `sid:<sid>`, `user:<subject>` (or `admin:<subject>`).
    pub deny_keys: [Box<str>; 3],
}

impl Verified {
    fn new(claims: Claims, audience: &str) -> Result<Verified, AppError> {
        let subject = claims.sub.parse().map_err(|_| invalid("malformed claims"))?;
        let kind = if audience == crate::auth::ADMIN_AUDIENCE { "admin" } else { "user" };
        let deny_keys = [format!("jti:{}", claims.jti), format!("sid:{}", claims.sid), format!("{kind}:{subject}")]
            .map(String::into_boxed_str);
        Ok(Verified {
            subject,
            sid: claims.sid,
            exp: claims.exp,
            role: claims.role.map(String::into_boxed_str),
            deny_keys,
        })
    }

    /// The deny-list key of this token alone (`jti:<jti>`), which logging out revokes.
    pub fn own_key(&self) -> &str {
        &self.deny_keys[0]
    }
}

/// Cache of verified tokens: SHA-256 (first 16 bytes) of audience and token → the verdict. A verdict is used only
/// until `exp` + leeway ([`TokenKeys::verify`] checks); expired ones are dropped when read or pushed out by newer
/// ones (S3-FIFO, bounded by entries). `quick_cache`'s bookkeeping is ~100 bytes per entry where moka's was ~500.
type VerifiedCache = quick_cache::sync::Cache<[u8; 16], Arc<Verified>>;

fn cache_key(token: &str, audience: &str) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new().chain_update(audience).chain_update([0]).chain_update(token).finalize();
    let mut key = [0; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: Vec<DecodingKey>,
    issuer: String,
    access_ttl_secs: u64,
    leeway_secs: u64,
    /// The validation rules per audience, built once: building them allocates several sets, on every request.
    validations: Vec<(&'static str, Validation)>,
    verified: Option<VerifiedCache>,
    /// `auth_verified_token_cache_total{result="hit"|"miss"}`, registered once.
    cache_counters: [metrics::Counter; 2],
}

/// An issued access token.
pub struct AccessToken {
    pub token: String,
    pub claims: Claims,
    pub expires_in: u64,
}

impl TokenKeys {
    pub fn new(config: &AuthConfig) -> TokenKeys {
        let current = config.jwt_secret.expose().as_bytes();
        let mut decoding = vec![DecodingKey::from_secret(current)];
        decoding.extend(config.jwt_previous_keys.iter().map(|k| DecodingKey::from_secret(k.expose().as_bytes())));
        let validations = [crate::auth::USER_AUDIENCE, crate::auth::ADMIN_AUDIENCE]
            .into_iter()
            .map(|audience| (audience, validation(&config.issuer, audience, config.leeway_secs)))
            .collect();
        TokenKeys {
            encoding: EncodingKey::from_secret(current),
            decoding,
            issuer: config.issuer.clone(),
            access_ttl_secs: config.access_ttl_secs,
            leeway_secs: config.leeway_secs,
            validations,
            cache_counters: ["hit", "miss"]
                .map(|result| metrics::counter!("auth_verified_token_cache_total", "result" => result)),
            verified: (config.verified_token_cache > 0)
                .then(|| quick_cache::sync::Cache::new(config.verified_token_cache as usize)),
        }
    }

    pub fn issue(
        &self,
        subject: i64,
        audience: &str,
        family: i64,
        role: Option<&str>,
        now_secs: u64,
    ) -> Result<AccessToken, AppError> {
        let claims = Claims {
            sub: subject.to_string(),
            exp: now_secs + self.access_ttl_secs,
            iat: now_secs,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            iss: self.issuer.clone(),
            aud: audience.to_owned(),
            typ: ACCESS_TYPE.to_owned(),
            sid: family,
            role: role.map(str::to_owned),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AppError::Internal(anyhow::anyhow!("signing an access token: {e}")))?;
        Ok(AccessToken { token, claims, expires_in: self.access_ttl_secs })
    }

    /// Verifies signature (HS256 only, current then previous keys), `exp` and `iat` with leeway, `iss`, `aud` and
    /// `typ`, or finds the token verified already (the module comment). Expired tokens are `token_expired`;
    /// anything else wrong is `token_invalid`.
    pub fn verify(&self, token: &str, audience: &str, now_secs: u64) -> Result<Arc<Verified>, AppError> {
        let Some(cache) = &self.verified else {
            return Ok(Arc::new(Verified::new(self.verify_signature(token, audience, now_secs)?, audience)?));
        };
        let key = cache_key(token, audience);
        if let Some(hit) = cache.get(&key) {
            if now_secs <= hit.exp + self.leeway_secs {
                self.cache_counters[0].increment(1);
                return Ok(hit);
            }
            cache.remove(&key);
            return Err(expired());
        }
        self.cache_counters[1].increment(1);
        let verified = Arc::new(Verified::new(self.verify_signature(token, audience, now_secs)?, audience)?);
        cache.insert(key, verified.clone());
        Ok(verified)
    }

    /// The full check, every time (what [`TokenKeys::verify`] remembers).
    fn verify_signature(&self, token: &str, audience: &str, now_secs: u64) -> Result<Claims, AppError> {
        let built;
        let validation = match self.validations.iter().find(|(a, _)| *a == audience) {
            Some((_, validation)) => validation,
            None => {
                built = validation(&self.issuer, audience, self.leeway_secs);
                &built
            }
        };
        let mut last = invalid("signature does not verify");
        for key in &self.decoding {
            match jsonwebtoken::decode::<Claims>(token, key, validation) {
                Ok(data) => {
                    let claims = data.claims;
                    if claims.typ != ACCESS_TYPE {
                        return Err(invalid("not an access token"));
                    }
                    if claims.iat > now_secs + self.leeway_secs {
                        return Err(invalid("issued in the future"));
                    }
                    if claims.jti.is_empty() || claims.sub.parse::<i64>().is_err() {
                        return Err(invalid("malformed claims"));
                    }
                    return Ok(claims);
                }
                Err(e) => match e.kind() {
                    ErrorKind::InvalidSignature => last = invalid("signature does not verify"),
                    ErrorKind::ExpiredSignature => return Err(expired()),
                    _ => return Err(invalid("malformed or unacceptable token")),
                },
            }
        }
        Err(last)
    }
}

/// HS256 only; `exp` with leeway, `iss`, `aud` and `sub` required.
fn validation(issuer: &str, audience: &str, leeway_secs: u64) -> Validation {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = leeway_secs;
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation
}

fn expired() -> AppError {
    AppError::unauthorized("token_expired", "the access token has expired")
}

fn invalid(why: &str) -> AppError {
    AppError::unauthorized("token_invalid", format!("the access token is invalid: {why}"))
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Secret};

    fn keys(secret: &str, previous: &[&str]) -> TokenKeys {
        let mut config = Config::default().auth;
        config.jwt_secret = Secret::new(secret);
        config.jwt_previous_keys = previous.iter().map(|k| Secret::new(*k)).collect();
        TokenKeys::new(&config)
    }

    const A: &str = "first-key-first-key-first-key-first-key!";
    const B: &str = "second-key-second-key-second-key-second!";

    #[test]
    fn round_trip_and_audience() {
        let k = keys(A, &[]);
        let now = now_secs();
        let t = k.issue(42, "wxshop-api", 7, None, now).unwrap();
        let verified = k.verify(&t.token, "wxshop-api", now).unwrap();
        assert_eq!(
            (verified.subject, verified.sid, verified.exp, verified.role.as_deref()),
            (42, 7, t.claims.exp, None)
        );
        assert_eq!(verified.own_key(), format!("jti:{}", t.claims.jti));
        assert_eq!(
            verified.deny_keys,
            [format!("jti:{}", t.claims.jti), "sid:7".into(), "user:42".into()].map(String::into_boxed_str)
        );
        assert_eq!(k.verify(&t.token, "wxshop-admin", now).unwrap_err().code(), "token_invalid");
    }

    #[test]
    fn expiry_uses_the_leeway() {
        let k = keys(A, &[]);
        let now = now_secs();
        let t = k.issue(1, "wxshop-api", 1, None, now - 900 - 20).unwrap();
        assert!(k.verify(&t.token, "wxshop-api", now).is_ok(), "20 s late is within 30 s leeway");
        let t = k.issue(1, "wxshop-api", 1, None, now - 900 - 60).unwrap();
        assert_eq!(k.verify(&t.token, "wxshop-api", now).unwrap_err().code(), "token_expired");
    }

    /// The cache remembers a verdict, never more: the same token only, for the same audience only, and not past
    /// its expiry (a hit is checked against the clock again).
    #[test]
    fn remembered_verdicts_stay_within_the_token() {
        let k = keys(A, &[]);
        assert!(k.verified.is_some(), "on by default");
        let now = now_secs();
        let t = k.issue(5, "wxshop-api", 9, None, now).unwrap();
        let first = k.verify(&t.token, "wxshop-api", now).unwrap();
        let again = k.verify(&t.token, "wxshop-api", now).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "the second check is answered from the cache");
        assert_eq!(k.verify(&t.token, "wxshop-admin", now).unwrap_err().code(), "token_invalid", "other audience");
        // One character of the signature changed (not the last, whose low bits base64 ignores).
        let at = t.token.len() - 10;
        let swapped = if &t.token[at..=at] == "A" { "B" } else { "A" };
        let tampered = format!("{}{swapped}{}", &t.token[..at], &t.token[at + 1..]);
        assert_eq!(k.verify(&tampered, "wxshop-api", now).unwrap_err().code(), "token_invalid");
        let late = t.claims.exp + 31;
        assert_eq!(k.verify(&t.token, "wxshop-api", late).unwrap_err().code(), "token_expired", "cached, expired");
        let admin = k.issue(3, "wxshop-admin", 4, Some("admin"), now).unwrap();
        let admin = k.verify(&admin.token, "wxshop-admin", now).unwrap();
        assert_eq!((&*admin.deny_keys[2], admin.role.as_deref()), ("admin:3", Some("admin")));

        let mut config = Config::default().auth;
        config.jwt_secret = Secret::new(A);
        config.verified_token_cache = 0;
        let uncached = TokenKeys::new(&config);
        let one = uncached.verify(&t.token, "wxshop-api", now).unwrap();
        assert!(!Arc::ptr_eq(&one, &uncached.verify(&t.token, "wxshop-api", now).unwrap()), "0 turns it off");
    }

    #[test]
    fn previous_keys_verify_but_do_not_sign() {
        let old = keys(A, &[]);
        let rotated = keys(B, &[A]);
        let now = now_secs();
        let t = old.issue(1, "wxshop-api", 1, None, now).unwrap();
        assert!(rotated.verify(&t.token, "wxshop-api", now).is_ok());
        let fresh = rotated.issue(1, "wxshop-api", 1, None, now).unwrap();
        assert!(old.verify(&fresh.token, "wxshop-api", now).is_err(), "signed with the new key");
        assert!(keys(B, &[]).verify(&t.token, "wxshop-api", now).is_err(), "dropped keys stop verifying");
    }
}
