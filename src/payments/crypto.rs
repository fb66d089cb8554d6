//! Keys and ciphers of WeChat Pay v3.
//!
//! - [`MerchantKey`]: the merchant's RSA private key (PKCS#8 PEM, `apiclient_key.pem`), signing requests and
//!   `paySign` with RSASSA-PKCS1-v1_5 / SHA-256 (deterministic: no randomness involved).
//! - [`WechatPayKey`]: a WeChat Pay public key (public-key mode, `PUB_KEY_ID_…`) or a platform certificate's key,
//!   verifying responses and notifications.
//! - [`ApiV3Key`]: the 32-byte API v3 key, opening (and, for the simulator, sealing) `AEAD_AES_256_GCM` resources.
//!   The nonce must be 12 bytes; anything else is an error, never a panic.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::Sha256;

/// Why a key or a ciphertext was refused. Carries no key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("not a PKCS#8 RSA private key in PEM form")]
    PrivateKey,
    #[error("not an RSA public key in PEM (SubjectPublicKeyInfo) form")]
    PublicKey,
    #[error("the RSA key is {0} bits; WeChat Pay uses 2048")]
    KeySize(usize),
    #[error("the API v3 key must be exactly 32 bytes, got {0}")]
    ApiV3KeyLength(usize),
    #[error("the AEAD nonce must be 12 bytes, got {0}")]
    NonceLength(usize),
    #[error("the ciphertext is not valid base64")]
    Base64,
    #[error("the ciphertext does not open with this key (tampered, or another key)")]
    Open,
    #[error("the decrypted resource is not UTF-8")]
    Utf8,
}

/// The merchant's private key.
pub struct MerchantKey {
    signing: SigningKey<Sha256>,
}

impl MerchantKey {
    /// Parses a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) RSA key of 2048 bits.
    pub fn from_pkcs8_pem(pem: &str) -> Result<MerchantKey, CryptoError> {
        let key = RsaPrivateKey::from_pkcs8_pem(pem).map_err(|_| CryptoError::PrivateKey)?;
        let bits = rsa::traits::PublicKeyParts::size(&key) * 8;
        if bits != 2048 {
            return Err(CryptoError::KeySize(bits));
        }
        Ok(MerchantKey { signing: SigningKey::<Sha256>::new(key) })
    }

    /// The public half (PKCS#1 DER), to compare keys without exposing the private one.
    pub fn public_der(&self) -> Vec<u8> {
        public_der(&rsa::RsaPublicKey::from(self.signing.as_ref()))
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 over `message`, as standard base64 without line breaks.
    pub fn sign(&self, message: &[u8]) -> String {
        STANDARD.encode(self.signing.sign(message).to_bytes())
    }
}

impl std::fmt::Debug for MerchantKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MerchantKey(<redacted>)")
    }
}

/// A public key WeChat Pay signs with.
#[derive(Clone)]
pub struct WechatPayKey {
    verifying: VerifyingKey<Sha256>,
}

impl WechatPayKey {
    /// Parses a `-----BEGIN PUBLIC KEY-----` PEM (what the merchant platform hands out in public-key mode).
    pub fn from_public_key_pem(pem: &str) -> Result<WechatPayKey, CryptoError> {
        let key = RsaPublicKey::from_public_key_pem(pem).map_err(|_| CryptoError::PublicKey)?;
        Ok(WechatPayKey::from_rsa(key))
    }

    pub fn from_rsa(key: RsaPublicKey) -> WechatPayKey {
        WechatPayKey { verifying: VerifyingKey::<Sha256>::new(key) }
    }

    /// The key (PKCS#1 DER), to compare keys.
    pub fn public_der(&self) -> Vec<u8> {
        public_der(self.verifying.as_ref())
    }

    /// Whether `signature_b64` (standard base64) is this key's RSA-SHA256 signature of `message`.
    pub fn verifies(&self, message: &[u8], signature_b64: &str) -> bool {
        let Ok(bytes) = STANDARD.decode(signature_b64.trim()) else { return false };
        let Ok(signature) = Signature::try_from(bytes.as_slice()) else { return false };
        self.verifying.verify(message, &signature).is_ok()
    }
}

impl std::fmt::Debug for WechatPayKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WechatPayKey")
    }
}

fn public_der(key: &RsaPublicKey) -> Vec<u8> {
    use rsa::pkcs1::EncodeRsaPublicKey;
    key.to_pkcs1_der().map(|d| d.as_bytes().to_vec()).unwrap_or_default()
}

/// The API v3 key: exactly 32 bytes.
#[derive(Clone)]
pub struct ApiV3Key([u8; 32]);

impl ApiV3Key {
    pub fn new(key: &[u8]) -> Result<ApiV3Key, CryptoError> {
        <[u8; 32]>::try_from(key).map(ApiV3Key).map_err(|_| CryptoError::ApiV3KeyLength(key.len()))
    }

    /// Opens an `AEAD_AES_256_GCM` resource: `ciphertext_b64` is base64 of ciphertext‖tag, as WeChat sends it.
    pub fn open(&self, nonce: &str, associated_data: &str, ciphertext_b64: &str) -> Result<String, CryptoError> {
        let nonce = nonce.as_bytes();
        if nonce.len() != 12 {
            return Err(CryptoError::NonceLength(nonce.len()));
        }
        let sealed = STANDARD.decode(ciphertext_b64).map_err(|_| CryptoError::Base64)?;
        let cipher = Aes256Gcm::new_from_slice(&self.0).map_err(|_| CryptoError::ApiV3KeyLength(self.0.len()))?;
        let plain = cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: &sealed, aad: associated_data.as_bytes() })
            .map_err(|_| CryptoError::Open)?;
        String::from_utf8(plain).map_err(|_| CryptoError::Utf8)
    }

    /// Seals `plaintext` the way WeChat Pay does (for the simulator): base64 of ciphertext‖tag.
    pub fn seal(&self, nonce: &str, associated_data: &str, plaintext: &str) -> Result<String, CryptoError> {
        let nonce = nonce.as_bytes();
        if nonce.len() != 12 {
            return Err(CryptoError::NonceLength(nonce.len()));
        }
        let cipher = Aes256Gcm::new_from_slice(&self.0).map_err(|_| CryptoError::ApiV3KeyLength(self.0.len()))?;
        let sealed = cipher
            .encrypt(Nonce::from_slice(nonce), Payload { msg: plaintext.as_bytes(), aad: associated_data.as_bytes() })
            .map_err(|_| CryptoError::Open)?;
        Ok(STANDARD.encode(sealed))
    }
}

impl std::fmt::Debug for ApiV3Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiV3Key(<redacted>)")
    }
}

#[cfg(test)]
pub(crate) mod vectors {
    //! The official test vectors (`../shared/research/wechat-pay-v3-vectors.md`): WeChat's published test key
    //! (merchant 1900007291, serial 408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB) and the public key
    //! `PUB_KEY_ID_0000000000000024101100397200000006` of the signature-verification page. Public, test-only.

    pub const MERCHANT_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQCm2mb6q8gMKH/3
CNTbpJAIrbqiBiQGEOtjGcBrDYltsGynWgNscqT7WvfzU14FQbYcQUC5T4Wvva7m
i3fIp3OgX8VqMDNA0qebnr38Pe6kqiLyZgFpJPXlSKDyPyqhRbVTbXssvSMQeVKc
dXeVxoNNeoOlNFHgF/P0io6AmAVnz+hN8SiZKuOsth5/zUTLGvtkgxBcQooQrtXh
RcpLT798OyIb9xeJ2HO3xRtMv2+perEzb4gMibI74UBz+2QEbnkubPE+2jU2rRZu
dnNEz/BPOt3Qj/w2V6/G0VumGDh6+UeMU0jv4aupHztWITC4Akn0l7lBCNy3lgl8
VFaJnkIxAgMBAAECggEAYGL8aESB7NwciDWW2UdoWUsa7GxFtSdjAz2mFXGdeTsY
mVh7b9OOkRGM+Qio4LqEHDBp1mMk5E/cUJwy1zw8pGGO5nfvs7u9TT3XnHaefIs4
YvUgTYAneIuLRkXNN5rQU+CD7mVYczTSz0Vgjqo9wa1LjUz7G0xbBmJgTdMEFGJs
eJjy6AbJo0CGIwp6HJbTm4CmOUgXnnDAIbEGTIRImkZFH/rzneIeR7oZ77FVwxr1
CZB2gfRCov/yRPbw8vnryYkmvQ7D/ze3j5097vRg/MoDGBSdoOwcmo75vyofr0AS
zytMjmHYyifqkf5slPropSiJeGf4p/7gtKyF6dE/XQKBgQDVAlJ+4U5ZVGOuDc3+
sAhz8CTzgFNlq9vKuSoFK6hOz2L+cwj+E7NXGkOe2DsHHZNy2Xqxk7caKhPEp1z9
hhpMpyLVMoFt6CKemyoRBWDCQwLLwem9SZF/IAyovBkLiH36P42Jm26gUkNMKC/5
Zhtqxf6RZgRQzbVudJi47vIRCwKBgQDIh0+v27Oo+DM3fhObH4I1NrXpWOEGH7OQ
G1dEsMuFYF4hjGhg0kBEP3w9vVdl2+mRllZKTsx9oqjb8OibPLLIH8xsdbAB0WLf
JvjLu4wl/ILUzN1RI03dWnnv2EnEeQn6c3hizvrJ9wR5U4ue9RPVnQooJ0hZF1PU
uCL5fWK3MwKBgElReU/PAYbh80WP3t3Rfbdaa32dKBeQ5iCLR5lsA4zM+YgX1HqQ
EWTj126vgvHaDkyz6vWAoL/Sx+cirHFfXWIRDX5Q2hgYlQH+6qXdMgbrxeSYpHnQ
/tHBGFpkFELSAnrGsVMyOwvYBO4LzyeLK9i+ufcWJFoj1FVmsMLHDG8tAoGARdbi
iQQCoYG4DMarO2aQ6cmhN6EN1h0qY7EyBqlwaIZ0okiNfdMcMOjPc41DKCWcRmlO
qlihXcxN9TQFPzO3rH1urAOdBjUPs1qWYhZyrDQyuLyVBBJApyxAtajloDjrob+f
mQIvVDHk7ACN6xG+E7K6+9salnTKbJapD618uQMCgYBNy6XUvzLkP/A1U/UZdtcx
l8GwU/dturLxz4CyGbqDw4ubaYY2e13lnqHUqQgPtiSyH51nq3tdo8G0YAJdfkSv
KvnfslW91fyEBUKnkdW1o3/1UFU/wprZ7ixVL/F42A4xDu7OFE8EnweJOZ0jWceE
OdhCkaIGBCfRnlECRK8UyQ==
-----END PRIVATE KEY-----";

    pub const MERCHANT_ID: &str = "1900007291";
    pub const MERCHANT_SERIAL: &str = "408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB";

    pub const WECHATPAY_PUBLIC_KEY_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAwXNI6sdlknHBnK8Fu2U6
Cwor9qY747jP8KAfeBMeveEt1TqaHkLfaSD07trZLhGpfs8/AHqjhgSMO1O10YQW
OrrJ4hjIWPKqxbgrYMkBQc+mwdiWp4W3ByCqxBRagCveCXRWCmuJYovl9H/bsDI0
iGbpVtEOghJtfciisYSgxcLufUDTRkvwxjIBK1pCRjk33jJ5YTBWTHMRtMAOcFLN
F6hdEYdX8SPsgHHeLZ5Lv2T/686w1xtgCHef/sd4uSfWmyzsalQdHG/e4IyYmrhx
+O3VBoNDzE3nx23bFeV/RVNCG7cV6VhmYokJNHa/erIPkEmEFID6A5wQOXuxUkmJ
WwIDAQAB
-----END PUBLIC KEY-----";
}

#[cfg(test)]
mod tests {
    use super::*;

    /// V4: AEAD_AES_256_GCM from the official Java SDK's cipher test.
    #[test]
    fn v4_aead_opens_the_official_vector_and_seals_it_back() {
        let key = ApiV3Key::new(b"a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb").unwrap();
        let opened = key.open("uluk4a9R25RW", "associatedData", "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI=").unwrap();
        assert_eq!(opened, "message");
        assert_eq!(key.seal("uluk4a9R25RW", "associatedData", "message").unwrap(), "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI=");
        assert_eq!(key.open("uluk4a9R25RW", "otherData", "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI="), Err(CryptoError::Open));
        assert_eq!(
            key.open("short", "associatedData", "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI="),
            Err(CryptoError::NonceLength(5))
        );
        assert_eq!(key.open("uluk4a9R25RW", "associatedData", "***"), Err(CryptoError::Base64));
    }

    #[test]
    fn keys_are_checked() {
        assert_eq!(ApiV3Key::new(b"too short").unwrap_err(), CryptoError::ApiV3KeyLength(9));
        assert_eq!(MerchantKey::from_pkcs8_pem("not a key").unwrap_err(), CryptoError::PrivateKey);
        assert_eq!(WechatPayKey::from_public_key_pem(vectors::MERCHANT_KEY_PEM).unwrap_err(), CryptoError::PublicKey);
        let key = MerchantKey::from_pkcs8_pem(vectors::MERCHANT_KEY_PEM).unwrap();
        assert_eq!(format!("{key:?}"), "MerchantKey(<redacted>)");
        assert_eq!(format!("{:?}", ApiV3Key::new(&[7; 32]).unwrap()), "ApiV3Key(<redacted>)");
    }
}
