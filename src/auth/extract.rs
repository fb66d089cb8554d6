//! `AuthUser` (mini-program) and `AdminUser` (back office) extractors: a verified, unrevoked access token of the
//! right audience, or a 401 with `WWW-Authenticate: Bearer` and one of `token_missing`, `token_invalid`,
//! `token_expired`, `token_revoked`.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;

use axum::http::request::Parts;

use std::sync::Arc;

use crate::auth::tokens::{now_secs, Verified};
use crate::auth::{ADMIN_AUDIENCE, USER_AUDIENCE};
use crate::error::AppError;
use crate::state::AppState;

/// A mini-program user, authenticated.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: i64,
    pub token: Arc<Verified>,
}

/// Back-office roles, from least to most powerful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Reads everything, changes nothing.
    Viewer,
    /// Manages the catalog and orders.
    Operator,
    /// Everything, including users and admin accounts.
    Admin,
}

impl Role {
    pub fn parse(role: &str) -> Option<Role> {
        match role {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// A back-office account, authenticated.
#[derive(Debug, Clone)]
pub struct AdminUser {
    pub id: i64,
    pub role: Role,
    pub token: Arc<Verified>,
}

impl AdminUser {
    /// 403 `forbidden` unless the account's role is at least `needed`.
    pub fn require(&self, needed: Role) -> Result<(), AppError> {
        if self.role >= needed {
            return Ok(());
        }
        Err(AppError::forbidden("forbidden", format!("this needs the {} role", needed.as_str())))
    }
}

fn bearer(headers: &HeaderMap) -> Result<&str, AppError> {
    let missing =
        || AppError::unauthorized("token_missing", "send the access token as `Authorization: Bearer <token>`");
    let value = headers.get(AUTHORIZATION).ok_or_else(missing)?.to_str().map_err(|_| missing())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(missing());
    }
    Ok(token.trim())
}

/// Verifies the token for `audience` and checks the deny-list: the token, its session and its subject.
async fn authenticate(parts: &Parts, state: &AppState, audience: &str) -> Result<Arc<Verified>, AppError> {
    let token = state.tokens.verify(bearer(&parts.headers)?, audience, now_secs())?;
    ensure_not_revoked(&token, state).await?;
    Ok(token)
}

async fn ensure_not_revoked(token: &Verified, state: &AppState) -> Result<(), AppError> {
    if state.revocations.any_revoked(&token.deny_keys).await? {
        return Err(AppError::unauthorized("token_revoked", "the access token has been revoked"));
    }
    Ok(())
}

impl AuthUser {
    /// Checks the token's signature and claims only, without the deny-list lookup: for the flash-sale sold-out
    /// answer, which reveals nothing and must not touch Redis. Call [`AuthUser::ensure_not_revoked`] before doing
    /// anything for the user.
    pub fn verify_signature(headers: &HeaderMap, state: &AppState) -> Result<AuthUser, AppError> {
        let token = state.tokens.verify(bearer(headers)?, USER_AUDIENCE, now_secs())?;
        let id = token.subject;
        tracing::Span::current().record("user_id", id);
        Ok(AuthUser { id, token })
    }

    /// The deny-list check [`AuthUser::verify_signature`] skipped.
    pub async fn ensure_not_revoked(&self, state: &AppState) -> Result<(), AppError> {
        ensure_not_revoked(&self.token, state).await
    }

    /// For routes open to anonymous callers: `None` without an `Authorization` header, the checked user with one
    /// (a token that is sent must be valid and not revoked).
    pub async fn optional(headers: &HeaderMap, state: &AppState) -> Result<Option<AuthUser>, AppError> {
        if !headers.contains_key(axum::http::header::AUTHORIZATION) {
            return Ok(None);
        }
        let user = AuthUser::verify_signature(headers, state)?;
        user.ensure_not_revoked(state).await?;
        Ok(Some(user))
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let user = AuthUser::verify_signature(&parts.headers, state)?;
        user.ensure_not_revoked(state).await?;
        Ok(user)
    }
}

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = authenticate(parts, state, ADMIN_AUDIENCE).await?;
        let id = token.subject;
        let role = token
            .role
            .as_deref()
            .and_then(Role::parse)
            .ok_or_else(|| AppError::unauthorized("token_invalid", "no role"))?;
        Ok(AdminUser { id, role, token })
    }
}
