//! A SIGKILL of an instance during a burst of payment notifications loses no payment: WeChat Pay's retries (the
//! simulator in its own process, on a compressed schedule) and the poller bring every paid order to `paid`, once.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::Connection;

use crate::helpers::{backends, closed_port_address, create_mysql_database, mysql_url, wait_until_up, Backend};

fn wxshop(data_dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wxshop"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("WXSHOP_DATA_DIR", data_dir)
        .env("WXSHOP_OPS_LISTEN", "127.0.0.1:0")
        .env("WXSHOP_LOG__FILTER", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// The shop as a real process, paying through the external simulator with the simulator's merchant keys.
fn start_shop(data: &std::path::Path, listen: &str, simulator: &str, database: Option<&(String, String)>) -> Child {
    let keys = data.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("merchant.pem"), wxshop::simulator::pay::keys::MERCHANT_KEY_PEM).unwrap();
    std::fs::write(keys.join("public.pem"), wxshop::simulator::pay::keys::PUBLIC_KEY_PEM).unwrap();
    let mut command = wxshop(data);
    command
        .arg("serve")
        .env("WXSHOP_LISTEN", listen)
        .env("WXSHOP_DB__SEED_DEMO", "true")
        .env("WXSHOP_PAY__API_BASE", format!("http://{simulator}/pay"))
        .env("WXSHOP_PAY__MCH_ID", wxshop::simulator::pay::keys::MCH_ID)
        .env("WXSHOP_PAY__MERCHANT_SERIAL", wxshop::simulator::pay::keys::MERCHANT_SERIAL)
        .env("WXSHOP_PAY__MERCHANT_KEY_FILE", keys.join("merchant.pem"))
        .env("WXSHOP_PAY__API_V3_KEY", wxshop::simulator::pay::keys::API_V3_KEY)
        .env("WXSHOP_PAY__PUBLIC_KEY_ID", wxshop::simulator::pay::keys::PUBLIC_KEY_ID)
        .env("WXSHOP_PAY__PUBLIC_KEY_FILE", keys.join("public.pem"))
        .env("WXSHOP_PAY__NOTIFY_URL", format!("http://{listen}/api/v1/payments/wechat/notify"))
        .env("WXSHOP_PAY__POLL_AFTER_SECS", "1")
        .env("WXSHOP_PAY__WORKER_INTERVAL_MS", "200");
    if let Some((url, prefix)) = database {
        command.env("WXSHOP_DATABASE_URL", url);
        if let Ok(redis) = std::env::var("WXSHOP_TEST_REDIS_URL") {
            command.env("WXSHOP_REDIS_URL", redis).env("WXSHOP_REDIS_PREFIX", prefix);
        }
    }
    command.spawn().unwrap()
}

#[tokio::test]
async fn a_killed_instance_loses_no_payment() {
    for backend in backends() {
        eprintln!("backend: {}", backend.name());
        let dir = tempfile::tempdir().unwrap();
        let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap();
        let simulator_address = closed_port_address();
        let mut simulator = wxshop(dir.path()).args(["simulator", "--listen", &simulator_address]).spawn().unwrap();
        let sim = format!("http://{simulator_address}");
        wait_until_up(&client, &format!("{sim}/pay/notifications")).await;
        let control = json!({"time_scale": 0.001});
        client.post(format!("{sim}/pay/control")).json(&control).send().await.unwrap();

        let database = match &backend {
            Backend::ScaleOut { server_url, .. } => {
                let name = format!("wxshop_test_{}", uuid::Uuid::new_v4().simple());
                create_mysql_database(server_url, &name).await;
                Some((mysql_url(server_url, &name), format!("wxshop-test:{name}:")))
            }
            Backend::Embedded => None,
        };
        let listen = closed_port_address();
        let base = format!("http://{listen}");
        let mut shop = start_shop(dir.path(), &listen, &simulator_address, database.as_ref());
        wait_until_up(&client, &format!("{base}/healthz")).await;

        let login: Value = client
            .post(format!("{base}/api/v1/auth/wechat/login"))
            .json(&json!({"code": "crash"}))
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
            .json(&crate::shopping::address("崩溃"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut orders = Vec::new();
        let mut payments = Vec::new();
        for i in 0..20 {
            let body = json!({"items": [{"sku_id": 1 + i % 3, "quantity": 1}], "address_id": address["id"]});
            let order: Value = client
                .post(format!("{base}/api/v1/orders"))
                .bearer_auth(&token)
                .header("idempotency-key", format!("crash-{i}"))
                .json(&body)
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
            orders.push(id);
            payments.push(fields);
        }
        // Twenty payers over 200 ms; the shop is killed while their notifications arrive.
        let pays = payments.iter().enumerate().map(|(i, fields)| {
            let (client, url) = (client.clone(), format!("{sim}/pay/cashier"));
            let fields = fields.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(10 * i as u64)).await;
                client.post(url).json(&fields).send().await.unwrap().json::<Value>().await.unwrap()
            }
        });
        let burst = tokio::spawn(futures_util::future::join_all(pays));
        // Killed as soon as the first notification is acknowledged: the rest are in flight or still to come.
        for _ in 0..400 {
            let sent: Value =
                client.get(format!("{sim}/pay/notifications")).send().await.unwrap().json().await.unwrap();
            if sent.as_array().unwrap().iter().any(|d| d["status"] == 204) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        shop.kill().unwrap();
        shop.wait().unwrap();
        let answers = burst.await.unwrap();
        assert!(answers.iter().all(|a| a["errMsg"] == "requestPayment:ok"), "{answers:?}");
        let (_, notifications): (u16, Value) = {
            let r = client.get(format!("{sim}/pay/notifications")).send().await.unwrap();
            (r.status().as_u16(), r.json().await.unwrap())
        };
        let acknowledged = notifications.as_array().unwrap().iter().filter(|d| d["status"] == 204).count();
        eprintln!("acknowledged before the kill: {acknowledged} of {}", orders.len());
        assert!(acknowledged >= 1 && acknowledged < orders.len(), "killed during the burst");

        let mut shop = start_shop(dir.path(), &listen, &simulator_address, database.as_ref());
        wait_until_up(&client, &format!("{base}/healthz")).await;
        let url = match &database {
            Some((url, _)) => url.clone(),
            None => format!("sqlite://{}", dir.path().join("wxshop.db").display()),
        };
        sqlx::any::install_default_drivers();
        let mut db = sqlx::AnyConnection::connect(&url).await.unwrap();
        let mut all_paid = false;
        for _ in 0..300 {
            let paid: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM shop_order WHERE status = 'paid'")
                .fetch_one(&mut db)
                .await
                .unwrap();
            if paid == orders.len() as i64 {
                all_paid = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(all_paid, "every paid order reaches paid after the restart");
        let transitions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM order_event WHERE to_status = 'paid'")
            .fetch_one(&mut db)
            .await
            .unwrap();
        assert_eq!(transitions, orders.len() as i64, "each exactly once");
        drop(db);
        let _ = shop.kill();
        let _ = shop.wait();
        let _ = simulator.kill();
        let _ = simulator.wait();
        if let (Backend::ScaleOut { server_url, .. }, Some((_, prefix))) = (&backend, &database) {
            let name = prefix.trim_start_matches("wxshop-test:").trim_end_matches(':');
            if let Ok(mut conn) = sqlx::AnyConnection::connect(server_url).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS `{name}`")).execute(&mut conn).await;
            }
        }
    }
}
