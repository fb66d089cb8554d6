//! The domain event bus: events recorded in the same transaction as the change, relayed in commit order by one
//! leader, applied once by each consumer (sales statistics, WeChat subscribe messages).

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::{Connection, Row};
use wxshop::events::bus;

use crate::helpers::{backends, spawn_app, spawn_app_with, TestApp};
use crate::payments::{buyer, new_order, pay_fully};

async fn settled(app: &TestApp) {
    assert!(bus::settled(&app.state, Duration::from_secs(15)).await, "the bus settles");
}

/// The short types of an aggregate's events, in publication order.
async fn kinds_of(app: &TestApp, aggregate: &str, id: i64) -> Vec<String> {
    let rows =
        sqlx::query("SELECT type FROM outbox WHERE aggregatetype = ? AND aggregateid = ? ORDER BY log_offset, seq")
            .bind(aggregate.to_owned())
            .bind(id.to_string())
            .fetch_all(&app.state.db.pool)
            .await
            .unwrap();
    rows.iter()
        .map(|r| {
            let t: String = r.try_get("type").unwrap();
            t.trim_start_matches("cn.wxshop.").trim_end_matches(".v1").to_owned()
        })
        .collect()
}

#[tokio::test]
async fn state_changes_record_their_events_and_each_consumer_applies_each_once() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let admin = app.admin_token("operator").await;
        let (token, address) = buyer(&app, "evented").await;
        let order = new_order(&app, &token, address).await;
        pay_fully(&app, &token, order).await;
        let (status, _) = app
            .post(
                &format!("/admin/api/v1/orders/{order}/ship"),
                &json!({"carrier": "SF", "tracking_no": "SF9"}),
                Some(&admin),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(app.post(&format!("/api/v1/orders/{order}/confirm-receipt"), &json!({}), Some(&token)).await.0, 204);
        settled(&app).await;

        assert_eq!(
            kinds_of(&app, "order", order).await,
            ["order.created", "order.paid", "order.shipped", "order.completed"]
        );
        assert_eq!(kinds_of(&app, "sku", 1).await, ["sku.stock_changed"]);
        let users: i64 =
            app.scalar("SELECT COUNT(*) AS n FROM outbox WHERE type = 'cn.wxshop.user.registered.v1'").await;
        assert_eq!(users, 1, "the buyer (admins are not users)");
        let row = sqlx::query(
            "SELECT payload FROM outbox WHERE aggregatetype = 'order' AND type = 'cn.wxshop.order.paid.v1'",
        )
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
        let payload = wxshop::db::get_text(&row, "payload").unwrap();
        let event: Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["source"], "/wxshop/order");
        assert_eq!(event["subject"], format!("order:{order}"));
        assert_eq!(event["partitionkey"], order.to_string());
        assert_eq!(event["data"]["order_id"], order);

        // Sales statistics: one order of one unit of SKU 1 at its price.
        let (status, stats) = app.get_auth("/admin/api/v1/stats/sales", &admin).await;
        assert_eq!(status, 200, "{stats}");
        let price: i64 = app.scalar("SELECT price_fen AS n FROM sku WHERE id = 1").await;
        assert_eq!(stats["totals"]["orders"], 1);
        assert_eq!(stats["totals"]["units"], 1);
        assert_eq!(stats["totals"]["gmv_fen"], price);
        assert_eq!(stats["items"][0]["sku_id"], 1);

        // Subscribe messages: paid and shipped, each carrying its event id.
        let (_, messages) = app.get_json("/__simulator/wechat/_messages").await;
        let pages: Vec<&str> = messages.as_array().unwrap().iter().map(|m| m["page"].as_str().unwrap()).collect();
        assert_eq!(pages.len(), 2, "{messages}");
        assert!(pages.iter().all(|p| p.starts_with(&format!("pages/order/detail?id={order}&event="))));

        // A redelivery is a no-op for every consumer.
        let paid: wxshop::events::CloudEvent = serde_json::from_value(event).unwrap();
        let readers = wxshop::events::consumers::Consumer::ALL.into_iter().filter(|c| c.wants(paid.kind()));
        for consumer in readers {
            assert!(!bus::deliver(&app.state, consumer, &paid, None).await.unwrap(), "{consumer:?}");
        }
        let (_, again) = app.get_auth("/admin/api/v1/stats/sales", &admin).await;
        assert_eq!(again["totals"], stats["totals"]);
        let (_, messages) = app.get_json("/__simulator/wechat/_messages").await;
        assert_eq!(messages.as_array().unwrap().len(), 2);
    }
}

#[tokio::test]
async fn sales_statistics_equal_a_recount_of_the_tables() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let admin = app.admin_token("operator").await;
        let (token, address) = buyer(&app, "counted").await;
        let mut orders = Vec::new();
        for _ in 0..6 {
            let order = new_order(&app, &token, address).await;
            pay_fully(&app, &token, order).await;
            orders.push(order);
        }
        // Two refunds: one partial, one full.
        for (order, amount) in [(orders[0], Some(101)), (orders[1], None)] {
            let (_, request) = app
                .post(
                    &format!("/api/v1/orders/{order}/refund-requests"),
                    &json!({"reason": "r", "amount_fen": amount}),
                    Some(&token),
                )
                .await;
            let id = request["id"].as_i64().unwrap();
            let (status, _) = app.post(&format!("/admin/api/v1/refunds/{id}/approve"), &json!({}), Some(&admin)).await;
            assert_eq!(status, 200);
        }
        let refunded = crate::helpers::eventually(Duration::from_secs(10), || async {
            app.scalar("SELECT COUNT(*) AS n FROM refund WHERE status = 'succeeded'").await == 2
        })
        .await;
        assert!(refunded);
        settled(&app).await;
        let (_, stats) = app.get_auth("/admin/api/v1/stats/sales?from=&to=", &admin).await;
        let recount_gmv: i64 = app
            .scalar(
                "SELECT CAST(COALESCE(SUM(i.price_fen * i.quantity), 0) AS SIGNED) AS n FROM order_item i WHERE i.order_id IN \
                 (SELECT order_id FROM order_event WHERE from_status = 'pending_payment' AND to_status = 'paid')",
            )
            .await;
        let recount_orders: i64 = app
            .scalar(
                "SELECT COUNT(*) AS n FROM order_event WHERE from_status = 'pending_payment' AND to_status = 'paid'",
            )
            .await;
        let recount_refund: i64 =
            app.scalar("SELECT CAST(COALESCE(SUM(amount_fen), 0) AS SIGNED) AS n FROM refund WHERE status = 'succeeded' AND kind = 'request'").await;
        assert_eq!(stats["totals"]["gmv_fen"].as_i64(), Some(recount_gmv), "{stats}");
        assert_eq!(stats["totals"]["orders"].as_i64(), Some(recount_orders));
        assert_eq!(stats["totals"]["refunds"].as_i64(), Some(2));
        assert_eq!(stats["totals"]["refund_fen"].as_i64(), Some(recount_refund));
        let (status, body) = app.get_auth("/admin/api/v1/stats/sales?from=yesterday", &admin).await;
        assert_eq!((status, body["code"].as_str()), (422, Some("validation_failed")));
    }
}

#[tokio::test]
async fn the_relay_never_skips_a_row_that_commits_late() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        settled(&app).await;
        let event = |n: i64| wxshop::events::Event::new("probe", n, "probe.late", json!({"n": n}));
        if backend.is_scale_out() {
            // tx1 takes the lower seq but commits after tx2: a "last id seen" relay would skip it.
            let mut tx1 = app.state.db.begin_write().await.unwrap();
            wxshop::events::record(&mut tx1, event(1)).await.unwrap();
            let mut tx2 = app.state.db.begin_write().await.unwrap();
            wxshop::events::record(&mut tx2, event(2)).await.unwrap();
            tx2.commit().await.unwrap();
            settled(&app).await;
            tx1.commit().await.unwrap();
        } else {
            // SQLite has one writer at a time: commit order is seq order. Both in a row.
            for n in [1, 2] {
                let mut tx = app.state.db.begin_write().await.unwrap();
                wxshop::events::record(&mut tx, event(n)).await.unwrap();
                tx.commit().await.unwrap();
            }
        }
        settled(&app).await;
        let rows =
            sqlx::query("SELECT aggregateid, seq, log_offset FROM outbox WHERE aggregatetype = 'probe' ORDER BY seq")
                .fetch_all(&app.state.db.pool)
                .await
                .unwrap();
        assert_eq!(rows.len(), 2);
        for row in &rows {
            let offset: Option<i64> = row.try_get("log_offset").unwrap();
            assert!(offset.is_some(), "published");
        }
        if backend.is_scale_out() {
            let first: i64 = rows[0].try_get("log_offset").unwrap();
            let second: i64 = rows[1].try_get("log_offset").unwrap();
            assert!(first > second, "the late row was published after the one that committed first");
        }
    }
}

#[tokio::test]
async fn one_relay_leads_per_database_and_a_dead_leader_loses_the_lease() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let (pool, dialect) = (&app.state.db.pool, app.state.db.dialect);
        let now = wxshop::db::now_ms();
        use wxshop::events::outbox::take_lease;
        assert!(take_lease(pool, dialect, "test-lease", "a", now, now + 1_000).await.unwrap());
        assert!(!take_lease(pool, dialect, "test-lease", "b", now, now + 1_000).await.unwrap(), "held by a");
        assert!(take_lease(pool, dialect, "test-lease", "a", now + 500, now + 1_500).await.unwrap(), "a renews");
        assert!(!take_lease(pool, dialect, "test-lease", "b", now + 1_000, now + 2_000).await.unwrap());
        assert!(take_lease(pool, dialect, "test-lease", "b", now + 1_600, now + 2_600).await.unwrap(), "a died");
        // The running instances: exactly one holds the relay's lease.
        if backend.is_scale_out() {
            let _peer = app.spawn_peer().await;
            tokio::time::sleep(Duration::from_millis(600)).await;
            let holders: i64 = app.scalar("SELECT COUNT(*) AS n FROM bus_lease WHERE name = 'outbox'").await;
            assert_eq!(holders, 1);
        }
    }
}

#[tokio::test]
async fn a_consumer_that_keeps_failing_dead_letters_the_event_and_goes_on() {
    for backend in backends() {
        let app = spawn_app_with(&backend, |c| c.events.max_attempts = 2).await;
        let admin = app.admin_token("operator").await;
        let (token, address) = buyer(&app, "unlucky-messages").await;
        // WeChat fails every subscribe message for a while: the "paid" message gives up after 2 attempts.
        let (status, _) = app.post("/__simulator/wechat/_control", &json!({"subscribe_fail_next": 8}), None).await;
        assert_eq!(status, 200);
        let order = new_order(&app, &token, address).await;
        pay_fully(&app, &token, order).await;
        settled(&app).await;
        let dead: i64 = app.scalar("SELECT COUNT(*) AS n FROM dead_letter WHERE consumer = 'subscribe_messages'").await;
        assert_eq!(dead, 1);
        // The other consumer was not held up, and later events flow again.
        let (_, stats) = app.get_auth("/admin/api/v1/stats/sales", &admin).await;
        assert_eq!(stats["totals"]["orders"], 1);
        app.post("/__simulator/wechat/_control", &json!({"subscribe_fail_next": 0}), None).await;
        app.post(
            &format!("/admin/api/v1/orders/{order}/ship"),
            &json!({"carrier": "SF", "tracking_no": "1"}),
            Some(&admin),
        )
        .await;
        settled(&app).await;
        let (_, messages) = app.get_json("/__simulator/wechat/_messages").await;
        assert_eq!(messages.as_array().unwrap().len(), 1, "the shipped message went out: {messages}");
        let (_, metrics) = {
            let r = app.client.get(format!("{}/metrics", app.ops_address)).send().await.unwrap();
            (r.status(), r.text().await.unwrap())
        };
        assert!(metrics.contains("events_outbox_pending"), "backlog metrics are exported");
        assert!(metrics.contains("events_dead_letters_total{consumer=\"subscribe_messages\"}"), "{metrics}");
    }
}

/// The embedded default with a process kill: orders paid while the instance is SIGKILLed mid-run and restarted
/// on the same data; every paid order's event is applied by the sales consumer exactly once (statistics = a recount).
#[tokio::test]
async fn a_killed_embedded_instance_applies_every_event_exactly_once_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let listen = crate::helpers::closed_port_address();
    let base = format!("http://{listen}");
    let start = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_wxshop"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("WXSHOP_DATA_DIR", dir.path())
            .env("WXSHOP_LISTEN", &listen)
            .env("WXSHOP_OPS_LISTEN", "127.0.0.1:0")
            .env("WXSHOP_LOG__FILTER", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap();
    let mut server = start();
    crate::helpers::wait_until_up(&client, &format!("{base}/healthz")).await;
    let mut paid_attempts = 0;
    for round in 0..2 {
        let login: Value = client
            .post(format!("{base}/api/v1/auth/wechat/login"))
            .json(&json!({"code": format!("killed:{round}")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = login["access_token"].as_str().unwrap().to_owned();
        let address: Value = client
            .post(format!("{base}/api/v1/addresses"))
            .bearer_auth(&token)
            .json(&crate::shopping::address("杀"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for i in 0..40 {
            let order: Value = client
                .post(format!("{base}/api/v1/orders"))
                .bearer_auth(&token)
                .header("idempotency-key", format!("kill-{round}-{i}"))
                .json(&json!({"items": [{"sku_id": 1 + i % 3, "quantity": 1}], "address_id": address["id"]}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let id = order["id"].as_i64().unwrap();
            let mut fields: Value = client
                .post(format!("{base}/api/v1/orders/{id}/pay"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            fields["action"] = json!("pay");
            client.post(format!("{base}/__simulator/pay/cashier")).json(&fields).send().await.unwrap();
            paid_attempts += 1;
            if round == 0 && i == 25 {
                // Mid-run: the relay and the consumers are busy with what was just paid.
                server.kill().unwrap();
                server.wait().unwrap();
                server = start();
                crate::helpers::wait_until_up(&client, &format!("{base}/healthz")).await;
                break;
            }
        }
    }
    let url = format!("sqlite://{}", dir.path().join("wxshop.db").display());
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(&url).await.unwrap();
    let mut settled = false;
    for _ in 0..300 {
        let paid: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM order_event WHERE from_status = 'pending_payment' AND to_status = 'paid'",
        )
        .fetch_one(&mut db)
        .await
        .unwrap();
        let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM processed_event WHERE consumer = 'sales_stats'")
            .fetch_one(&mut db)
            .await
            .unwrap();
        let counted: i64 =
            sqlx::query_scalar("SELECT COALESCE(SUM(orders), 0) FROM sales_daily").fetch_one(&mut db).await.unwrap();
        if paid > 0 && applied == paid && counted == paid {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(settled, "every paid order counted exactly once after the restart ({paid_attempts} paid at the cashier)");
    let units: i64 =
        sqlx::query_scalar("SELECT COALESCE(SUM(units), 0) FROM sales_daily").fetch_one(&mut db).await.unwrap();
    let recount: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(quantity), 0) FROM order_item WHERE order_id IN \
         (SELECT order_id FROM order_event WHERE from_status = 'pending_payment' AND to_status = 'paid')",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(units, recount);
    drop(db);
    let _ = server.kill();
    let _ = server.wait();
}

/// Retention deletes published events older than the window that every consumer has read, and nothing else; and it
/// locks only what it deletes: an order transaction holding a fresh outbox row does not hold it up (before, a
/// `DELETE … WHERE seq IN (SELECT … FROM outbox …)` scanned the whole table under locks: order creation deadlocked
/// against it, 776 orders in 10 s of the bench's 500/s).
#[tokio::test]
async fn retention_deletes_old_consumed_events_and_locks_only_those() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let (token, address) = buyer(&app, "retained").await;
        for _ in 0..4 {
            new_order(&app, &token, address).await;
        }
        settled(&app).await;
        let seqs: Vec<i64> =
            sqlx::query_scalar("SELECT seq FROM outbox ORDER BY seq").fetch_all(&app.state.db.pool).await.unwrap();
        assert!(seqs.len() >= 8, "orders and stock changes recorded: {seqs:?}");
        let (old, recent) = seqs.split_at(seqs.len() / 2);
        // The older half was published long ago.
        sqlx::query("UPDATE outbox SET published_at = 1000 WHERE seq <= ?")
            .bind(*old.last().unwrap())
            .execute(&app.state.db.pool)
            .await
            .unwrap();

        // Meanwhile an order transaction has written an outbox row and not committed yet.
        let mut open = app.state.db.pool.begin().await.unwrap();
        if backend.is_scale_out() {
            let event = wxshop::events::Event::new("order", 999_999, "order.created", json!({"order_id": 999_999}));
            wxshop::events::record(&mut open, event).await.unwrap();
        }
        let before = wxshop::db::now_ms() - 86_400_000;
        let purge = wxshop::events::outbox::purge(&app.state.db.pool, app.state.db.dialect, before);
        let purged = if backend.is_scale_out() {
            tokio::time::timeout(Duration::from_secs(3), purge).await.expect("the purge waits for no open order")
        } else {
            // SQLite has one writer: the purge runs after the open transaction, as any write would.
            open.rollback().await.unwrap();
            purge.await
        };
        assert_eq!(purged.unwrap(), old.len() as u64, "the old, consumed rows");
        let left: Vec<i64> =
            sqlx::query_scalar("SELECT seq FROM outbox ORDER BY seq").fetch_all(&app.state.db.pool).await.unwrap();
        assert_eq!(left, recent, "recent rows stay");
    }
}
