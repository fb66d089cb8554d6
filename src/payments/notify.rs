//! `POST /api/v1/payments/wechat/notify`: payment and refund notifications.
//!
//! Fail closed and fast: the raw body's signature is verified against the key its `Wechatpay-Serial` names (401
//! for missing, stale, unknown-serial, probe or bad signatures, so WeChat redelivers), the resource is opened
//! with the API v3 key (or the previous one during a rotation), then the same idempotent functions the queries
//! use apply it in one transaction with the event in the inbox. 204 on success and on duplicates; a 5xx only when
//! nothing could be stored.

use axum::http::HeaderMap;

use crate::db::now_ms;
use crate::error::AppError;
use crate::payments::model::{Notification, RefundInfo, Transaction};
use crate::payments::sign::{self, SignedHeaders, VerifyError};
use crate::payments::{refunds, service};
use crate::state::App;

/// Handles one notification; `Ok` means "answer 204".
pub async fn handle(app: &App, headers: &HeaderMap, body: &[u8]) -> Result<(), AppError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signed = SignedHeaders {
        timestamp: header("wechatpay-timestamp"),
        nonce: header("wechatpay-nonce"),
        signature: header("wechatpay-signature"),
        serial: header("wechatpay-serial"),
    };
    let keys = app.pay.client.keys();
    if let Err(error) = sign::verify(signed, body, now_ms() / 1000, |serial| keys.trusted.get(serial).cloned()) {
        let kind = match error {
            VerifyError::Missing => "missing",
            VerifyError::BadTimestamp | VerifyError::Stale => "stale",
            VerifyError::UnknownSerial(_) => "unknown_serial",
            VerifyError::Probe => "probe",
            VerifyError::BadSignature => "bad_signature",
        };
        metrics::counter!("pay_notifications_total", "outcome" => kind).increment(1);
        // A probe is WeChat checking that we verify: not an attack, nothing to log loudly.
        if error != VerifyError::Probe {
            tracing::warn!(%error, "refused a WeChat Pay notification");
        }
        return Err(AppError::unauthorized("invalid_signature", format!("the notification is not trusted: {error}")));
    }
    let notification: Notification = serde_json::from_slice(body)
        .map_err(|e| AppError::InvalidJson(format!("not a WeChat Pay notification: {e}")))?;
    let resource = &notification.resource;
    if resource.algorithm != "AEAD_AES_256_GCM" {
        return Err(AppError::invalid_parameter(format!("unsupported algorithm {}", resource.algorithm)));
    }
    let aad = resource.associated_data.as_deref().unwrap_or("");
    let plain = keys
        .api_v3_keys
        .iter()
        .find_map(|key| key.open(&resource.nonce, aad, &resource.ciphertext).ok())
        .ok_or_else(|| {
            metrics::counter!("pay_notifications_total", "outcome" => "undecryptable").increment(1);
            tracing::error!(event_id = notification.id, "a signed notification does not open with our API v3 key(s)");
            AppError::invalid_parameter("the resource does not decrypt with the merchant's API v3 key")
        })?;
    let event = Some((notification.id.as_str(), notification.event_type.as_str()));
    match notification.event_type.as_str() {
        "TRANSACTION.SUCCESS" => {
            let txn: Transaction = serde_json::from_str(&plain)
                .map_err(|e| AppError::InvalidJson(format!("the transaction does not parse: {e}")))?;
            let applied = service::apply_transaction(app, &txn, "notify", event).await?;
            let outcome = format!("{applied:?}").to_lowercase();
            metrics::counter!("pay_notifications_total", "outcome" => outcome).increment(1);
        }
        kind if kind.starts_with("REFUND.") => {
            let info: RefundInfo = serde_json::from_str(&plain)
                .map_err(|e| AppError::InvalidJson(format!("the refund does not parse: {e}")))?;
            refunds::apply_refund(app, &info, "notify", event).await?;
            metrics::counter!("pay_notifications_total", "outcome" => "refund").increment(1);
        }
        other => tracing::info!(event_type = other, "ignored a WeChat Pay notification of another kind"),
    }
    Ok(())
}
