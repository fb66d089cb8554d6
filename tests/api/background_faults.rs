//! Background queues isolate a failing item: an injected permanent failure (a database trigger that refuses one
//! row) is retried with backoff, then parked or reported, and everyone else's work goes through.

use std::time::Duration;

use serde_json::{json, Value};
use wxshop::db::{now_ms, Dialect};

use crate::helpers::{backends, eventually, spawn_app_with, TestApp};

/// Makes every `event` (`INSERT` or `UPDATE`) on `shop_order` fail for rows matching `condition` (an SQL
/// expression over `NEW.`/`OLD.` columns), on either dialect.
async fn poison(app: &TestApp, event: &str, condition: &str) {
    let sql = match app.state.db.dialect {
        Dialect::Sqlite => format!(
            "CREATE TRIGGER poison BEFORE {event} ON shop_order WHEN {condition} \
             BEGIN SELECT RAISE(ABORT, 'injected permanent failure'); END"
        ),
        Dialect::MySql => format!(
            "CREATE TRIGGER poison BEFORE {event} ON shop_order FOR EACH ROW BEGIN IF {condition} THEN \
             SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'injected permanent failure'; END IF; END"
        ),
    };
    sqlx::raw_sql(&sql).execute(&app.state.db.pool).await.expect("create the trigger");
}

async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.client.get(format!("{}/metrics", app.ops_address)).send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_purchase_whose_order_always_fails_is_parked_and_the_others_go_through() {
    for backend in backends() {
        let app = spawn_app_with(&backend, |c| {
            c.flash_sale.max_attempts = 3;
            c.flash_sale.retry_base_ms = 50;
            c.flash_sale.claim_idle_ms = 200;
            c.flash_sale.worker_poll_ms = 50;
        })
        .await;
        let admin = app.admin_token("operator").await;
        let sku_id = app.scalar("SELECT MIN(id) AS n FROM sku").await;
        let buyers = app.buyers(4).await;
        poison(&app, "INSERT", &format!("NEW.user_id = {}", buyers[1].user_id)).await;
        let sale_id =
            crate::flash_sales::create_sale(&app, &admin, sku_id, 10, 1, -1_000).await["id"].as_i64().unwrap();

        let mut purchases = Vec::new();
        for (i, buyer) in buyers.iter().enumerate() {
            let body = json!({"quantity": 1, "address_id": buyer.address_id});
            let path = format!("/api/v1/flash-sales/{sale_id}/purchase");
            let (status, _, won) = app.post_keyed(&path, &body, &buyer.token, &format!("poison-{i}")).await;
            assert_eq!(status, 202, "{won}");
            purchases.push(won["purchase_id"].as_str().unwrap().to_owned());
        }
        let outcome = |i: usize| {
            let path = format!("/api/v1/flash-sales/purchases/{}", purchases[i]);
            let token = buyers[i].token.clone();
            let app = &app;
            async move { app.get_auth(&path, &token).await.1 }
        };
        let settled = eventually(Duration::from_secs(20), || async {
            let mut all = true;
            for i in 0..4 {
                all &= outcome(i).await["status"] != "queued";
            }
            all
        })
        .await;
        assert!(settled, "every purchase is decided ({})", backend.name());
        for i in [0, 2, 3] {
            let done = outcome(i).await;
            assert_eq!(done["status"], "created", "buyer {i} is not held up by the bad one: {done}");
        }
        let parked: Value = outcome(1).await;
        assert_eq!((parked["status"].as_str(), parked["reason"].as_str()), (Some("failed"), Some("order_failed")));
        let attempts =
            app.scalar(&format!("SELECT attempts AS n FROM flash_purchase WHERE id = '{}'", purchases[1])).await;
        assert_eq!(attempts, 3, "tried max_attempts times");
        assert!(metric(&app, "flash_sale_handoff_parked_total").await >= 1.0);

        // Its unit went back to the sale; reconciliation finds nothing to fix.
        let (_, view) = app.get_auth(&format!("/admin/api/v1/flash-sales/{sale_id}"), &admin).await;
        assert_eq!((view["sold"].as_i64(), view["remaining"].as_i64()), (Some(3), Some(7)), "{view}");
        let (status, report) =
            app.post(&format!("/admin/api/v1/flash-sales/{sale_id}/reconcile"), &json!({}), Some(&admin)).await;
        assert_eq!(status, 200, "{report}");
        let (_, again) = app.get_auth(&format!("/admin/api/v1/flash-sales/{sale_id}"), &admin).await;
        assert_eq!((again["sold"].as_i64(), again["remaining"].as_i64()), (Some(3), Some(7)), "{report}");
        let orders = app.scalar(&format!("SELECT COUNT(*) AS n FROM shop_order WHERE flash_sale_id = {sale_id}")).await;
        assert_eq!(orders, 3);
    }
}

#[tokio::test]
async fn an_order_the_sweep_cannot_cancel_does_not_hold_up_the_others() {
    for backend in backends() {
        let app = spawn_app_with(&backend, |c| c.orders.sweep_interval_ms = 3_600_000).await;
        let user = app.login("sweep-poison").await;
        let address_id = app.address_id(&user.access_token).await;
        let mut ids = Vec::new();
        for i in 0..3 {
            let body = json!({"items": [{"sku_id": 1, "quantity": 1}], "address_id": address_id});
            let (status, _, order) =
                app.post_keyed("/api/v1/orders", &body, &user.access_token, &format!("sweep-{i}")).await;
            assert_eq!(status, 201, "{order}");
            ids.push(order["id"].as_i64().unwrap());
        }
        sqlx::query("UPDATE shop_order SET pay_deadline = ? WHERE user_id = ?")
            .bind(now_ms() - 1_000)
            .bind(user.user_id)
            .execute(&app.state.db.pool)
            .await
            .unwrap();
        poison(&app, "UPDATE", &format!("OLD.id = {} AND NEW.status = 'cancelled'", ids[1])).await;

        let mut failing = wxshop::orders::worker::failing_orders();
        let cancelled = wxshop::orders::worker::sweep_with(&app.state, &mut failing).await.expect("the pass goes on");
        assert_eq!(cancelled, 2, "{}", backend.name());
        let status_of = |id: i64| {
            format!("SELECT CASE WHEN status = 'cancelled' THEN 1 ELSE 0 END AS n FROM shop_order WHERE id = {id}")
        };
        assert_eq!(app.scalar(&status_of(ids[0])).await, 1);
        assert_eq!(app.scalar(&status_of(ids[1])).await, 0, "rolled back alone");
        assert_eq!(app.scalar(&status_of(ids[2])).await, 1);
        assert_eq!(failing.attempts(&ids[1]), 1);
        assert_eq!(failing.backing_off(), vec![ids[1]]);
        // Backing off: the next pass leaves it alone.
        assert_eq!(wxshop::orders::worker::sweep_with(&app.state, &mut failing).await.unwrap(), 0);
        assert_eq!(failing.attempts(&ids[1]), 1, "not tried again during its backoff");
    }
}
