//! Access tokens: JWT, HS256 only (the verifier pins the algorithm), with `sub`, `exp`, `iat`, `jti`, `iss`,
//! `aud`, `typ` and `sid` (the refresh-token family, so logout and reuse detection reach the access token too).
//! `auth.jwt_previous_keys` verify only, so the signing key can be rotated without logging everyone out.

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

pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: Vec<DecodingKey>,
    issuer: String,
    access_ttl_secs: u64,
    leeway_secs: u64,
    /// The validation rules per audience, built once: building them allocates several sets, on every request.
    validations: Vec<(&'static str, Validation)>,
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
    /// `typ`. Expired tokens are `token_expired`; anything else wrong is `token_invalid`.
    pub fn verify(&self, token: &str, audience: &str, now_secs: u64) -> Result<Claims, AppError> {
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
                    ErrorKind::ExpiredSignature => {
                        return Err(AppError::unauthorized("token_expired", "the access token has expired"))
                    }
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
        let claims = k.verify(&t.token, "wxshop-api", now).unwrap();
        assert_eq!((claims.sub.as_str(), claims.sid, claims.typ.as_str()), ("42", 7, "access"));
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
