//! Notification delivery: the envelope sealed with the API v3 key (AES-256-GCM, AAD `transaction`/`refund`),
//! signed with the platform key, POSTed to the notify URL and retried on WeChat's schedule until a 2xx.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::{beijing, keys, now_secs, Delivery, PaySimulator, Txn};
use crate::payments::sign::{nonce, response_message};

/// WeChat's retry schedule after the first attempt (15 tries over about 24 h), before `time_scale`.
const RETRY_SECS: [u64; 15] = [15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600];

/// How one delivery attempt is signed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Valid,
    Probe,
    BadSignature,
    StaleTimestamp,
    UnknownSerial,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Valid => "valid",
            Kind::Probe => "probe",
            Kind::BadSignature => "bad_signature",
            Kind::StaleTimestamp => "stale_timestamp",
            Kind::UnknownSerial => "unknown_serial",
        }
    }
}

impl PaySimulator {
    /// `TRANSACTION.SUCCESS` for a paid transaction.
    pub(super) fn notify_transaction(self: &Arc<Self>, txn: Txn) {
        let mut plain = super::transactions::transaction_json(self, &txn);
        let tamper = {
            let mut state = self.state();
            let tamper = state.knobs.amount_tamper_next > 0;
            if tamper {
                state.knobs.amount_tamper_next -= 1;
            }
            tamper
        };
        if tamper {
            plain["amount"]["total"] = json!(txn.total + 1);
            plain["amount"]["payer_total"] = json!(txn.total + 1);
        }
        self.deliver("TRANSACTION.SUCCESS".into(), "transaction", txn.out_trade_no.clone(), plain, txn.notify_url);
    }

    /// Sends one notification (and the duplicates the knobs ask for), each on its own retry schedule.
    pub(super) fn deliver(
        self: &Arc<Self>,
        event_type: String,
        original: &'static str,
        reference: String,
        plain: Value,
        url: String,
    ) {
        let event_id = uuid::Uuid::new_v4().to_string();
        let resource_nonce = crate::crypto::random_token(12).chars().take(12).collect::<String>();
        let sealed =
            self.api_v3_key.seal(&resource_nonce, original, &plain.to_string()).expect("a 12-byte nonce seals");
        let envelope = json!({
            "id": event_id,
            "create_time": beijing(now_secs()),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": if original == "transaction" { "支付成功" } else { "退款结果通知" },
            "resource": {
                "original_type": original,
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": sealed,
                "associated_data": original,
                "nonce": resource_nonce,
            },
        })
        .to_string();
        let (copies, drop_all, delay) = {
            let state = self.state();
            (1 + state.knobs.notify_duplicates, state.knobs.notify_drop, state.knobs.notify_delay_ms)
        };
        if drop_all {
            self.state().deliveries.push(Delivery {
                event_id,
                event_type,
                reference,
                attempt: 0,
                kind: "dropped".into(),
                serial: String::new(),
                status: 0,
                accepted_invalid: false,
            });
            return;
        }
        for _ in 0..copies {
            let sim = self.clone();
            let (envelope, url, event_id, event_type, reference) =
                (envelope.clone(), url.clone(), event_id.clone(), event_type.clone(), reference.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                sim.deliver_with_retries(&envelope, &url, &event_id, &event_type, &reference).await;
            });
        }
    }

    async fn deliver_with_retries(&self, envelope: &str, url: &str, event_id: &str, event_type: &str, reference: &str) {
        for attempt in 0..=RETRY_SECS.len() {
            if attempt > 0 {
                let scale = self.state().knobs.time_scale.max(0.0);
                let wait = (RETRY_SECS[attempt - 1] as f64 * 1000.0 * scale) as u64;
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
            let kind = self.next_kind();
            let (status, serial) = self.post(envelope, url, kind).await;
            let delivered = (200..300).contains(&status);
            self.state().deliveries.push(Delivery {
                event_id: event_id.to_owned(),
                event_type: event_type.to_owned(),
                reference: reference.to_owned(),
                attempt: attempt as u32 + 1,
                kind: kind.label().into(),
                serial,
                status,
                accepted_invalid: delivered && kind != Kind::Valid,
            });
            if delivered {
                return;
            }
        }
    }

    /// Consumes one of the armed signature faults, if any.
    fn next_kind(&self) -> Kind {
        let mut state = self.state();
        let knobs = &mut state.knobs;
        for (counter, kind) in [
            (&mut knobs.probe_next, Kind::Probe),
            (&mut knobs.bad_signature_next, Kind::BadSignature),
            (&mut knobs.stale_timestamp_next, Kind::StaleTimestamp),
            (&mut knobs.unknown_serial_next, Kind::UnknownSerial),
        ] {
            if *counter > 0 {
                *counter -= 1;
                return kind;
            }
        }
        Kind::Valid
    }

    /// One POST; the merchant's status (0 when it did not answer within 5 s) and the serial it was signed under.
    async fn post(&self, envelope: &str, url: &str, kind: Kind) -> (u16, String) {
        let sign_with = self.state().knobs.sign_with.clone();
        let use_certificate = match sign_with.as_str() {
            "certificate" => true,
            "either" => rand::random::<bool>(),
            _ => false,
        };
        let (key, mut serial) = if use_certificate {
            (&self.certificate_key, keys::CERTIFICATE_SERIAL.to_owned())
        } else {
            (&self.public_key, keys::PUBLIC_KEY_ID.to_owned())
        };
        let mut timestamp = now_secs();
        if kind == Kind::StaleTimestamp {
            timestamp -= 600;
        }
        let nonce = nonce();
        let mut signature = key.sign(&response_message(&timestamp.to_string(), &nonce, envelope.as_bytes()));
        match kind {
            Kind::Probe => signature = format!("WECHATPAY/SIGNTEST/{}", &signature[..64]),
            Kind::BadSignature => signature = self.public_key.sign(b"something else"),
            Kind::UnknownSerial => serial = "PUB_KEY_ID_0000000000000000000000000000009999".into(),
            _ => {}
        }
        let request = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("wechatpay-timestamp", timestamp.to_string())
            .header("wechatpay-nonce", nonce)
            .header("wechatpay-signature", signature)
            .header("wechatpay-serial", serial.clone())
            .header("wechatpay-signature-type", "WECHATPAY2-SHA256-RSA2048")
            .body(envelope.to_owned());
        match request.send().await {
            Ok(response) => (response.status().as_u16(), serial),
            Err(_) => (0, serial),
        }
    }
}
