//! Payment figures against a running `wxshop serve` in dev mode (its built-in WeChat Pay simulator): prepay latency
//! (`POST /api/v1/orders/{id}/pay`, p50/p99) and payment notifications handled per second (pre-signed and
//! encrypted as WeChat Pay does, sent at a fixed concurrency, each applied once). Run by `bench/pay.sh`.
//!
//!   cargo run --release --example pay_bench -- http://127.0.0.1:8090 mysql://…/db 2000 32

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wxshop::payments::crypto::{ApiV3Key, MerchantKey};
use wxshop::simulator::pay::keys;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (base, database) = (args[1].clone(), args[2].clone());
    let n: usize = args.get(3).map(|a| a.parse()).transpose()?.unwrap_or(2000);
    let concurrency: usize = args.get(4).map(|a| a.parse()).transpose()?.unwrap_or(32);
    let client = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(256).build()?;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&database).await?;
    sqlx::query("UPDATE sku SET stock = 100000000 WHERE id = 1").execute(&pool).await?;

    let login: Value = client
        .post(format!("{base}/api/v1/auth/wechat/login"))
        .json(&json!({"code": "paybench"}))
        .send()
        .await?
        .json()
        .await?;
    let token = login["access_token"].as_str().unwrap().to_owned();
    let address: Value = client
        .post(format!("{base}/api/v1/addresses"))
        .bearer_auth(&token)
        .json(&json!({"recipient": "压测", "phone": "13800001111", "province": "浙江省", "city": "杭州市", "detail": "1 号"}))
        .send()
        .await?
        .json()
        .await?;

    // Orders, then their prepay one at a time (the latency a buyer sees).
    let mut orders = Vec::with_capacity(n);
    for i in 0..n {
        let body = json!({"items": [{"sku_id": 1, "quantity": 1}], "address_id": address["id"]});
        let order: Value = client
            .post(format!("{base}/api/v1/orders"))
            .bearer_auth(&token)
            .header("idempotency-key", format!("paybench-{i}-{}", uuid::Uuid::new_v4()))
            .json(&body)
            .send()
            .await?
            .json()
            .await?;
        orders.push((
            order["id"].as_i64().unwrap(),
            order["order_no"].as_str().unwrap().to_owned(),
            order["total_fen"].as_i64().unwrap(),
        ));
    }
    let mut latencies = Vec::with_capacity(n);
    for (id, _, _) in &orders {
        let started = Instant::now();
        let response = client.post(format!("{base}/api/v1/orders/{id}/pay")).bearer_auth(&token).send().await?;
        latencies.push(started.elapsed());
        anyhow::ensure!(response.status() == 200, "prepay of {id}: {}", response.text().await?);
    }
    latencies.sort();
    println!(
        "prepay: n={n} p50={:.2} ms p99={:.2} ms max={:.2} ms",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );

    // One TRANSACTION.SUCCESS per order, sealed and signed beforehand so the sender measures the server only.
    let key = ApiV3Key::new(keys::API_V3_KEY.as_bytes())?;
    let platform = MerchantKey::from_pkcs8_pem(keys::PUBLIC_KEY_PRIVATE_PEM)?;
    let now = wxshop::db::now_ms() / 1000;
    let notifications: Vec<(Vec<(&str, String)>, String)> = orders
        .iter()
        .enumerate()
        .map(|(i, (_, no, total))| {
            let plain = json!({
                "appid": wxshop::simulator::SIM_APP_ID, "mchid": keys::MCH_ID, "out_trade_no": no,
                "transaction_id": format!("4200{:018}", i), "trade_type": "JSAPI", "trade_state": "SUCCESS",
                "success_time": wxshop::db::rfc3339_beijing(now), "payer": {"openid": "o-bench"},
                "amount": {"total": total, "payer_total": total, "currency": "CNY"},
            });
            let nonce12 = format!("{:012}", i);
            let body = json!({
                "id": uuid::Uuid::new_v4().to_string(), "create_time": wxshop::db::rfc3339_beijing(now),
                "resource_type": "encrypt-resource", "event_type": "TRANSACTION.SUCCESS", "summary": "支付成功",
                "resource": {"original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
                             "ciphertext": key.seal(&nonce12, "transaction", &plain.to_string()).unwrap(),
                             "associated_data": "transaction", "nonce": nonce12},
            })
            .to_string();
            let nonce = wxshop::payments::sign::nonce();
            let signature =
                platform.sign(&wxshop::payments::sign::response_message(&now.to_string(), &nonce, body.as_bytes()));
            let headers = vec![
                ("wechatpay-timestamp", now.to_string()),
                ("wechatpay-nonce", nonce),
                ("wechatpay-signature", signature),
                ("wechatpay-serial", keys::PUBLIC_KEY_ID.to_owned()),
            ];
            (headers, body)
        })
        .collect();
    let queue = std::sync::Arc::new(std::sync::Mutex::new(notifications));
    let started = Instant::now();
    let workers = (0..concurrency).map(|_| {
        let (queue, client, url) = (queue.clone(), client.clone(), format!("{base}/api/v1/payments/wechat/notify"));
        tokio::spawn(async move {
            let mut failures = 0;
            loop {
                let Some((headers, body)) = queue.lock().unwrap().pop() else { return failures };
                let mut request = client.post(&url).header("content-type", "application/json");
                for (name, value) in headers {
                    request = request.header(name, value);
                }
                if request.body(body).send().await.map(|r| r.status().as_u16()).unwrap_or(0) != 204 {
                    failures += 1;
                }
            }
        })
    });
    let failures: usize = futures_util::future::join_all(workers).await.into_iter().map(|r| r.unwrap_or(1)).sum();
    let elapsed = started.elapsed();
    let ids: Vec<String> = orders.iter().map(|(id, _, _)| id.to_string()).collect();
    let paid: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM shop_order WHERE status = 'paid' AND id IN ({})",
        ids.join(",")
    ))
    .fetch_one(&pool)
    .await?;
    println!(
        "notifications: n={n} concurrency={concurrency} {:.0}/s ({:.2} s), non-204: {failures}, orders paid: {paid}",
        n as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    anyhow::ensure!(failures == 0 && paid == n as i64, "every notification applies once");
    Ok(())
}
