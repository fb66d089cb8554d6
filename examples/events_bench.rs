//! Event and reporting figures against a running `wxshop serve` (release build). Run by `bench/events.sh`.
//!
//!   events_bench report BASE                → report events accepted per second (batches of 100, 32 concurrent)
//!   events_bench relay  BASE DATABASE_URL   → outbox events published per second, and commit→consumer lag p50/p99
//!
//! The relay figure: 20,000 `order.paid` events committed in one transaction, timed until the relay has published
//! them all. The lag: 2,000 events a second for 10 s, each `processed_at − occurred_at` of the sales consumer.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::Row;

async fn report(base: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(64).build()?;
    let (batches, per_batch, concurrency) = (2_000usize, 100usize, 32usize);
    let now = wxshop::db::rfc3339(wxshop::db::now_ms());
    let bodies: Vec<Value> = (0..batches)
        .map(|b| {
            let events: Vec<Value> = (0..per_batch)
                .map(|i| json!({"event_id": format!("b{b}-{i}"), "type": "page_view", "occurred_at": now, "page": format!("pages/p{}/p", i % 20)}))
                .collect();
            json!({"sent_at": now, "anon_id": format!("bench-anon-{b:06}"), "batch": events})
        })
        .collect();
    let queue = std::sync::Arc::new(std::sync::Mutex::new(bodies));
    let started = Instant::now();
    let workers = (0..concurrency).map(|_| {
        let (queue, client, url) = (queue.clone(), client.clone(), format!("{base}/api/v1/track/batch"));
        tokio::spawn(async move {
            let mut accepted = 0i64;
            loop {
                let Some(body) = queue.lock().unwrap().pop() else { return accepted };
                loop {
                    let response = client.post(&url).json(&body).send().await.unwrap();
                    if response.status() == 200 {
                        accepted += response.json::<Value>().await.unwrap()["accepted"].as_i64().unwrap();
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        })
    });
    let accepted: i64 = futures_util::future::join_all(workers).await.into_iter().map(|r| r.unwrap()).sum();
    let elapsed = started.elapsed().as_secs_f64();
    println!("reporting: {accepted} events in {elapsed:.2} s: {:.0} events/s accepted", accepted as f64 / elapsed);
    anyhow::ensure!(accepted == (batches * per_batch) as i64);
    Ok(())
}

async fn pending(pool: &sqlx::AnyPool) -> anyhow::Result<i64> {
    Ok(sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE published_at IS NULL")
        .fetch_one(pool)
        .await?
        .try_get("n")?)
}

/// Commits `n` `order.paid` events in one transaction (run again on a deadlock, as the shop's own writes are).
async fn paid_events(pool: &sqlx::AnyPool, order_id: i64, n: usize) -> anyhow::Result<()> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match paid_events_once(pool, order_id, n).await {
            Err(error) if attempt < 3 && error.to_string().contains("1213") => continue,
            other => return other,
        }
    }
}

async fn paid_events_once(pool: &sqlx::AnyPool, order_id: i64, n: usize) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    for _ in 0..n {
        let event = wxshop::events::CloudEvent::new(
            "order",
            &order_id.to_string(),
            "order.paid",
            json!({"order_id": order_id}),
            wxshop::db::now_ms(),
        );
        wxshop::events::outbox::insert(&mut tx, &[(event, "order")]).await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn relay(base: &str, database: &str) -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(database).await?;
    let client = reqwest::Client::builder().no_proxy().build()?;
    let login: Value = client
        .post(format!("{base}/api/v1/auth/wechat/login"))
        .json(&json!({"code": "eventbench"}))
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
    let order: Value = client
        .post(format!("{base}/api/v1/orders"))
        .bearer_auth(&token)
        .header("idempotency-key", uuid::Uuid::new_v4().to_string())
        .json(&json!({"items": [{"sku_id": 1, "quantity": 1}], "address_id": address["id"]}))
        .send()
        .await?
        .json()
        .await?;
    let order_id = order["id"].as_i64().unwrap();
    while pending(&pool).await? > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Throughput: a backlog of 20,000 committed at once.
    let n = 20_000;
    paid_events(&pool, order_id, n).await?;
    let started = Instant::now();
    while pending(&pool).await? > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!("relay: {n} events published in {elapsed:.2} s: {:.0} events/s", n as f64 / elapsed);
    // Lag under a steady 2,000 events/s for 10 s, once the consumers have caught up with the backlog above.
    let backlog: i64 = sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE type = 'cn.wxshop.order.paid.v1'")
        .fetch_one(&pool)
        .await?
        .try_get("n")?;
    let caught_up = Instant::now();
    loop {
        let done: i64 = sqlx::query("SELECT COUNT(*) AS n FROM processed_event WHERE consumer = 'sales_stats'")
            .fetch_one(&pool)
            .await?
            .try_get("n")?;
        if done >= backlog {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "consumers: the 20,000-event backlog applied {:.2} s after publication",
        caught_up.elapsed().as_secs_f64()
    );
    let mark = wxshop::db::now_ms();
    for _ in 0..200 {
        let tick = Instant::now();
        paid_events(&pool, order_id, 100).await?;
        tokio::time::sleep(Duration::from_millis(50).saturating_sub(tick.elapsed())).await;
    }
    let expected: i64 = sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE type = 'cn.wxshop.order.paid.v1'")
        .fetch_one(&pool)
        .await?
        .try_get("n")?;
    loop {
        let done: i64 = sqlx::query("SELECT COUNT(*) AS n FROM processed_event WHERE consumer = 'sales_stats'")
            .fetch_one(&pool)
            .await?
            .try_get("n")?;
        if done >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows = sqlx::query(
        "SELECT p.processed_at - o.occurred_at AS lag FROM processed_event p JOIN outbox o ON o.id = p.event_id \
         WHERE p.consumer = 'sales_stats' AND o.occurred_at >= ? ORDER BY lag",
    )
    .bind(mark)
    .fetch_all(&pool)
    .await?;
    let lags: Vec<i64> = rows.iter().map(|r| r.try_get::<i64, _>("lag")).collect::<Result<_, _>>()?;
    let at = |q: f64| lags[((lags.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "lag commit→consumer at 2000 events/s: n={} p50={} ms p99={} ms max={} ms",
        lags.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("report") => report(&args[2]).await,
        Some("relay") => relay(&args[2], &args[3]).await,
        _ => anyhow::bail!("usage: events_bench report BASE | relay BASE DATABASE_URL"),
    }
}
