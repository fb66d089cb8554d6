//! Certificate mode: WeChat Pay platform certificates (X.509 PEM), each trusted under its serial number.
//!
//! Certificates rotate with overlap, so every certificate in the directory is trusted at once (a map serial →
//! key, never "the first one"); an expired certificate is skipped with a warning.

use std::path::Path;

use rsa::pkcs1::DecodeRsaPublicKey;
use x509_cert::der::DecodePem;
use x509_cert::Certificate;

use crate::payments::crypto::WechatPayKey;

/// Every certificate in `pem` (one or several concatenated), as (serial in uppercase hex, key).
pub fn parse_pem(pem: &str) -> Result<Vec<(String, WechatPayKey)>, String> {
    let mut keys = Vec::new();
    let marker = "-----BEGIN CERTIFICATE-----";
    for block in pem.split(marker).skip(1) {
        let text = format!("{marker}{block}");
        let certificate = Certificate::from_pem(text.trim()).map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let tbs = &certificate.tbs_certificate;
        let serial: String = tbs.serial_number.as_bytes().iter().map(|b| format!("{b:02X}")).collect();
        let expires = tbs.validity.not_after.to_unix_duration().as_secs() as i64;
        if expires < crate::db::now_ms() / 1000 {
            tracing::warn!(serial, "skipping an expired WeChat Pay platform certificate");
            continue;
        }
        let spki = tbs.subject_public_key_info.subject_public_key.raw_bytes();
        let key =
            rsa::RsaPublicKey::from_pkcs1_der(spki).map_err(|_| format!("certificate {serial}: not an RSA key"))?;
        keys.push((serial.trim_start_matches("00").to_owned(), WechatPayKey::from_rsa(key)));
    }
    Ok(keys)
}

/// Every `*.pem` file in `dir`.
pub fn load_dir(dir: &Path) -> Result<Vec<(String, WechatPayKey)>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut keys = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().is_some_and(|e| e == "pem") {
            let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            keys.extend(parse_pem(&text).map_err(|e| format!("{}: {e}", path.display()))?);
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::pay::keys;

    #[test]
    fn the_simulator_certificate_is_trusted_under_its_serial() {
        let parsed = parse_pem(keys::CERTIFICATE_PEM).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].0, keys::CERTIFICATE_SERIAL);
        let platform = crate::payments::crypto::MerchantKey::from_pkcs8_pem(keys::CERTIFICATE_PRIVATE_PEM).unwrap();
        let signature = platform.sign(b"1\nn\n{}\n");
        assert!(parsed[0].1.verifies(b"1\nn\n{}\n", &signature));
        assert!(parse_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err());
    }
}
