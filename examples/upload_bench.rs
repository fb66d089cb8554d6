//! Upload-complete latency against a running `wxshop serve` (release build). Run by `bench/uploads.sh`.
//!
//!   upload_bench BASE [N] [POST|PUT]
//!
//! A user uploads N distinct ~2 MB JPEGs as `wx.uploadFile` does (credential, then a multipart POST of the fields
//! and the file straight to the bucket, wherever `storage.*` points), then completes them one at a time: each
//! completion reads the object back, sniffs and measures it, strips its EXIF, hashes it, writes the
//! content-addressed copy and deletes the incoming object. Prints p50/p90/max of the completion calls.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{json, Value};

/// A 1×1 JPEG of about `size` bytes: an EXIF segment, then APP3 segments of filler (kept by the stripper, so the
/// whole size is hashed and stored), unique per `seed`.
fn jpeg(seed: u64, size: usize) -> Vec<u8> {
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0];
    let exif = b"Exif\0\0MM\0*\0\0\0\x08GPSLatitude=31.2304N;GPSLongitude=121.4737E";
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(exif);
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    while out.len() + 65_600 < size {
        out.extend_from_slice(&[0xFF, 0xE3, 0xFF, 0xFF]);
        for _ in 0..(65_533 / 8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.extend_from_slice(&[0u8; 65_533 % 8]);
    }
    out.extend_from_slice(&[
        0xFF, 0xDB, 0x00, 0x43, 0x00, 0x08, 0x06, 0x06, 0x07, 0x06, 0x05, 0x08, 0x07, 0x07, 0x07, 0x09, 0x09, 0x08,
        0x0A, 0x0C, 0x14, 0x0D, 0x0C, 0x0B, 0x0B, 0x0C, 0x19, 0x12, 0x13, 0x0F, 0x14, 0x1D, 0x1A, 0x1F, 0x1E, 0x1D,
        0x1A, 0x1C, 0x1C, 0x20, 0x24, 0x2E, 0x27, 0x20, 0x22, 0x2C, 0x23, 0x1C, 0x1C, 0x28, 0x37, 0x29, 0x2C, 0x30,
        0x31, 0x34, 0x34, 0x34, 0x1F, 0x27, 0x39, 0x3D, 0x38, 0x32, 0x3C, 0x2E, 0x33, 0x34, 0x32, 0xFF, 0xC0, 0x00,
        0x0B, 0x08, 0x00, 0x01, 0x00, 0x01, 0x01, 0x01, 0x11, 0x00, 0xFF, 0xC4, 0x00, 0x14, 0x00, 0x01, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0xFF, 0xC4,
        0x00, 0x14, 0x10, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00, 0x37, 0xFF, 0xD9,
    ]);
    out
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let base = args.next().ok_or_else(|| anyhow::anyhow!("usage: upload_bench BASE [N]"))?;
    let n: u64 = args.next().map(|n| n.parse()).transpose()?.unwrap_or(30);
    let method = args.next().unwrap_or_else(|| "POST".into());
    let client = reqwest::Client::builder().no_proxy().build()?;
    let login: Value = client
        .post(format!("{base}/api/v1/auth/wechat/login"))
        .json(&json!({"code": format!("upload-bench-{}", wxshop::db::now_ms())}))
        .send()
        .await?
        .json()
        .await?;
    let token = login["access_token"].as_str().ok_or_else(|| anyhow::anyhow!("login failed: {login}"))?.to_owned();
    let mut ids = Vec::new();
    let mut size = 0;
    for seed in 0..n {
        let bytes = jpeg(seed + wxshop::db::now_ms() as u64, 2_000_000);
        size = bytes.len();
        let body =
            json!({"purpose": "review_photo", "content_type": "image/jpeg", "size": bytes.len(), "method": method});
        let ticket: Value =
            client.post(format!("{base}/api/v1/uploads")).bearer_auth(&token).json(&body).send().await?.json().await?;
        let url = ticket["url"].as_str().ok_or_else(|| anyhow::anyhow!("no upload url: {ticket}"))?;
        let sent = if method == "PUT" {
            client.put(url).header("content-type", "image/jpeg").body(bytes).send().await?
        } else {
            let fields: BTreeMap<String, String> = serde_json::from_value(ticket["fields"].clone())?;
            let mut form = reqwest::multipart::Form::new();
            for (name, value) in fields {
                form = form.text(name, value);
            }
            let file = reqwest::multipart::Part::bytes(bytes).file_name("photo.jpg").mime_str("image/jpeg")?;
            client.post(url).multipart(form.part("file", file)).send().await?
        };
        let status = sent.status();
        anyhow::ensure!(status.is_success(), "upload to storage: {status}: {}", sent.text().await.unwrap_or_default());
        ids.push(ticket["id"].as_str().unwrap().to_owned());
    }
    let mut latencies = Vec::new();
    for id in &ids {
        let started = Instant::now();
        let response = client.post(format!("{base}/api/v1/uploads/{id}/complete")).bearer_auth(&token).send().await?;
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        anyhow::ensure!(response.status() == 200, "complete: {}", response.text().await?);
        latencies.push(elapsed);
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "upload complete, {n} JPEGs of {:.2} MB: p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        size as f64 / 1e6,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        latencies.last().unwrap()
    );
    Ok(())
}
