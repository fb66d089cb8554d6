//! Authentication for the mini-program and the back office: access tokens (JWT HS256, pinned), rotating refresh
//! tokens in families with reuse detection, the deny-list (logout, bans) and the extractors handlers use.
//!
//! `routes` holds the mini-program's login/refresh/logout, `tokens` the JWTs, `sessions` the refresh-token
//! families, `revocation` the deny-list, `extract` the `AuthUser`/`AdminUser` extractors.

pub mod extract;
pub mod revocation;
pub mod routes;
pub mod sessions;
pub mod store;
pub mod tokens;

/// `aud` of access tokens for the mini-program API.
pub const USER_AUDIENCE: &str = "wxshop-api";
/// `aud` of access tokens for the back office.
pub const ADMIN_AUDIENCE: &str = "wxshop-admin";

/// Whose session a refresh-token family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKind {
    User,
    Admin,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::User => "user",
            SubjectKind::Admin => "admin",
        }
    }

    pub fn audience(self) -> &'static str {
        match self {
            SubjectKind::User => USER_AUDIENCE,
            SubjectKind::Admin => ADMIN_AUDIENCE,
        }
    }
}
