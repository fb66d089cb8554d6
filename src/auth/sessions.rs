//! Login sessions as refresh-token families.
//!
//! A login starts a family with one opaque refresh token (stored hashed). Refreshing retires the presented token
//! and issues its successor. The successor is derived from the retired token (HMAC with the data key), so a
//! client retry within `auth.refresh_grace_secs` gets the very same successor; a retired token presented after
//! that is a replay: the whole family is revoked. Idle and absolute lifetimes bound every family.

use crate::auth::store::{self, RefreshRow};
use crate::auth::tokens::Verified;
use crate::auth::SubjectKind;
use crate::crypto::{hmac_sha256, random_token, sha256_hex};
use crate::db::now_ms;
use crate::db::Bounded;
use crate::error::AppError;
use crate::state::App;

/// Prefix of every refresh token, so a token pasted in the wrong place is recognisable.
const PREFIX: &str = "rt_";

pub struct Session {
    pub family_id: i64,
    pub subject_id: i64,
    pub refresh_token: String,
}

/// Starts a family for `subject` with its first refresh token.
pub async fn start(app: &App, kind: SubjectKind, subject_id: i64) -> Result<Session, AppError> {
    let auth = &app.config.auth;
    let now = now_ms();
    let absolute = now + secs_ms(auth.refresh_absolute_ttl_secs);
    let token = format!("{PREFIX}{}", random_token(32));
    let mut tx = app.db.begin_write().await?;
    let family_id = store::insert_family(&mut tx, kind.as_str(), subject_id, now, absolute).await?;
    let idle = (now + secs_ms(auth.refresh_idle_ttl_secs)).min(absolute);
    store::insert_refresh_token(&mut tx, family_id, &sha256_hex(token.as_bytes()), now, idle).await?;
    tx.commit().bounded().await?;
    Ok(Session { family_id, subject_id, refresh_token: token })
}

/// Exchanges a refresh token for its successor (see the module comment for the rules).
pub async fn rotate(app: &App, kind: SubjectKind, presented: &str) -> Result<Session, AppError> {
    if !presented.starts_with(PREFIX) || presented.len() > 128 {
        return Err(invalid());
    }
    let hash = sha256_hex(presented.as_bytes());
    let row = store::find_refresh_token(&app.db.pool, &hash).await?.ok_or_else(invalid)?;
    if row.subject_kind != kind.as_str() {
        return Err(invalid());
    }
    let now = now_ms();
    check_family(&row, now)?;
    let successor = successor_of(app, presented);
    if let Some(rotated_at) = row.rotated_at {
        return replay(app, &row, rotated_at, successor, now).await;
    }
    if now >= row.idle_expires_at {
        return Err(AppError::unauthorized("token_expired", "the refresh token has expired"));
    }
    let mut tx = app.db.begin_write().await?;
    if !store::mark_rotated(&mut tx, row.id, now).await? {
        // Another request rotated it first; it committed before our update ran.
        tx.rollback().bounded().await?;
        let row = store::find_refresh_token(&app.db.pool, &hash).await?.ok_or_else(invalid)?;
        let rotated_at = row.rotated_at.unwrap_or(now);
        return replay(app, &row, rotated_at, successor, now).await;
    }
    let idle = (now + secs_ms(app.config.auth.refresh_idle_ttl_secs)).min(row.family_expires_at);
    store::insert_refresh_token(&mut tx, row.family_id, &sha256_hex(successor.as_bytes()), now, idle).await?;
    tx.commit().bounded().await?;
    Ok(Session { family_id: row.family_id, subject_id: row.subject_id, refresh_token: successor })
}

fn check_family(row: &RefreshRow, now: i64) -> Result<(), AppError> {
    if row.family_revoked_at.is_some() {
        return Err(AppError::unauthorized("token_revoked", "this session has been revoked"));
    }
    if now >= row.family_expires_at {
        return Err(AppError::unauthorized("token_expired", "this session has expired; log in again"));
    }
    Ok(())
}

/// A retired token again: the same successor within the grace window, otherwise the family is revoked.
async fn replay(
    app: &App,
    row: &RefreshRow,
    rotated_at: i64,
    successor: String,
    now: i64,
) -> Result<Session, AppError> {
    if now - rotated_at <= secs_ms(app.config.auth.refresh_grace_secs) {
        return Ok(Session { family_id: row.family_id, subject_id: row.subject_id, refresh_token: successor });
    }
    tracing::warn!(family = row.family_id, subject = row.subject_id, "refresh token reused; revoking its family");
    metrics::counter!("auth_refresh_reuse_total").increment(1);
    end(app, row.family_id, "reuse").await?;
    Err(AppError::unauthorized("refresh_token_reused", "this refresh token was already used; the session is revoked"))
}

/// Revokes a family: its refresh tokens at once, its access tokens through the deny-list.
pub async fn end(app: &App, family_id: i64, reason: &str) -> Result<(), AppError> {
    store::revoke_family(&app.db.pool, family_id, now_ms(), reason).await?;
    app.revocations.revoke(&format!("sid:{family_id}"), access_deadline(app)).await
}

/// Logs out the session an access token belongs to: the token itself at once (deny-listed until it expires) and
/// its whole family.
pub async fn logout(app: &App, token: &Verified) -> Result<(), AppError> {
    let until = (token.exp as i64 + app.config.auth.leeway_secs as i64) * 1_000 + 1_000;
    app.revocations.revoke(token.own_key(), until).await?;
    end(app, token.sid, "logout").await
}

/// Revokes every live family of a subject (a ban).
pub async fn end_all(app: &App, kind: SubjectKind, subject_id: i64, reason: &str) -> Result<(), AppError> {
    for family_id in store::live_families(&app.db.pool, kind.as_str(), subject_id, now_ms()).await? {
        end(app, family_id, reason).await?;
    }
    Ok(())
}

/// When every access token issued up to now has expired (lifetime plus leeway): how long a denial must last.
pub fn access_deadline(app: &App) -> i64 {
    now_ms() + secs_ms(app.config.auth.access_ttl_secs + app.config.auth.leeway_secs) + 1_000
}

fn successor_of(app: &App, token: &str) -> String {
    use base64::Engine;
    let mac = hmac_sha256(&app.refresh_key, format!("refresh-successor:{token}").as_bytes());
    format!("{PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac))
}

fn secs_ms(secs: u64) -> i64 {
    (secs as i64).saturating_mul(1_000)
}

fn invalid() -> AppError {
    AppError::unauthorized("token_invalid", "the refresh token is not valid")
}
