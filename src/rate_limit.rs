//! Rate limits on the burst endpoints (flash-sale purchases, coupon claims): a fixed window per user and per client
//! IP, counted in process on the embedded default and in Redis in scale-out, so N instances share one count.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::http::HeaderMap;

use crate::error::AppError;
use crate::state::App;

/// The limited actions and their configured allowances.
#[derive(Debug, Clone, Copy)]
pub enum Action {
    Purchase,
    Claim,
    /// Client event reports (`POST /api/v1/track/batch`), per user or anonymous id.
    Track,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Purchase => "purchase",
            Action::Claim => "claim",
            Action::Track => "track",
        }
    }
}

/// Counts this request against the user's and the IP's allowance; 429 `rate_limited` with `Retry-After` once
/// either is used up.
pub async fn check(app: &App, action: Action, user_id: i64, ip: IpAddr) -> Result<(), AppError> {
    check_subject(app, action, &user_id.to_string(), ip).await
}

/// [`check`] for any subject: a user id, or `a:<anon id>` for anonymous reporters.
pub async fn check_subject(app: &App, action: Action, subject: &str, ip: IpAddr) -> Result<(), AppError> {
    let config = &app.config.rate_limit;
    let (per_user, per_ip) = match action {
        Action::Purchase => (config.purchase_per_user, config.purchase_per_ip),
        Action::Claim => (config.claim_per_user, config.claim_per_ip),
        Action::Track => (config.track_per_user, config.track_per_ip),
    };
    let mut limits = Vec::with_capacity(2);
    let mut keys = Vec::with_capacity(2);
    if per_user > 0 {
        keys.push(format!("rl:{}:u:{subject}", action.name()));
        limits.push(per_user);
    }
    if per_ip > 0 {
        keys.push(format!("rl:{}:ip:{ip}", action.name()));
        limits.push(per_ip);
    }
    if keys.is_empty() {
        return Ok(());
    }
    let counts = app.counters.increment_all(&keys, Duration::from_millis(config.window_ms)).await?;
    let over = counts.iter().zip(&limits).filter(|(count, limit)| count.value > **limit);
    if let Some(resets_in) = over.map(|(count, _)| count.resets_in).max() {
        metrics::counter!("rate_limited_total", "action" => action.name()).increment(1);
        return Err(AppError::TooManyRequests {
            code: "rate_limited",
            message: "too many requests; slow down".into(),
            retry_after_secs: Some(resets_in.as_millis().div_ceil(1_000).max(1) as u64),
        });
    }
    Ok(())
}

/// The client's IP: the connection's peer, or the first `X-Forwarded-For` entry when configured to trust it.
pub fn client_ip(app: &App, headers: &HeaderMap, peer: SocketAddr) -> IpAddr {
    if app.config.rate_limit.trust_forwarded_for {
        let forwarded = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
        if let Some(ip) = forwarded.and_then(|v| v.split(',').next()).and_then(|v| v.trim().parse().ok()) {
            return ip;
        }
    }
    peer.ip()
}
