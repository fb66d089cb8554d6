//! The signed messages of WeChat Pay v3 and the request `Authorization` header.
//!
//! - A request is signed over five lines, each ending in `\n`: method, path with its query (no scheme or host),
//!   timestamp (seconds), nonce, and the exact body bytes sent (empty for a GET).
//! - A response or notification is verified over three: `Wechatpay-Timestamp`, `Wechatpay-Nonce` and the raw body.
//!   Its timestamp must be within [`MAX_SKEW_SECS`] of ours, and a 2xx without a valid signature is not a success.
//! - `paySign` for `wx.requestPayment` is signed over four: app id, timestamp, nonce, `prepay_id=…`.

use rand::distr::{Alphanumeric, SampleString};

use crate::payments::crypto::{MerchantKey, WechatPayKey};

/// The only signature scheme of API v3 (RSA); the SM2 variant is not used.
pub const SCHEME: &str = "WECHATPAY2-SHA256-RSA2048";
/// Responses and notifications older or newer than this are refused (WeChat applies the same to requests).
pub const MAX_SKEW_SECS: i64 = 300;

/// The message a request is signed over.
pub fn request_message(method: &str, path_and_query: &str, timestamp: i64, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut message = format!("{method}\n{path_and_query}\n{timestamp}\n{nonce}\n").into_bytes();
    message.extend_from_slice(body);
    message.push(b'\n');
    message
}

/// The message a response or notification is verified over.
pub fn response_message(timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut message = format!("{timestamp}\n{nonce}\n").into_bytes();
    message.extend_from_slice(body);
    message.push(b'\n');
    message
}

/// A fresh 32-character alphanumeric nonce.
pub fn nonce() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 32)
}

/// Who signs a request: the merchant id, its API certificate's serial and its key.
#[derive(Debug)]
pub struct Merchant {
    pub mch_id: String,
    pub serial: String,
    pub key: MerchantKey,
}

impl Merchant {
    /// The `Authorization` header value for a request whose exact body is `body`.
    pub fn authorization(
        &self,
        method: &str,
        path_and_query: &str,
        timestamp: i64,
        nonce: &str,
        body: &[u8],
    ) -> String {
        let signature = self.key.sign(&request_message(method, path_and_query, timestamp, nonce, body));
        format!(
            "{SCHEME} mchid=\"{}\",nonce_str=\"{nonce}\",timestamp=\"{timestamp}\",serial_no=\"{}\",signature=\"{signature}\"",
            self.mch_id, self.serial
        )
    }

    /// `paySign` for `wx.requestPayment`.
    pub fn pay_sign(&self, app_id: &str, timestamp: i64, nonce: &str, prepay_id: &str) -> String {
        self.key.sign(format!("{app_id}\n{timestamp}\n{nonce}\nprepay_id={prepay_id}\n").as_bytes())
    }
}

/// The signature headers of a response or notification.
#[derive(Debug, Clone, Copy)]
pub struct SignedHeaders<'a> {
    pub timestamp: Option<&'a str>,
    pub nonce: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub serial: Option<&'a str>,
}

/// Why a response or notification is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("a signature header is missing")]
    Missing,
    #[error("the timestamp is not a number")]
    BadTimestamp,
    #[error("the timestamp is more than 300 s away from ours")]
    Stale,
    #[error("signed with a key we do not know ({0})")]
    UnknownSerial(String),
    /// The `WECHATPAY/SIGNTEST/` probe WeChat sends to check that merchants verify: never valid.
    #[error("a signature probe")]
    Probe,
    #[error("the signature does not verify")]
    BadSignature,
}

/// Checks a response's or notification's signature against the key its `Wechatpay-Serial` names (`keys` maps
/// serial → key), with `now` in seconds.
pub fn verify(
    headers: SignedHeaders<'_>,
    body: &[u8],
    now: i64,
    keys: impl Fn(&str) -> Option<WechatPayKey>,
) -> Result<(), VerifyError> {
    let (Some(timestamp), Some(nonce), Some(signature), Some(serial)) =
        (headers.timestamp, headers.nonce, headers.signature, headers.serial)
    else {
        return Err(VerifyError::Missing);
    };
    if signature.starts_with("WECHATPAY/SIGNTEST/") {
        return Err(VerifyError::Probe);
    }
    let seconds: i64 = timestamp.parse().map_err(|_| VerifyError::BadTimestamp)?;
    if (now - seconds).abs() >= MAX_SKEW_SECS {
        return Err(VerifyError::Stale);
    }
    let key = keys(serial).ok_or_else(|| VerifyError::UnknownSerial(serial.to_owned()))?;
    if key.verifies(&response_message(timestamp, nonce, body), signature) {
        Ok(())
    } else {
        Err(VerifyError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payments::crypto::vectors;

    fn merchant() -> Merchant {
        Merchant {
            mch_id: vectors::MERCHANT_ID.into(),
            serial: vectors::MERCHANT_SERIAL.into(),
            key: MerchantKey::from_pkcs8_pem(vectors::MERCHANT_KEY_PEM).unwrap(),
        }
    }

    const V1_BODY: &str = r#"{"appid":"wxd678efh567hg6787","mchid":"1900007291","description":"Image形象店-深圳腾大-QQ公仔","out_trade_no":"1217752501201407033233368018","notify_url":"https://www.weixin.qq.com/wxpay/pay.php","amount":{"total":100,"currency":"CNY"},"payer":{"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}}"#;
    const V1_SIGNATURE: &str = "jnks4dlrPw3ZX+ozVvSK39oa0t7OMBsg83BHAwd8BRdUFiVaQNTLTvci+wURgP1OQBbKYhFGvt7iqYpDSTQkp7Uq1sltaQKyncCyrA1g88m5bsKERQfPyT0ahSwKTYJ1CAn9QiJuSJRq1QsQs07eehbU/k9BCS51jTyc1Jpsi2H77HF9f/BnjXAOP3/sPObg6V5Ee4EzwLox684hhuMuIwHo7D8KFk3LIHOKDcNI4It1aCXydFWNpNK+SG86VUDe5kwoDpw4Ulqfu9z8OFDGbDs9TCxEv8iqQzbpxOlEVoOe2kalSYM5kApQb3nZcxdUtoE0liJGW3RGUNE0t4v01A==";

    /// V1: the JSAPI prepay request of the official signing doc.
    #[test]
    fn v1_request_signature_matches_the_official_vector() {
        let nonce = "593BEC0C930BF1AFEB40B4A08C8FB242";
        let message = request_message("POST", "/v3/pay/transactions/jsapi", 1_554_208_460, nonce, V1_BODY.as_bytes());
        assert_eq!(merchant().key.sign(&message), V1_SIGNATURE);
        let header =
            merchant().authorization("POST", "/v3/pay/transactions/jsapi", 1_554_208_460, nonce, V1_BODY.as_bytes());
        assert_eq!(
            header,
            format!(
                "WECHATPAY2-SHA256-RSA2048 mchid=\"1900007291\",nonce_str=\"{nonce}\",timestamp=\"1554208460\",\
                 serial_no=\"408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB\",signature=\"{V1_SIGNATURE}\""
            )
        );
        assert!(
            request_message("GET", "/v3/x?mchid=1", 1, "n", b"").ends_with(b"\nn\n\n"),
            "a GET signs an empty line"
        );
    }

    /// V2: `paySign` of the official mini-program payment doc.
    #[test]
    fn v2_pay_sign_matches_the_official_vector() {
        let sign = merchant().pay_sign(
            "wx2421b1c4370ec43b",
            1_554_208_460,
            "593BEC0C930BF1AFEB40B4A08C8FB242",
            "wx201410272009395522657a690389285100",
        );
        assert_eq!(
            sign,
            "mI35pfNEQV6777ke/1T+LJLQDNTm7yeoUJH+j/adPGhmCCi0PbgkvYQTRcXH0uibcLVtvFLdGLpmoYO9FV6lBBsTAjuhh5YOvQi0e2g3e0yytitiNET9FEuqM0pjnKfRW4K6LIZDdbWJv9KhZUx3DrJa5TL7OJ7VdADVivxVySIlPVKjGwuCXzuXSJes0UcILgWQUMyha5/3nYofuHtS7r+KYyMuxD+oJ9VM1Qdxk4UIG59CP5Y3wtYIFybyF3bdu1caHTRRX+DLyMXyYA/IrTmiW01c4RPjpHBX5Dk1sZyY1zVsWNsvMHr2e1NTWtBxKJ+qk5N61J7caYoepHFaxw=="
        );
    }

    const V3_SERIAL: &str = "PUB_KEY_ID_0000000000000024101100397200000006";
    const V3_SIGNATURE: &str = "mfI1CPqvBrgcXfgXMFjdNIhBf27ACE2YyeWsWV9ZI7T7RU0vHvbQpu9Z32ogzc+k8ZC5n3kz7h70eWKjgqNdKQF0eRp8mVKlmfzMLBVHbssB9jEZEDXThOX1XFqX7s7ymia1hoHQxQagPGzkdWxtlZPZ4ZPvr1RiqkgAu6Is8MZgXXrRoBKqjmSdrP1N7uxzJ/cjfSiis9FiLjuADoqmQ1P7p2N876YPAol7Rn0+GswwAwxldbdLrmVSjfytfSBJFqTMHn4itojgxSWWN1byuckQt8hSTEv/Lg97QoeGniYP17T80pJeQyL3b+295FPHSO2AtvCgyIbKMZ0BALilAA==";
    const V3_BODY: &[u8] = br#"{"code_url":"weixin://wxpay/bizpayurl?pr=JyC91EIz1"}"#;

    fn v3_headers(signature: &str) -> SignedHeaders<'_> {
        SignedHeaders {
            timestamp: Some("1722850421"),
            nonce: Some("d824f2e086d3c1df967785d13fcd22ef"),
            signature: Some(signature),
            serial: Some(V3_SERIAL),
        }
    }

    fn v3_keys(serial: &str) -> Option<WechatPayKey> {
        (serial == V3_SERIAL).then(|| WechatPayKey::from_public_key_pem(vectors::WECHATPAY_PUBLIC_KEY_PEM).unwrap())
    }

    /// V3: a response signed in public-key mode, and every way it must be refused.
    #[test]
    fn v3_response_verification_in_public_key_mode() {
        let now = 1_722_850_421 + 10;
        assert_eq!(verify(v3_headers(V3_SIGNATURE), V3_BODY, now, v3_keys), Ok(()));
        let tampered = br#"{"code_url":"weixin://wxpay/bizpayurl?pr=JyC91EIz2"}"#;
        assert_eq!(verify(v3_headers(V3_SIGNATURE), tampered, now, v3_keys), Err(VerifyError::BadSignature));
        assert_eq!(verify(v3_headers(V3_SIGNATURE), V3_BODY, 1_722_850_421 + 300, v3_keys), Err(VerifyError::Stale));
        assert_eq!(verify(v3_headers(V3_SIGNATURE), V3_BODY, 1_722_850_421 - 300, v3_keys), Err(VerifyError::Stale));
        assert_eq!(verify(v3_headers("WECHATPAY/SIGNTEST/abc"), V3_BODY, now, v3_keys), Err(VerifyError::Probe));
        assert_eq!(verify(v3_headers("not base64!"), V3_BODY, now, v3_keys), Err(VerifyError::BadSignature));
        let unknown = SignedHeaders { serial: Some("PUB_KEY_ID_OTHER"), ..v3_headers(V3_SIGNATURE) };
        assert_eq!(verify(unknown, V3_BODY, now, v3_keys), Err(VerifyError::UnknownSerial("PUB_KEY_ID_OTHER".into())));
        let missing = SignedHeaders { nonce: None, ..v3_headers(V3_SIGNATURE) };
        assert_eq!(verify(missing, V3_BODY, now, v3_keys), Err(VerifyError::Missing));
    }

    #[test]
    fn nonces_are_32_alphanumerics_and_differ() {
        let (a, b) = (nonce(), nonce());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }
}
