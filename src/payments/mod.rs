//! WeChat Pay API v3 (issue 12, in progress): the protocol's cryptography, checked against the official test
//! vectors. The client, the simulator and the shop side build on these.
//!
//! - `sign`: the request `Authorization` header (`WECHATPAY2-SHA256-RSA2048`), the signed messages of requests,
//!   responses and notifications, `paySign` for `wx.requestPayment`, and verification of WeChat's signatures.
//! - `crypto`: the merchant private key and WeChat's public keys, parsed once; `AEAD_AES_256_GCM` for notification
//!   resources with the API v3 key.

pub mod crypto;
pub mod sign;
