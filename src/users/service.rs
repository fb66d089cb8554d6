//! User rules: login through WeChat, profile edits, phone binding, bans.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::sessions;
use crate::auth::tokens::now_secs;
use crate::auth::{SubjectKind, USER_AUDIENCE};
use crate::db::{now_ms, rfc3339};
use crate::error::AppError;
use crate::state::App;
use crate::users::store::{self, UserRow, WechatIdentity};

/// A user as they see themselves.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserProfile {
    pub id: i64,
    pub nickname: String,
    pub avatar_url: String,
    pub phone_bound: bool,
    /// Masked: `138****8000`.
    pub phone: Option<String>,
    pub created_at: String,
}

impl From<UserRow> for UserProfile {
    fn from(row: UserRow) -> Self {
        UserProfile {
            id: row.id,
            nickname: row.nickname,
            avatar_url: row.avatar_url,
            phone_bound: row.phone.is_some(),
            phone: row.phone.as_deref().map(mask_phone),
            created_at: rfc3339(row.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    pub is_new_user: bool,
    pub user: UserProfile,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
}

/// Logs in with a `wx.login` code: find or create the user, start a session.
pub async fn login(app: &App, code: &str) -> Result<LoginResponse, AppError> {
    validate_code(code, "code")?;
    let session = app.wechat.code_to_session(code).await?;
    let sealed = app.secret_box.seal(session.session_key.as_bytes());
    let identity = WechatIdentity {
        app_id: app.wechat.app_id(),
        openid: &session.openid,
        unionid: session.unionid.as_deref(),
        sealed_session_key: &sealed,
    };
    let (user, is_new_user) = store::upsert_wechat_user(&app.db, &identity, now_ms()).await?;
    if user.status == "banned" {
        return Err(AppError::forbidden("user_banned", "this account has been banned"));
    }
    let session = sessions::start(app, SubjectKind::User, user.id).await?;
    let access = app.tokens.issue(user.id, USER_AUDIENCE, session.family_id, None, now_secs())?;
    metrics::counter!("logins_total", "kind" => "user", "new" => if is_new_user { "true" } else { "false" })
        .increment(1);
    Ok(LoginResponse {
        access_token: access.token,
        refresh_token: session.refresh_token,
        token_type: "Bearer",
        expires_in: access.expires_in,
        is_new_user,
        user: user.into(),
    })
}

/// Rotates a user's refresh token and issues a new access token.
pub async fn refresh(app: &App, refresh_token: &str) -> Result<TokenPair, AppError> {
    let session = sessions::rotate(app, SubjectKind::User, refresh_token).await?;
    let user = store::find_user(&app.db.pool, session.subject_id).await?;
    if user.is_none_or(|u| u.status != "active") {
        return Err(AppError::unauthorized("token_revoked", "this account can no longer log in"));
    }
    let access = app.tokens.issue(session.subject_id, USER_AUDIENCE, session.family_id, None, now_secs())?;
    Ok(TokenPair {
        access_token: access.token,
        refresh_token: session.refresh_token,
        token_type: "Bearer",
        expires_in: access.expires_in,
    })
}

pub async fn profile(app: &App, user_id: i64) -> Result<UserProfile, AppError> {
    Ok(store::find_user(&app.db.pool, user_id).await?.ok_or(AppError::not_found("user"))?.into())
}

/// The editable part of a profile; any other field is refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProfile {
    /// 1 to 32 characters.
    pub nickname: Option<String>,
    /// The id of a committed `avatar` upload of this user (`POST /api/v1/uploads`); its URL becomes the avatar.
    pub avatar_upload_id: Option<String>,
}

pub async fn update_profile(app: &App, user_id: i64, update: UpdateProfile) -> Result<UserProfile, AppError> {
    let mut fields = Vec::new();
    let nickname = update.nickname.map(|n| n.trim().to_owned());
    if let Some(n) = &nickname {
        crate::domain::check_human_text("nickname", n, 32, true, &mut fields);
    }
    if !fields.is_empty() {
        return Err(AppError::Validation(fields));
    }
    let avatar_url = match &update.avatar_upload_id {
        Some(id) => Some(crate::uploads::service::avatar_url(app, user_id, id).await?),
        None => None,
    };
    store::update_profile(&app.db.pool, user_id, nickname.as_deref(), avatar_url.as_deref(), now_ms()).await?;
    profile(app, user_id).await
}

/// Binds the phone number behind a `getPhoneNumber` button code.
pub async fn bind_phone(app: &App, user_id: i64, code: &str) -> Result<UserProfile, AppError> {
    validate_code(code, "code")?;
    let phone = app.wechat.phone_number(code).await?;
    store::set_phone(&app.db.pool, user_id, &phone, now_ms()).await?;
    profile(app, user_id).await
}

/// Bans a user: every session revoked, every access token refused on every instance from the next request.
pub async fn ban(app: &App, user_id: i64) -> Result<(), AppError> {
    if !store::set_status(&app.db.pool, user_id, "banned", now_ms()).await? {
        return Err(AppError::not_found("user"));
    }
    app.revocations.revoke(&format!("user:{user_id}"), sessions::access_deadline(app)).await?;
    sessions::end_all(app, SubjectKind::User, user_id, "ban").await
}

pub async fn unban(app: &App, user_id: i64) -> Result<(), AppError> {
    if !store::set_status(&app.db.pool, user_id, "active", now_ms()).await? {
        return Err(AppError::not_found("user"));
    }
    app.revocations.lift(&format!("user:{user_id}")).await
}

fn validate_code(code: &str, field: &str) -> Result<(), AppError> {
    // WeChat's codes are short ASCII tokens; the OpenAPI document says the same (visible ASCII, 1 to 128).
    if code.is_empty() || code.len() > 128 || !code.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AppError::validation(field, "must be 1 to 128 visible ASCII characters"));
    }
    Ok(())
}

/// `13812348000` → `138****8000`.
pub fn mask_phone(phone: &str) -> String {
    let chars: Vec<char> = phone.chars().collect();
    if chars.len() < 7 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}****{tail}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn phones_are_masked() {
        assert_eq!(super::mask_phone("13812348000"), "138****8000");
        assert_eq!(super::mask_phone("12345"), "*****");
    }
}
