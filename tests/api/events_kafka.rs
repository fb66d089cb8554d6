//! The Kafka transport (cargo feature `kafka`), against the real broker process scripts/services.sh starts
//! (`WXSHOP_TEST_KAFKA_BROKERS`), and against librdkafka's mock cluster where the broker must fail on cue.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use serde_json::json;

use crate::helpers::{backends, eventually, spawn_app_with, TestApp};
use crate::payments::{buyer, new_order, pay_fully};

fn brokers() -> String {
    std::env::var("WXSHOP_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:19092".into())
}

/// Every record of `topic` from the start: (key, ce_type) in partition order.
async fn read_topic(brokers: &str, topic: &str, expect: usize) -> Vec<(String, String)> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("test-reader-{}", uuid::Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut records = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while records.len() < expect && std::time::Instant::now() < deadline {
        if let Ok(Ok(message)) = tokio::time::timeout(Duration::from_secs(2), consumer.recv()).await {
            let key = String::from_utf8(message.key().unwrap_or_default().to_vec()).unwrap();
            let ce_type = message
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == "ce_type").and_then(|h| h.value.map(|v| v.to_vec())))
                .map(|v| String::from_utf8(v).unwrap())
                .unwrap_or_default();
            records.push((key, ce_type));
        }
    }
    records
}

async fn kafka_app(backend: &crate::helpers::Backend, brokers: &str) -> (TestApp, String) {
    let prefix = format!("wxshop-test-{}.", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let (b, p) = (brokers.to_owned(), prefix.clone());
    let app = spawn_app_with(backend, move |c| {
        c.events.kafka_brokers = Some(b);
        c.events.topic_prefix = p;
    })
    .await;
    (app, prefix)
}

#[tokio::test]
async fn events_reach_kafka_in_binary_mode_and_consumer_groups_apply_each_once() {
    for backend in backends() {
        let (app, prefix) = kafka_app(&backend, &brokers()).await;
        let admin = app.admin_token("operator").await;
        let (token, address) = buyer(&app, "kafkaesque").await;
        let order = new_order(&app, &token, address).await;
        pay_fully(&app, &token, order).await;
        let (status, _) = app
            .post(
                &format!("/admin/api/v1/orders/{order}/ship"),
                &json!({"carrier": "SF", "tracking_no": "K1"}),
                Some(&admin),
            )
            .await;
        assert_eq!(status, 200);
        // Published and acknowledged.
        let published = eventually(Duration::from_secs(30), || async {
            app.scalar("SELECT COUNT(*) AS n FROM outbox WHERE published_at IS NULL").await == 0
        })
        .await;
        assert!(published, "the relay empties the outbox into Kafka");
        let records = read_topic(&brokers(), &format!("{prefix}order"), 3).await;
        let types: Vec<&str> = records.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(types, ["cn.wxshop.order.created.v1", "cn.wxshop.order.paid.v1", "cn.wxshop.order.shipped.v1"]);
        assert!(records.iter().all(|(key, _)| key == &order.to_string()), "keyed by the order: {records:?}");
        // The consumer groups applied them: the statistics and both subscribe messages.
        let applied = eventually(Duration::from_secs(30), || async {
            let (_, stats) = app.get_auth("/admin/api/v1/stats/sales", &admin).await;
            let (_, messages) = app.get_json("/__simulator/wechat/_messages").await;
            stats["totals"]["orders"] == 1 && messages.as_array().map(Vec::len) == Some(2)
        })
        .await;
        assert!(applied, "consumed through Kafka");
        let inbox: i64 = app.scalar("SELECT COUNT(*) AS n FROM processed_event").await;
        assert_eq!(inbox, 3, "sales: paid; subscribe: paid, shipped");
        // The consumer groups' lag is exported.
        let lag_reported = eventually(Duration::from_secs(20), || async {
            let metrics =
                app.client.get(format!("{}/metrics", app.ops_address)).send().await.unwrap().text().await.unwrap();
            metrics.lines().any(|l| {
                l.starts_with("events_consumer_lag{")
                    && l.contains("consumer=\"sales_stats\"")
                    && l.contains("transport=\"kafka\"")
            })
        })
        .await;
        assert!(lag_reported, "events_consumer_lag for the Kafka consumer");
    }
}

#[tokio::test]
async fn a_broker_outage_delays_events_and_loses_none() {
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    let servers = cluster.bootstrap_servers();
    for backend in backends() {
        let setup = std::time::Instant::now();
        let (app, prefix) = kafka_app(&backend, &servers).await;
        for aggregate in ["order", "refund", "sku", "user", "coupon", "flash_purchase", "probe"] {
            cluster.create_topic(&format!("{prefix}{aggregate}"), 1, 1).unwrap();
        }
        let admin = app.admin_token("operator").await;
        let (token, address) = buyer(&app, "outage").await;
        assert!(
            eventually(Duration::from_secs(30), || async {
                app.scalar("SELECT COUNT(*) AS n FROM outbox WHERE published_at IS NULL").await == 0
            })
            .await
        );
        eprintln!("initial drain after {:?}", setup.elapsed());
        cluster.broker_down(1).unwrap();
        let order = new_order(&app, &token, address).await;
        pay_fully(&app, &token, order).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let pending: i64 = app.scalar("SELECT COUNT(*) AS n FROM outbox WHERE published_at IS NULL").await;
        assert!(pending >= 2, "nothing is marked published while the broker is down ({pending} pending)");
        cluster.broker_up(1).unwrap();
        let started = std::time::Instant::now();
        let drained = eventually(Duration::from_secs(60), || async {
            app.scalar("SELECT COUNT(*) AS n FROM outbox WHERE published_at IS NULL").await == 0
        })
        .await;
        assert!(drained, "everything is published once the broker is back");
        eprintln!("drained after {:?}", started.elapsed());
        let applied = eventually(Duration::from_secs(60), || async {
            let (_, stats) = app.get_auth("/admin/api/v1/stats/sales", &admin).await;
            stats["totals"]["orders"] == 1
        })
        .await;
        assert!(applied, "and consumed once");
        eprintln!("applied after {:?}", started.elapsed());
    }
}
