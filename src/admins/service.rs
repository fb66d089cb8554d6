//! Admin account rules: creation, password login with lockout, refresh.

use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::Serialize;
use utoipa::ToSchema;

use crate::admins::store;
use crate::auth::extract::Role;
use crate::auth::sessions;
use crate::auth::tokens::now_secs;
use crate::auth::{SubjectKind, ADMIN_AUDIENCE};
use crate::db::Bounded;
use crate::db::{now_ms, Db};
use crate::error::AppError;
use crate::state::App;
use crate::users::service::TokenPair;

pub const MIN_PASSWORD_CHARS: usize = 10;

/// An argon2id PHC string for `password` (the crate's default parameters: 19 MiB, 2 passes).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::encode_b64(uuid::Uuid::new_v4().as_bytes()).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))
}

fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|hash| Argon2::default().verify_password(password.as_bytes(), &hash).is_ok())
}

/// Creates an account (`wxshop admin create`).
pub async fn create_admin(db: &Db, username: &str, role: &str, password: &str) -> anyhow::Result<i64> {
    let username = username.trim();
    if username.is_empty()
        || username.len() > 64
        || !username.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        anyhow::bail!("a username is 1 to 64 letters, digits, `.`, `_` or `-`");
    }
    let role = Role::parse(role).ok_or_else(|| anyhow::anyhow!("role must be admin, operator or viewer"))?;
    if password.chars().count() < MIN_PASSWORD_CHARS {
        anyhow::bail!("a password has at least {MIN_PASSWORD_CHARS} characters");
    }
    if store::find_by_username(&db.pool, username).await?.is_some() {
        anyhow::bail!("an account named {username} already exists");
    }
    let hash = hash_password(password)?;
    let mut tx = db.begin_write().await?;
    let id = store::insert_admin(&mut tx, username, &hash, role.as_str(), now_ms()).await?;
    tx.commit().bounded().await?;
    Ok(id)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdminLoginResponse {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub admin: AdminProfile,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdminProfile {
    pub id: i64,
    pub username: String,
    /// `admin`, `operator` or `viewer`.
    pub role: String,
}

fn failures_key(username: &str) -> String {
    format!("admin_login_failures:{}", username.to_lowercase())
}

/// Password login. After `admin.lockout_failures` failures for a username within the window, logins for it are
/// refused with 429 until the window ends. Unknown users cost the same password check as wrong passwords, so the
/// response time does not tell whether an account exists.
pub async fn login(app: &App, username: &str, password: &str) -> Result<AdminLoginResponse, AppError> {
    let config = &app.config.admin;
    let window = Duration::from_secs(config.lockout_window_secs);
    let key = failures_key(username);
    let failures = app.counters.get(&key).await.map_err(counter_unavailable)?;
    if failures.value >= config.lockout_failures {
        return Err(locked(failures.resets_in));
    }
    let account = store::find_by_username(&app.db.pool, username).await?;
    let hash = match &account {
        Some(a) => a.password_hash.as_str(),
        None => dummy_hash(app).await?,
    };
    let password = password.to_owned();
    let hash_owned = hash.to_owned();
    let verified = tokio::task::spawn_blocking(move || verify_password(&password, &hash_owned))
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("password check: {e}")))?;
    let account = match account {
        Some(a) if verified && a.status == "active" => a,
        _ => {
            let count = app.counters.increment(&key, window).await.map_err(counter_unavailable)?;
            metrics::counter!("admin_login_failures_total").increment(1);
            tracing::warn!(failures = count.value, "admin login failed");
            return Err(AppError::unauthorized("invalid_credentials", "wrong username or password"));
        }
    };
    let _ = app.counters.reset(&key).await;
    store::touch_login(&app.db.pool, account.id, now_ms()).await?;
    let session = sessions::start(app, SubjectKind::Admin, account.id).await?;
    let access = app.tokens.issue(account.id, ADMIN_AUDIENCE, session.family_id, Some(&account.role), now_secs())?;
    metrics::counter!("logins_total", "kind" => "admin", "new" => "false").increment(1);
    Ok(AdminLoginResponse {
        access_token: access.token,
        refresh_token: session.refresh_token,
        token_type: "Bearer",
        expires_in: access.expires_in,
        admin: AdminProfile { id: account.id, username: account.username, role: account.role },
    })
}

/// Rotates an admin refresh token; the role is read afresh, so a changed role applies from the next refresh.
pub async fn refresh(app: &App, refresh_token: &str) -> Result<TokenPair, AppError> {
    let session = sessions::rotate(app, SubjectKind::Admin, refresh_token).await?;
    let account = store::find_by_id(&app.db.pool, session.subject_id).await?.filter(|a| a.status == "active");
    let account =
        account.ok_or_else(|| AppError::unauthorized("token_revoked", "this account can no longer log in"))?;
    let access = app.tokens.issue(account.id, ADMIN_AUDIENCE, session.family_id, Some(&account.role), now_secs())?;
    Ok(TokenPair {
        access_token: access.token,
        refresh_token: session.refresh_token,
        token_type: "Bearer",
        expires_in: access.expires_in,
    })
}

pub async fn profile(app: &App, id: i64) -> Result<AdminProfile, AppError> {
    let account = store::find_by_id(&app.db.pool, id).await?.ok_or(AppError::not_found("admin"))?;
    Ok(AdminProfile { id: account.id, username: account.username, role: account.role })
}

/// A hash of a random password with the same parameters as real ones.
async fn dummy_hash(app: &App) -> Result<&str, AppError> {
    let hash = app
        .dummy_password_hash
        .get_or_try_init(|| async {
            tokio::task::spawn_blocking(|| hash_password(&crate::crypto::random_token(24)))
                .await
                .map_err(|e| AppError::Internal(anyhow::anyhow!("hashing: {e}")))?
                .map_err(AppError::Internal)
        })
        .await?;
    Ok(hash.as_str())
}

fn locked(resets_in: Duration) -> AppError {
    AppError::TooManyRequests {
        code: "too_many_attempts",
        message: "too many failed logins for this account; try again later".into(),
        retry_after_secs: Some(resets_in.as_secs().max(1)),
    }
}

fn counter_unavailable(error: redis::RedisError) -> AppError {
    tracing::error!(%error, "login-failure counter unavailable");
    AppError::Unavailable { code: "auth_unavailable", message: "cannot check login attempts right now".into() }
}
