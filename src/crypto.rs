//! Small cryptographic helpers: random tokens, SHA-256 and HMAC, the percent-encoding that request signatures
//! (S3, COS, OSS, Aliyun CDN) canonicalize with, and AES-256-GCM for secrets kept at rest (a WeChat `session_key`
//! is stored encrypted, never in the clear).

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// `n` random bytes from the OS-seeded CSPRNG, base64url without padding.
pub fn random_token(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn sha256_hex(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

pub fn hmac_sha1(key: &[u8], data: &[u8]) -> [u8; 20] {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Compares two signatures in time that depends on their length only.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// RFC 3986 encoding as SigV4 (and Aliyun's RPC signature) wants it: unreserved characters kept, everything else
/// `%XX`; `/` kept only in paths.
pub fn uri_encode(input: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(input.len());
    for byte in input.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(byte as char),
            b'/' if !encode_slash => out.push('/'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Encrypts small secrets for storage: AES-256-GCM, random 96-bit nonce, stored as base64(nonce || ciphertext).
#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl SecretBox {
    /// `key` must be 32 bytes.
    pub fn new(key: &[u8]) -> Result<SecretBox, String> {
        Aes256Gcm::new_from_slice(key)
            .map(|cipher| SecretBox { cipher })
            .map_err(|_| format!("an AES-256 key is 32 bytes, got {}", key.len()))
    }

    pub fn seal(&self, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext =
            self.cipher.encrypt(Nonce::from_slice(&nonce), plaintext).expect("AES-GCM encryption of a short secret");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        STANDARD.encode(out)
    }

    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, String> {
        let bytes = STANDARD.decode(sealed).map_err(|e| format!("sealed secret is not base64: {e}"))?;
        if bytes.len() < 12 + 16 {
            return Err("sealed secret is too short".into());
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| "sealed secret does not authenticate (wrong key or tampered)".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_detects_tampering() {
        let sealed_box = SecretBox::new(&[7u8; 32]).unwrap();
        let sealed = sealed_box.seal(b"session-key");
        assert_ne!(sealed, sealed_box.seal(b"session-key"), "random nonce");
        assert_eq!(sealed_box.open(&sealed).unwrap(), b"session-key");
        let mut bytes = STANDARD.decode(&sealed).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        assert!(sealed_box.open(&STANDARD.encode(bytes)).is_err());
        assert!(SecretBox::new(&[7u8; 32]).unwrap().open("AAAA").is_err());
        assert!(SecretBox::new(&[8u8; 32]).unwrap().open(&sealed).is_err(), "another key cannot open it");
        assert!(SecretBox::new(&[1u8; 16]).is_err());
    }

    #[test]
    fn digests_are_stable() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(random_token(32).len(), 43);
        assert_ne!(random_token(32), random_token(32));
    }
}
