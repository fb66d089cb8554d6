//! Flash sales: the admin side, the buyer side, and bursts that must not oversell on one instance or two, with
//! one of them killed mid-burst.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};
use wxshop::db::{now_ms, rfc3339};

use crate::helpers::{backends, eventually, scale_out_backend, spawn_app_with, Buyer, TestApp};

/// A SKU from the demo catalog with `stock` units.
async fn sku_with_stock(app: &TestApp, stock: i64) -> i64 {
    let sku_id = app.scalar("SELECT MIN(id) AS n FROM sku").await;
    sqlx::query("UPDATE sku SET stock = ? WHERE id = ?")
        .bind(stock)
        .bind(sku_id)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    sku_id
}

pub async fn create_sale(app: &TestApp, admin: &str, sku_id: i64, stock: i64, limit: i64, starts_in_ms: i64) -> Value {
    let body = json!({
        "sku_id": sku_id, "price_fen": 990, "stock": stock, "per_user_limit": limit,
        "starts_at": rfc3339(now_ms() + starts_in_ms), "ends_at": rfc3339(now_ms() + 3_600_000),
    });
    let (status, sale) = app.post("/admin/api/v1/flash-sales", &body, Some(admin)).await;
    assert_eq!(status, 201, "{sale}");
    sale
}

pub async fn purchase(app: &TestApp, sale_id: i64, buyer: &Buyer, key: &str) -> (u16, Value) {
    let body = json!({"quantity": 1, "address_id": buyer.address_id});
    let (status, _, body) =
        app.post_keyed(&format!("/api/v1/flash-sales/{sale_id}/purchase"), &body, &buyer.token, key).await;
    (status, body)
}

pub async fn wait_for_order(app: &TestApp, purchase_id: &str, token: &str) -> Value {
    let path = format!("/api/v1/flash-sales/purchases/{purchase_id}");
    let mut last = Value::Null;
    for _ in 0..200 {
        let (status, body) = app.get_auth(&path, token).await;
        assert_eq!(status, 200, "{body}");
        if body["status"] != "queued" {
            return body;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("purchase {purchase_id} still queued: {last}");
}

#[tokio::test]
async fn flash_sale_from_the_admin_side_and_the_buyer_side() {
    for backend in backends() {
        let app = spawn_app_with(&backend, |c| c.rate_limit.purchase_per_user = 1_000).await;
        let admin = app.admin_token("operator").await;
        let viewer = app.admin_token("viewer").await;
        let sku_id = sku_with_stock(&app, 10).await;

        // Validation, roles, stock.
        let bad = json!({"sku_id": sku_id, "price_fen": 0, "stock": 0, "per_user_limit": 0,
                         "starts_at": "tomorrow", "ends_at": rfc3339(now_ms() - 1000)});
        let (status, body) = app.post("/admin/api/v1/flash-sales", &bad, Some(&admin)).await;
        assert_eq!(status, 422, "{body}");
        let fields: HashSet<&str> =
            body["fields"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap()).collect();
        assert!(["price_fen", "stock", "per_user_limit", "starts_at"].iter().all(|f| fields.contains(f)), "{body}");
        let too_many = json!({"sku_id": sku_id, "price_fen": 990, "stock": 11, "per_user_limit": 1,
                              "starts_at": rfc3339(now_ms()), "ends_at": rfc3339(now_ms() + 60_000)});
        let (status, body) = app.post("/admin/api/v1/flash-sales", &too_many, Some(&admin)).await;
        assert_eq!((status, body["code"].as_str()), (409, Some("insufficient_stock")), "{body}");
        let (status, _) = app.post("/admin/api/v1/flash-sales", &too_many, Some(&viewer)).await;
        assert_eq!(status, 403);

        // An upcoming sale: listed, not purchasable, changeable.
        let sale = create_sale(&app, &admin, sku_id, 2, 1, 3_600_000 / 2).await;
        let id = sale["id"].as_i64().unwrap();
        assert_eq!(
            app.scalar(&format!("SELECT stock AS n FROM sku WHERE id = {sku_id}")).await,
            8,
            "units moved to the sale"
        );
        let (_, list) = app.get_json("/api/v1/flash-sales").await;
        let listed = list["items"].as_array().unwrap().iter().find(|s| s["id"] == id).cloned().expect("listed");
        assert_eq!((listed["status"].as_str(), listed["remaining"].as_i64()), (Some("upcoming"), Some(2)), "{listed}");
        let buyers = app.buyers(3).await;
        let (status, body) = purchase(&app, id, &buyers[0], "k-early").await;
        assert_eq!((status, body["code"].as_str()), (409, Some("not_started")), "{body}");
        let change = json!({"stock": 3, "starts_at": rfc3339(now_ms() - 1000)});
        let (status, _, body) = app
            .call(reqwest::Method::PATCH, &format!("/admin/api/v1/flash-sales/{id}"), Some(&change), Some(&admin))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(app.scalar(&format!("SELECT stock AS n FROM sku WHERE id = {sku_id}")).await, 7);
        let (status, _, body) = app
            .call(reqwest::Method::PATCH, &format!("/admin/api/v1/flash-sales/{id}"), Some(&change), Some(&admin))
            .await;
        assert_eq!((status, body["code"].as_str()), (409, Some("already_started")), "{body}");

        // Buying: the key is required; a replay is the same purchase; another body with the key is refused.
        let path = format!("/api/v1/flash-sales/{id}/purchase");
        let (status, body) =
            app.post(&path, &json!({"quantity": 1, "address_id": buyers[0].address_id}), Some(&buyers[0].token)).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("invalid_parameter")), "{body}");
        let (status, won) = purchase(&app, id, &buyers[0], "k1").await;
        assert_eq!((status, won["status"].as_str()), (202, Some("queued")), "{won}");
        let purchase_id = won["purchase_id"].as_str().unwrap().to_owned();
        let (status, replay) = purchase(&app, id, &buyers[0], "k1").await;
        assert_eq!((status, &replay["purchase_id"]), (202, &won["purchase_id"]), "{replay}");
        let other_body = json!({"quantity": 2, "address_id": buyers[0].address_id});
        let (status, _, body) = app.post_keyed(&path, &other_body, &buyers[0].token, "k1").await;
        assert_eq!((status, body["code"].as_str()), (422, Some("idempotency_key_mismatch")), "{body}");
        let (status, body) = purchase(&app, id, &buyers[0], "k2").await;
        assert_eq!((status, body["code"].as_str()), (409, Some("limit_reached")), "{body}");

        // The order appears, at the flash price; nobody else can see the purchase.
        let done = wait_for_order(&app, &purchase_id, &buyers[0].token).await;
        assert_eq!(done["status"], "created", "{done}");
        let order_id = done["order_id"].as_i64().unwrap();
        let (status, order) = app.get_auth(&format!("/api/v1/orders/{order_id}"), &buyers[0].token).await;
        assert_eq!(status, 200);
        assert_eq!((order["total_fen"].as_i64(), order["flash_sale_id"].as_i64()), (Some(990), Some(id)), "{order}");
        assert_eq!(order["items"][0]["price_fen"], 990);
        let (status, body) =
            app.get_auth(&format!("/api/v1/flash-sales/purchases/{purchase_id}"), &buyers[1].token).await;
        assert_eq!((status, body["code"].as_str()), (404, Some("purchase_not_found")));

        // A purchase with someone else's address fails, and its unit goes back to the sale.
        let foreign = json!({"quantity": 1, "address_id": buyers[0].address_id});
        let (status, _, failed) = app.post_keyed(&path, &foreign, &buyers[1].token, "f1").await;
        assert_eq!(status, 202, "{failed}");
        let failed = wait_for_order(&app, failed["purchase_id"].as_str().unwrap(), &buyers[1].token).await;
        assert_eq!((failed["status"].as_str(), failed["reason"].as_str()), (Some("failed"), Some("address_not_found")));

        // Two units left; the others buy them; then it is sold out.
        let (status, second) = purchase(&app, id, &buyers[1], "b1").await;
        assert_eq!(status, 202, "{second}");
        let (status, third) = purchase(&app, id, &buyers[2], "c1").await;
        assert_eq!(status, 202, "{third}");
        let another = app.buyers(1).await;
        let (status, body) = purchase(&app, id, &another[0], "d1").await;
        assert_eq!((status, body["code"].as_str()), (409, Some("sold_out")), "{body}");

        // Cancelling a flash order gives the unit back to the sale, not to the SKU.
        let (status, body) =
            app.post(&format!("/api/v1/orders/{order_id}/cancel"), &json!({}), Some(&buyers[0].token)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(app.scalar(&format!("SELECT stock AS n FROM sku WHERE id = {sku_id}")).await, 7);
        assert!(
            eventually(Duration::from_secs(3), || async {
                let (_, sale) = app.get_auth(&format!("/admin/api/v1/flash-sales/{id}"), &admin).await;
                sale["remaining"] == 1
            })
            .await
        );
        // The sold-out flag expires within a second; then the returned unit is for sale again.
        assert!(
            eventually(Duration::from_secs(3), || async { purchase(&app, id, &another[0], "d2").await.0 == 202 }).await,
            "the returned unit can be bought"
        );

        // Ending early.
        let (status, ended) = app.post(&format!("/admin/api/v1/flash-sales/{id}/end"), &json!({}), Some(&admin)).await;
        assert_eq!(status, 200, "{ended}");
        assert_eq!(ended["status"], "ended");
        let late = app.buyers(1).await;
        let (status, body) = purchase(&app, id, &late[0], "e1").await;
        assert_eq!((status, body["code"].as_str()), (409, Some("ended")), "{body}");
        let (status, body) = purchase(&app, 999_999, &late[0], "e2").await;
        assert_eq!((status, body["code"].as_str()), (404, Some("flash_sale_not_found")), "{body}");
        let (status, list) = app.get_json("/api/v1/flash-sales").await;
        assert_eq!(status, 200, "{list}");
        assert!(list["items"].as_array().unwrap().iter().all(|s| s["id"] != id), "ended sales are not listed");
    }
}

/// Fires `attempts` purchase attempts (each buyer `per_buyer` times, keys distinct) spread over `apps` with
/// `concurrency` in flight; returns the accepted purchase ids with their buyers, and the error codes seen.
/// Where a burst's requests go: an instance's base URL.
#[derive(Clone)]
struct Target {
    client: reqwest::Client,
    address: String,
    /// Responses received from this target.
    answered: Arc<AtomicUsize>,
}

impl Target {
    fn of(app: &TestApp) -> Target {
        Target::at(app.client.clone(), app.address.clone())
    }

    fn at(client: reqwest::Client, address: String) -> Target {
        Target { client, address, answered: Arc::new(AtomicUsize::new(0)) }
    }
}

async fn burst(
    apps: &[Target],
    sale_id: i64,
    buyers: &[Buyer],
    per_buyer: usize,
    concurrency: usize,
) -> (Vec<(String, i64)>, HashMap<String, usize>) {
    let jobs: Vec<(usize, Buyer, usize)> = (0..per_buyer)
        .flat_map(|round| buyers.iter().enumerate().map(move |(i, b)| (i * per_buyer + round, b.clone(), round)))
        .collect();
    let results: Vec<Result<(u16, Value), String>> = stream::iter(jobs)
        .map(|(n, buyer, round)| {
            let app = apps[n % apps.len()].clone();
            async move {
                let body = json!({"quantity": 1, "address_id": buyer.address_id});
                let response = app
                    .client
                    .post(format!("{}/api/v1/flash-sales/{sale_id}/purchase", app.address))
                    .bearer_auth(&buyer.token)
                    .header("Idempotency-Key", format!("burst-{}-{round}", buyer.user_id))
                    .json(&body)
                    .send()
                    .await
                    .map_err(|e| format!("transport: {e:?}"))?;
                let status = response.status().as_u16();
                app.answered.fetch_add(1, Ordering::SeqCst);
                let mut body: Value = response.json().await.map_err(|e| format!("body: {e}"))?;
                body["user_id"] = json!(buyer.user_id);
                Ok((status, body))
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut won = Vec::new();
    let mut codes = HashMap::new();
    for result in results {
        match result {
            Ok((202, body)) => {
                won.push((body["purchase_id"].as_str().unwrap().to_owned(), body["user_id"].as_i64().unwrap()))
            }
            Ok((status, body)) => {
                *codes.entry(format!("{status} {}", body["code"].as_str().unwrap_or("?"))).or_default() += 1
            }
            Err(e) => {
                if !codes.contains_key("transport") {
                    eprintln!("first transport error: {e}");
                }
                *codes.entry(e.split(':').next().unwrap().to_owned()).or_default() += 1
            }
        }
    }
    (won, codes)
}

/// Waits until no purchase of the sale is waiting for its order (in the database or in Redis).
async fn settled(app: &TestApp, sale_id: i64, units: i64) -> bool {
    eventually(Duration::from_secs(60), || async {
        let created = app
            .scalar(&format!(
                "SELECT COUNT(*) AS n FROM flash_purchase WHERE flash_sale_id = {sale_id} AND status = 'created'"
            ))
            .await;
        let queued = app
            .scalar(&format!(
                "SELECT COUNT(*) AS n FROM flash_purchase WHERE flash_sale_id = {sale_id} AND status = 'queued'"
            ))
            .await;
        created == units && queued == 0
    })
    .await
}

/// The invariants after a burst: `stock` units sold, each to a distinct buyer (limit 1), one order per unit,
/// every accepted purchase has its order, and the gate agrees with the database.
async fn check_invariants(app: &TestApp, admin: &str, sale_id: i64, stock: i64, won: &[(String, i64)]) {
    assert!(settled(app, sale_id, stock).await, "all {stock} orders made");
    let orders = app.scalar(&format!("SELECT COUNT(*) AS n FROM shop_order WHERE flash_sale_id = {sale_id}")).await;
    assert_eq!(orders, stock, "one order per unit");
    let buyers = app
        .scalar(&format!("SELECT COUNT(DISTINCT user_id) AS n FROM shop_order WHERE flash_sale_id = {sale_id}"))
        .await;
    assert_eq!(buyers, stock, "nobody above the per-user limit of 1");
    let accepted: HashSet<&str> = won.iter().map(|(p, _)| p.as_str()).collect();
    let created: HashSet<String> = sqlx::query_scalar::<_, String>(&format!(
        "SELECT id FROM flash_purchase WHERE flash_sale_id = {sale_id} AND status = 'created'"
    ))
    .fetch_all(&app.state.db.pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    for purchase_id in &accepted {
        assert!(created.contains(*purchase_id), "accepted purchase {purchase_id} has its order");
    }
    let (status, sale) = app.get_auth(&format!("/admin/api/v1/flash-sales/{sale_id}"), admin).await;
    assert_eq!(status, 200);
    assert_eq!((sale["sold"].as_i64(), sale["remaining"].as_i64()), (Some(stock), Some(0)), "gate agrees: {sale}");
}

#[tokio::test]
async fn embedded_burst_of_2000_attempts_sells_exactly_the_stock() {
    let app = spawn_app_with(&crate::helpers::Backend::Embedded, |c| {
        c.rate_limit.purchase_per_ip = 0;
    })
    .await;
    let admin = app.admin_token("operator").await;
    let sku_id = sku_with_stock(&app, 1_000).await;
    let sale = create_sale(&app, &admin, sku_id, 100, 1, 0).await;
    let sale_id = sale["id"].as_i64().unwrap();
    let buyers = app.buyers(500).await;
    let (won, codes) = burst(&[Target::of(&app)], sale_id, &buyers, 4, 64).await;
    eprintln!("embedded burst: {} won, {codes:?}", won.len());
    assert_eq!(won.len(), 100, "{codes:?}");
    let users: HashSet<i64> = won.iter().map(|(_, u)| *u).collect();
    assert_eq!(users.len(), 100);
    check_invariants(&app, &admin, sale_id, 100, &won).await;
}

/// A `wxshop serve` process on the same database and Redis as `app` (so it can be killed with SIGKILL).
fn spawn_process(app: &TestApp) -> (std::process::Child, String) {
    let listen = crate::helpers::closed_port_address();
    let data_dir = tempfile::tempdir().unwrap().keep();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_wxshop"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("WXSHOP_LISTEN", &listen)
        .env("WXSHOP_OPS_LISTEN", "127.0.0.1:0")
        .env("WXSHOP_DATA_DIR", &data_dir)
        .env("WXSHOP_DATABASE_URL", app.config.database_url.as_ref().unwrap().expose())
        .env("WXSHOP_REDIS_URL", app.config.redis_url.as_ref().unwrap().expose())
        .env("WXSHOP_REDIS_PREFIX", &app.config.redis_prefix)
        .env("WXSHOP_DB__SEED_DEMO", "false")
        .env("WXSHOP_RATE_LIMIT__PURCHASE_PER_IP", "0")
        .env("WXSHOP_FLASH_SALE__CLAIM_IDLE_MS", app.config.flash_sale.claim_idle_ms.to_string())
        .env("WXSHOP_LOG__FILTER", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("wxshop starts");
    (child, format!("http://{listen}"))
}

#[tokio::test]
async fn scale_out_bursts_on_two_instances_never_oversell_even_when_one_is_killed() {
    let Some(backend) = scale_out_backend() else { return };
    let configure = |c: &mut wxshop::config::Config| {
        c.rate_limit.purchase_per_ip = 0;
        c.flash_sale.claim_idle_ms = 2_000;
    };
    let app = spawn_app_with(&backend, configure).await;
    let peer = app.spawn_peer().await;
    let admin = app.admin_token("operator").await;
    let sku_id = sku_with_stock(&app, 10_000).await;
    let buyers = app.buyers(5_000).await;

    // Two instances, 5,000 buyers × 4 attempts, 100 units, limit 1.
    let sale_id = create_sale(&app, &admin, sku_id, 100, 1, 0).await["id"].as_i64().unwrap();
    let started = std::time::Instant::now();
    let (won, codes) = burst(&[Target::of(&app), Target::of(&peer)], sale_id, &buyers, 4, 128).await;
    let elapsed = started.elapsed();
    eprintln!("two instances: 20000 attempts in {elapsed:?}: {} won, {codes:?}", won.len());
    assert_eq!(won.len(), 100, "{codes:?}");
    assert_eq!(codes.keys().filter(|c| !c.starts_with("409")).count(), 0, "only 409s besides the wins: {codes:?}");
    check_invariants(&app, &admin, sale_id, 100, &won).await;

    // Again with the second instance a separate process, killed (SIGKILL) in the middle of the burst.
    let (mut child, address) = spawn_process(&app);
    assert!(
        eventually(Duration::from_secs(20), || async {
            app.client.get(format!("{address}/readyz")).send().await.is_ok_and(|r| r.status() == 200)
        })
        .await,
        "the second process is ready"
    );
    let victim = Target::at(app.client.clone(), address);
    let victim_answers = victim.answered.clone();
    let sale_id = create_sale(&app, &admin, sku_id, 100, 1, 0).await["id"].as_i64().unwrap();
    // Killed while it is deciding: after its first 40 answers, while the 100 units are still being won.
    let killer = tokio::spawn(async move {
        while victim_answers.load(Ordering::SeqCst) < 40 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        victim_answers.load(Ordering::SeqCst)
    });
    let (won, codes) = burst(&[Target::of(&app), victim], sale_id, &buyers, 4, 128).await;
    let answered_before_kill = killer.await.unwrap();
    eprintln!("one instance killed after {answered_before_kill} answers: {} won, {codes:?}", won.len());
    assert!(codes.contains_key("transport"), "the kill happened during the burst: {codes:?}");
    // Purchases the dead instance had taken from the stream are taken over after claim_idle_ms.
    let (status, report) =
        app.post(&format!("/admin/api/v1/flash-sales/{sale_id}/reconcile"), &json!({}), Some(&admin)).await;
    assert_eq!(status, 200, "{report}");
    eprintln!("reconciliation after the kill: {report}");
    assert!(won.len() <= 100);
    check_invariants(&app, &admin, sale_id, 100, &won).await;
    let (_, report) =
        app.post(&format!("/admin/api/v1/flash-sales/{sale_id}/reconcile"), &json!({}), Some(&admin)).await;
    assert_eq!(
        (
            report["adopted"].as_i64(),
            report["released"].as_i64(),
            report["requeued"].as_i64(),
            report["stock_fixed"].as_i64()
        ),
        (Some(0), Some(0), Some(0), Some(0)),
        "nothing left to fix: {report}"
    );
}

#[tokio::test]
async fn reconciliation_repairs_redis_from_the_database() {
    let Some(backend) = scale_out_backend() else { return };
    let app = spawn_app_with(&backend, |c| c.flash_sale.claim_idle_ms = 500).await;
    let admin = app.admin_token("operator").await;
    let sku_id = sku_with_stock(&app, 100).await;
    let sale_id = create_sale(&app, &admin, sku_id, 5, 2, 0).await["id"].as_i64().unwrap();
    let buyers = app.buyers(3).await;
    let mut orders = Vec::new();
    for (i, buyer) in buyers.iter().enumerate() {
        let (status, won) = purchase(&app, sale_id, buyer, &format!("r{i}")).await;
        assert_eq!(status, 202, "{won}");
        orders.push(wait_for_order(&app, won["purchase_id"].as_str().unwrap(), &buyer.token).await);
    }
    let redis = app.state.redis.clone().unwrap();
    let mut conn = redis.conn();
    let key = |name: &str| redis.key(&format!("{{fs:{sale_id}}}:{name}"));
    let remaining = || async {
        let mut conn = redis.conn();
        redis::cmd("HGET").arg(key("sale")).arg("remaining").query_async::<Option<i64>>(&mut conn).await.unwrap()
    };
    assert_eq!(remaining().await, Some(2));

    // A cancellation whose message to Redis was lost: the database says released, Redis still counts it.
    let order_id = orders[0]["order_id"].as_i64().unwrap();
    sqlx::query("UPDATE flash_purchase SET status = 'released' WHERE order_id = ?")
        .bind(order_id)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE shop_order SET status = 'cancelled' WHERE id = ?")
        .bind(order_id)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    // A drifted counter, and a buyer's count gone.
    let _: () = redis::cmd("HSET").arg(key("sale")).arg("remaining").arg(40).query_async(&mut conn).await.unwrap();
    let _: () = redis::cmd("HDEL").arg(key("bought")).arg(buyers[1].user_id).query_async(&mut conn).await.unwrap();
    // A won decision that never reached the stream or the database (as if lost in a failover).
    let lost = format!("{sale_id}-{}", uuid::Uuid::new_v4().simple());
    let record = format!("{}|1|{}|held|1|lost-key", buyers[2].user_id, buyers[2].address_id);
    let _: () = redis::cmd("HSET").arg(key("decided")).arg(&lost).arg(&record).query_async(&mut conn).await.unwrap();

    let (status, report) =
        app.post(&format!("/admin/api/v1/flash-sales/{sale_id}/reconcile"), &json!({}), Some(&admin)).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["released"], 1, "{report}");
    assert_eq!(report["requeued"], 1, "{report}");
    assert_eq!(report["stock_fixed"], 1, "{report}");
    assert!(report["buyer_counts_fixed"].as_i64().unwrap() >= 1, "{report}");
    // 5 units: buyers 1 and 2 hold one each, the requeued decision one more.
    assert_eq!(remaining().await, Some(2));
    assert!(settled(&app, sale_id, 3).await, "the lost decision became an order");

    // Redis loses everything: the next attempt rebuilds the sale from the database.
    let _: () = redis::cmd("DEL")
        .arg(key("sale"))
        .arg(key("bought"))
        .arg(key("keys"))
        .arg(key("decided"))
        .arg(key("queue"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let (status, body) = purchase(&app, sale_id, &buyers[2], "r-again").await;
    assert_eq!((status, body["code"].as_str()), (409, Some("limit_reached")), "the rebuilt counts hold: {body}");
    let (status, body) = purchase(&app, sale_id, &buyers[0], "r-zero").await;
    assert_eq!(status, 202, "a released unit is for sale again: {body}");
    assert_eq!(remaining().await, Some(1));
}

#[tokio::test]
async fn purchase_rate_limits_hold_across_two_instances() {
    for backend in backends() {
        let app = spawn_app_with(&backend, |c| {
            c.rate_limit.purchase_per_user = 50;
            c.rate_limit.purchase_per_ip = 0;
            c.rate_limit.window_ms = 30_000;
        })
        .await;
        let peer = if backend.is_scale_out() { Some(app.spawn_peer().await) } else { None };
        let admin = app.admin_token("operator").await;
        let sku_id = sku_with_stock(&app, 10).await;
        let sale_id = create_sale(&app, &admin, sku_id, 1, 1, 3_600_000 / 2).await["id"].as_i64().unwrap();
        let buyer = app.buyers(1).await.remove(0);
        let mut allowed = 0;
        let mut retry_after = None;
        for i in 0..200 {
            let target = match (&peer, i % 2) {
                (Some(peer), 1) => peer,
                _ => &app,
            };
            let body = json!({"quantity": 1, "address_id": buyer.address_id});
            let (status, headers, body) = target
                .post_keyed(&format!("/api/v1/flash-sales/{sale_id}/purchase"), &body, &buyer.token, &format!("rl{i}"))
                .await;
            match status {
                409 => allowed += 1,
                429 => {
                    assert_eq!(body["code"], "rate_limited");
                    retry_after = headers.get("retry-after").map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
                }
                other => panic!("unexpected {other}: {body}"),
            }
        }
        assert!((45..=55).contains(&allowed), "{allowed} of 200 allowed with a limit of 50 ({})", backend.name());
        let retry_after = retry_after.expect("a Retry-After header");
        assert!((1..=30).contains(&retry_after), "{retry_after}");

        // Per IP too.
        let app = spawn_app_with(&backend, |c| {
            c.rate_limit.purchase_per_user = 0;
            c.rate_limit.purchase_per_ip = 5;
            c.rate_limit.window_ms = 30_000;
        })
        .await;
        let buyers = app.buyers(10).await;
        let mut statuses = Vec::new();
        for (i, buyer) in buyers.iter().enumerate() {
            let (status, _) = purchase(&app, 12345, buyer, &format!("ip{i}")).await;
            statuses.push(status);
        }
        assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 5, "{statuses:?}");
    }
}

#[tokio::test]
async fn unsold_and_returned_units_go_back_to_the_sku_after_the_sale() {
    for backend in backends() {
        let app = spawn_app_with(&backend, |c| {
            c.orders.payment_timeout_secs = 1;
            c.orders.sweep_interval_ms = 200;
            c.flash_sale.claim_idle_ms = 300;
            c.rate_limit.purchase_per_user = 1_000;
        })
        .await;
        let admin = app.admin_token("operator").await;
        let sku_id = sku_with_stock(&app, 10).await;
        let sale_id = create_sale(&app, &admin, sku_id, 4, 2, 0).await["id"].as_i64().unwrap();
        let buyer = app.buyers(1).await.remove(0);
        let (status, won) = purchase(&app, sale_id, &buyer, "u1").await;
        assert_eq!(status, 202, "{won}");
        assert_eq!(wait_for_order(&app, won["purchase_id"].as_str().unwrap(), &buyer.token).await["status"], "created");
        let (status, _) = app.post(&format!("/admin/api/v1/flash-sales/{sale_id}/end"), &json!({}), Some(&admin)).await;
        assert_eq!(status, 200);
        assert_eq!(app.scalar(&format!("SELECT stock AS n FROM sku WHERE id = {sku_id}")).await, 6);
        // The unpaid order times out; the sale's 3 unsold units and that 1 all end up back in the SKU, once.
        let path = format!("/admin/api/v1/flash-sales/{sale_id}/reconcile");
        assert!(
            eventually(Duration::from_secs(15), || async {
                app.post(&path, &json!({}), Some(&admin)).await;
                app.scalar(&format!("SELECT stock AS n FROM sku WHERE id = {sku_id}")).await == 10
                    && app.scalar(&format!("SELECT COUNT(*) AS n FROM shop_order WHERE flash_sale_id = {sale_id} AND status = 'cancelled'")).await == 1
            })
            .await,
            "stock back in the SKU ({})",
            backend.name()
        );
        let (_, sale) = app.get_auth(&format!("/admin/api/v1/flash-sales/{sale_id}"), &admin).await;
        assert!(sale["stock_returned_at"].is_string(), "{sale}");
        app.post(&path, &json!({}), Some(&admin)).await;
        assert_eq!(app.scalar(&format!("SELECT stock AS n FROM sku WHERE id = {sku_id}")).await, 10, "returned once");
    }
}

/// What a SIGKILL leaves behind, made deterministic: an instance took a won purchase from the stream and died
/// before making its order. Another instance takes it over after `claim_idle_ms` and makes exactly one order.
#[tokio::test]
async fn a_purchase_taken_by_a_dead_instance_is_taken_over() {
    let Some(backend) = scale_out_backend() else { return };
    let app = spawn_app_with(&backend, |c| {
        c.flash_sale.worker_poll_ms = 60_000;
        c.flash_sale.claim_idle_ms = 300;
        c.rate_limit.purchase_per_user = 1_000;
    })
    .await;
    let admin = app.admin_token("operator").await;
    let sku_id = sku_with_stock(&app, 100).await;
    let sale_id = create_sale(&app, &admin, sku_id, 5, 1, 0).await["id"].as_i64().unwrap();
    let buyers = app.buyers(2).await;

    // The dead instance's share: a won decision (as the Lua script records it), read from the stream by a
    // consumer that never acknowledges it.
    let redis = app.state.redis.clone().unwrap();
    let mut conn = redis.conn();
    let key = |name: &str| redis.key(&format!("{{fs:{sale_id}}}:{name}"));
    let orphan = format!("{sale_id}-{}", uuid::Uuid::new_v4().simple());
    let record = format!("{}|1|{}|held|{}|dead-key", buyers[0].user_id, buyers[0].address_id, now_ms());
    let _: () = redis::pipe()
        .cmd("HSET")
        .arg(key("decided"))
        .arg(&orphan)
        .arg(&record)
        .ignore()
        .cmd("HINCRBY")
        .arg(key("sale"))
        .arg("remaining")
        .arg(-1)
        .ignore()
        .cmd("HINCRBY")
        .arg(key("bought"))
        .arg(buyers[0].user_id)
        .arg(1)
        .ignore()
        .cmd("XADD")
        .arg(key("queue"))
        .arg("*")
        .arg("pid")
        .arg(&orphan)
        .ignore()
        .query_async(&mut conn)
        .await
        .unwrap();
    let taken: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("orders")
        .arg("dead-instance")
        .arg("COUNT")
        .arg(10)
        .arg("STREAMS")
        .arg(key("queue"))
        .arg(">")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(format!("{taken:?}").contains(&orphan), "the dead consumer holds the entry: {taken:?}");
    let (status, body) = app.get_auth(&format!("/api/v1/flash-sales/purchases/{orphan}"), &buyers[0].token).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("queued")), "{body}");

    // Past claim_idle_ms, the next pass of a live instance takes it over (a win wakes the worker).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, won) = purchase(&app, sale_id, &buyers[1], "wake").await;
    assert_eq!(status, 202, "{won}");
    let orphan_done = wait_for_order(&app, &orphan, &buyers[0].token).await;
    assert_eq!(orphan_done["status"], "created", "{orphan_done}");
    assert_eq!(wait_for_order(&app, won["purchase_id"].as_str().unwrap(), &buyers[1].token).await["status"], "created");
    assert_eq!(app.scalar(&format!("SELECT COUNT(*) AS n FROM shop_order WHERE flash_sale_id = {sale_id}")).await, 2);
    let pending: (i64, Option<String>, Option<String>, redis::Value) =
        redis::cmd("XPENDING").arg(key("queue")).arg("orders").query_async(&mut conn).await.unwrap();
    assert_eq!(pending.0, 0, "nothing left unacknowledged: {pending:?}");
}
